"""Extra link of the validation operator: the HTML report of the Great Expectations run."""

from __future__ import annotations

from typing import ClassVar

from airflow_mlops.links.base import XComUrlLink


class GXValidationReportLink(XComUrlLink):
    """Opens the HTML validation report written by GXValidateDatasetOperator."""

    name: ClassVar[str] = "Validation report"
    xcom_url_key: ClassVar[str] = "mlops_validation_report_url"
