"""Operator extra links to MLflow pages: the model version a registry task touched, and the training run.

The operator pushes the URL during ``execute`` (built from the connection's ``ui_url`` extra, else its http
tracking URI); the link reads it back by ``ti_key``, so no MLflow call happens when the UI renders the link.
"""

from __future__ import annotations

from typing import ClassVar

from airflow_mlops.links.base import XComUrlLink


class MlflowModelVersionLink(XComUrlLink):
    """Link to the MLflow page of the model version the task registered, promoted, rolled back or found."""

    name: ClassVar[str] = "MLflow model version"
    xcom_url_key: ClassVar[str] = "mlflow_model_version_url"


class MlflowRunLink(XComUrlLink):
    """Link to the MLflow run that trained the model the task worked on."""

    name: ClassVar[str] = "MLflow run"
    xcom_url_key: ClassVar[str] = "mlflow_run_url"
