"""Extra link of the drift operator: the Evidently HTML report of the check."""

from __future__ import annotations

from typing import ClassVar

from airflow_mlops.links.base import XComUrlLink


class DriftReportLink(XComUrlLink):
    """Opens the Evidently drift report written by EvidentlyDetectDriftOperator."""

    name: ClassVar[str] = "Drift report"
    xcom_url_key: ClassVar[str] = "mlops_drift_report_url"
