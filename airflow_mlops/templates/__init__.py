"""Lifecycle templates: config dataclasses and the builders that turn them into DAGs and TaskGroups.

Importing this package is cheap; the builders import operators only when they build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from airflow.sdk import DAG

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


def build_lifecycle(cfg: LifecycleConfig, **kwargs: Any) -> dict[str, DAG]:
    from airflow_mlops.templates.builders import build_lifecycle as _build

    return _build(cfg, **kwargs)


def dags_from_yaml(path: str) -> dict[str, DAG]:
    from airflow_mlops.templates.builders import dags_from_yaml as _load

    return _load(path)
