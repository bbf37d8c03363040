"""Fixtures of the operator unit tests: the local MLflow store, its connection, a task runtime, unique names."""

from __future__ import annotations

import pytest

from tests.unit.operators._support import LocalMlflow, Runtime, local_mlflow, unique_name


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> LocalMlflow:
    """A SQLite MLflow store, migrated once per process (shared with tests/unit/sensors)."""
    return local_mlflow(lambda: tmp_path_factory.mktemp("mlflow-store"))


@pytest.fixture
def mlflow_conn(monkeypatch: pytest.MonkeyPatch, mlflow_store: LocalMlflow) -> LocalMlflow:
    """``mlflow_default`` points at the local store for this test (extra ui_url: links get a URL)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_store.connection_json())
    return mlflow_store


@pytest.fixture
def runtime() -> Runtime:
    return Runtime()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered model / experiment name no other test uses."""
    return unique_name(request.node.name)
