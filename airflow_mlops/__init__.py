"""airflow-mlops: an Apache Airflow 3 provider for the whole machine-learning lifecycle.

Public names are imported lazily so that ``import airflow_mlops`` stays cheap during DAG parsing.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "MlflowHook": "airflow_mlops.hooks.mlflow",
    "GXValidateDatasetOperator": "airflow_mlops.operators.validation",
    "LocalTrainModelOperator": "airflow_mlops.operators.training",
    "KubernetesTrainModelOperator": "airflow_mlops.operators.kubernetes",
    "MlflowRegisterModelOperator": "airflow_mlops.operators.mlflow",
    "MlflowPromoteModelOperator": "airflow_mlops.operators.mlflow",
    "MlflowRollbackModelOperator": "airflow_mlops.operators.mlflow",
    "MlflowSetModelAliasOperator": "airflow_mlops.operators.mlflow",
    "MlflowApproveModelOperator": "airflow_mlops.operators.approval",
    "BatchInferenceOperator": "airflow_mlops.operators.inference",
    "SparkBatchInferenceOperator": "airflow_mlops.operators.spark",
    "BatchInferencePlanOperator": "airflow_mlops.operators.inference",
    "BatchInferenceCombineOperator": "airflow_mlops.operators.inference",
    "EvidentlyDetectDriftOperator": "airflow_mlops.operators.drift",
    "MlflowModelAliasSensor": "airflow_mlops.sensors.mlflow",
    "DriftSensor": "airflow_mlops.sensors.drift",
    "MlflowModelAliasTrigger": "airflow_mlops.triggers.mlflow",
    "DriftConfirmedTrigger": "airflow_mlops.triggers.drift",
    "TrainingSpec": "airflow_mlops.core.training_spec",
    "RetrainingPolicy": "airflow_mlops.core.policy",
    "LifecycleConfig": "airflow_mlops.templates.config",
    "build_lifecycle": "airflow_mlops.templates",
    "drift_asset": "airflow_mlops.assets",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_mlops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
