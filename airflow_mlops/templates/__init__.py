"""Lifecycle templates: config dataclasses and the builders that turn them into DAGs and TaskGroups.

Importing this package imports the builders and the operators they use (tens of milliseconds, no heavy
library: those load inside the operators' ``execute``), so a dag-processor that pre-imports a DAG file's imports
parses a lifecycle file in about the time of a bare DAG file. The Kubernetes operator still loads only when a
config asks for it.
"""

from __future__ import annotations

from airflow_mlops.templates.builders import build_lifecycle, dags_from_yaml
from airflow_mlops.templates.config import (
    DataConfig,
    DriftConfig,
    GateConfig,
    InferenceConfig,
    KubernetesConfig,
    LifecycleConfig,
    RetrainPolicyConfig,
    TrainingConfig,
    ValidationConfig,
)

__all__ = [
    "DataConfig",
    "DriftConfig",
    "GateConfig",
    "InferenceConfig",
    "KubernetesConfig",
    "LifecycleConfig",
    "RetrainPolicyConfig",
    "TrainingConfig",
    "ValidationConfig",
    "build_lifecycle",
    "dags_from_yaml",
]
