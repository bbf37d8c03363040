"""The sensors use the operator tests' local MLflow store (one per process), task runtime and unique names."""

from __future__ import annotations

from tests.unit.operators.conftest import mlflow_conn, mlflow_store, name, runtime

__all__ = ["mlflow_conn", "mlflow_store", "name", "runtime"]
