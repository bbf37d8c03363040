"""Every ``[mlops]`` Airflow configuration option, declared once and read once with its fallback.

``OPTIONS`` is plain data (no Airflow import) so ``get_provider_info`` can publish it as the provider's config
section; :func:`get_settings` reads the live values through ``airflow.configuration.conf`` on first use.
Environment variables work as for any Airflow option: ``AIRFLOW__MLOPS__REPORT_BASE_URI=s3://bucket/reports``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, fields
from typing import Any

SECTION = "mlops"

# option -> (type, default, description). The default "" means "derived at runtime" where the description says so.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "mlflow_conn_id": ("string", "mlflow_default", "Airflow connection id of the MLflow tracking server."),
    "kubernetes_conn_id": (
        "string",
        "kubernetes_default",
        "Airflow connection id used by KubernetesTrainModelOperator.",
    ),
    "storage_base_uri": (
        "string",
        "",
        "Base URI for data, predictions and checkpoints written by the provider. Empty means "
        "$AIRFLOW_HOME/mlops/storage on local disk. Any fsspec URI (s3://, gs://) works.",
    ),
    "storage_conn_id": (
        "string",
        "",
        "Airflow connection (e.g. an aws connection) for object-store URIs that name none themselves; a URI can "
        "name its own as s3://<conn_id>@bucket/key. Empty: ambient credentials (environment, instance role).",
    ),
    "report_base_uri": (
        "string",
        "",
        "Base URI for validation and drift reports. Empty means <storage_base_uri>/reports.",
    ),
    "champion_alias": ("string", "champion", "MLflow registered-model alias of the serving model."),
    "challenger_alias": ("string", "challenger", "MLflow registered-model alias of the latest candidate."),
    "promotion_pool": (
        "string",
        "mlops_promotion",
        "Default pool of the alias-moving operators; created with one slot when a scheduler starts. Empty: none.",
    ),
    "training_image": (
        "string",
        "ghcr.io/airflow-mlops/trainer:0.1.0",
        "Default container image of KubernetesTrainModelOperator.",
    ),
    "training_python": (
        "string",
        "",
        "Python interpreter LocalTrainModelOperator runs the training entrypoint with. Empty means the worker's.",
    ),
    "inference_batch_size": ("integer", "65536", "Rows per Arrow record batch in batch inference."),
    "drift_sample_size": (
        "integer",
        "50000",
        "Rows sampled (seeded, deterministic) from each side before Evidently runs; 0 disables sampling.",
    ),
    "fingerprint_algorithm": (
        "string",
        "xxh3",
        "Content hash of dataset fingerprints (retry skips, lineage): xxh3 (xxh3-128, fast) or sha256. A "
        "recorded fingerprint is always compared in its own algorithm.",
    ),
    "quiet_third_party_logs": (
        "boolean",
        "True",
        "Silence Great Expectations' import-time INFO lines and progress bars inside tasks.",
    ),
}


@dataclass(frozen=True)
class MlopsSettings:
    """The resolved ``[mlops]`` options."""

    mlflow_conn_id: str
    kubernetes_conn_id: str
    storage_base_uri: str
    storage_conn_id: str
    report_base_uri: str
    champion_alias: str
    challenger_alias: str
    promotion_pool: str
    training_image: str
    training_python: str
    inference_batch_size: int
    drift_sample_size: int
    fingerprint_algorithm: str
    quiet_third_party_logs: bool


def _airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


@functools.cache
def get_settings() -> MlopsSettings:
    """Read every option once (cached for the life of the process)."""
    from airflow.configuration import conf

    values: dict[str, Any] = {}
    for field in fields(MlopsSettings):
        kind, default, _ = OPTIONS[field.name]
        if kind == "integer":
            values[field.name] = conf.getint(SECTION, field.name, fallback=int(default))
        elif kind == "boolean":
            values[field.name] = conf.getboolean(SECTION, field.name, fallback=default == "True")
        else:
            values[field.name] = conf.get(SECTION, field.name, fallback=default)
    if not values["storage_base_uri"]:
        values["storage_base_uri"] = os.path.join(_airflow_home(), "mlops", "storage")
    if not values["report_base_uri"]:
        values["report_base_uri"] = values["storage_base_uri"].rstrip("/") + "/reports"
    return MlopsSettings(**values)
