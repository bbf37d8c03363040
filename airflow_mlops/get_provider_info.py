"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point. Plain data: importing it is free."""

from __future__ import annotations

from typing import Any

INTEGRATION = "airflow-mlops"


def _config_section() -> dict[str, Any]:
    from airflow_mlops.settings import OPTIONS

    return {
        "mlops": {
            "description": "Settings of the airflow-mlops provider (every option has a working default).",
            "options": {
                name: {
                    "description": description,
                    "version_added": "0.1.0",
                    "type": kind,
                    "example": None,
                    "default": default,
                }
                for name, (kind, default, description) in OPTIONS.items()
            },
        }
    }


def get_provider_info() -> dict[str, Any]:
    from airflow_mlops import __version__

    return {
        "package-name": "airflow-mlops",
        "name": "MLOps",
        "description": "The machine-learning lifecycle as Airflow DAGs: Great Expectations validation, "
        "Kubernetes GPU training, MLflow registry gates, batch inference and Evidently drift.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://github.com/airflow-mlops/airflow-mlops",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_mlops.hooks.mlflow"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_mlops.operators.validation",
                    "airflow_mlops.operators.training",
                    "airflow_mlops.operators.kubernetes",
                    "airflow_mlops.operators.mlflow",
                    "airflow_mlops.operators.approval",
                    "airflow_mlops.operators.inference",
                    "airflow_mlops.operators.spark",
                    "airflow_mlops.operators.drift",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_mlops.sensors.mlflow", "airflow_mlops.sensors.drift"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_mlops.triggers.mlflow", "airflow_mlops.triggers.drift"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "airflow_mlops.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "conn-fields": {
                    "token": {
                        "label": "Bearer token",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "registry_uri": {"label": "Registry URI", "schema": {"type": ["string", "null"]}},
                    "ui_url": {"label": "MLflow UI URL (for links)", "schema": {"type": ["string", "null"]}},
                    "insecure_tls": {
                        "label": "Skip TLS verification",
                        "schema": {"type": ["boolean", "null"]},
                    },
                    "ca_bundle": {"label": "CA bundle path", "schema": {"type": ["string", "null"]}},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"host": "Tracking URI", "login": "Username (basic auth)"},
                    "placeholders": {"host": "http://mlflow:5000"},
                },
            }
        ],
        "extra-links": [
            "airflow_mlops.links.validation.GXValidationReportLink",
            "airflow_mlops.operators.training.MlflowTrainingRunLink",
            "airflow_mlops.links.mlflow.MlflowRunLink",
            "airflow_mlops.links.mlflow.MlflowModelVersionLink",
            "airflow_mlops.links.inference.BatchInferenceModelLink",
            "airflow_mlops.links.drift.DriftReportLink",
        ],
        "config": _config_section(),
    }
