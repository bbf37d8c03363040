"""Extra link of the batch inference operators: the MLflow model version that produced the predictions."""

from __future__ import annotations

from typing import ClassVar

from airflow_mlops.links.base import XComUrlLink


class BatchInferenceModelLink(XComUrlLink):
    """Opens the registered model version (resolved from the alias at run time) in the MLflow UI."""

    name: ClassVar[str] = "MLflow model version"
    xcom_url_key: ClassVar[str] = "mlops_inference_model_url"
