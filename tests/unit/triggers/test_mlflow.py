"""MlflowModelAliasTrigger: serialize round trip, success/error events against a real MLflow server, never raises."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from airflow_mlops.triggers.mlflow import MlflowModelAliasTrigger
from tests.helpers.mlflow_server import free_port

pytestmark = pytest.mark.integration


def test_serialize_round_trip():
    trigger = MlflowModelAliasTrigger(
        name="churn", alias="champion", not_version="3", mlflow_conn_id="mlflow_x", poll_interval=5,
        max_consecutive_errors=2,
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_mlops.triggers.mlflow.MlflowModelAliasTrigger"
    from airflow.sdk._shared.module_loading import import_string

    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "name": "churn", "alias": "champion", "not_version": "3", "mlflow_conn_id": "mlflow_x",
        "poll_interval": 5.0, "max_consecutive_errors": 2,
    }  # fmt: skip


async def _first_event(trigger: MlflowModelAliasTrigger, timeout: float = 120):
    return await asyncio.wait_for(anext(trigger.run()), timeout)


@pytest.fixture(scope="module")
def model_with_two_versions(mlflow_server):
    """A registered model with versions 1 and 2 (one tiny logged sklearn model) and champion -> 1."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.hooks.mlflow import MlflowHook

    name = f"trigger-{uuid.uuid4().hex[:8]}"
    x = np.arange(20, dtype=float).reshape(10, 2)
    with MlflowHook().session() as client:
        mlflow.set_experiment("trigger-tests")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, [0, 1] * 5), name="model", pip_requirements=["scikit-learn"]
            )
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, info.model_uri, info.run_id, model_id=info.model_id)
        client.set_registered_model_alias(name, "champion", "1")
    return name, MlflowHook().get_conn()  # no session held across tests: its lock is process-wide


def test_fires_when_the_alias_moves_without_blocking_the_loop(model_with_two_versions):
    name, client = model_with_two_versions
    client.set_registered_model_alias(name, "champion", "1")
    trigger = MlflowModelAliasTrigger(name=name, alias="champion", not_version="1", poll_interval=0.05)
    loop_thread = threading.get_ident()
    check_threads: set[int] = set()
    original = trigger._check

    def recording_check():
        check_threads.add(threading.get_ident())
        return original()

    trigger._check = recording_check  # type: ignore[method-assign]

    async def scenario():
        waiting = asyncio.create_task(_first_event(trigger))
        while not check_threads:  # the loop keeps running while checks happen in worker threads
            await asyncio.sleep(0.01)
        assert not waiting.done()
        await asyncio.to_thread(client.set_registered_model_alias, name, "champion", "2")
        return await waiting

    event = asyncio.run(scenario())
    assert event.payload == {"status": "success", "name": name, "alias": "champion", "version": "2"}
    assert check_threads and loop_thread not in check_threads


def test_fires_at_once_when_alias_exists_and_no_version_is_excluded(model_with_two_versions):
    name, _ = model_with_two_versions
    event = asyncio.run(
        _first_event(MlflowModelAliasTrigger(name=name, alias="champion", poll_interval=0.05))
    )
    assert event.payload["status"] == "success" and event.payload["version"] in {"1", "2"}


def test_unknown_model_gives_an_error_event_not_an_exception(model_with_two_versions):
    name, _ = model_with_two_versions
    trigger = MlflowModelAliasTrigger(name=f"{name}-nope", alias="champion", poll_interval=0.05)
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "error"
    assert f"registered model '{name}-nope' does not exist" in event.payload["message"]


def test_unreachable_server_gives_an_error_event_after_retries(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DOWN", f'{{"conn_type": "mlflow", "host": "http://127.0.0.1:{free_port()}"}}'
    )
    trigger = MlflowModelAliasTrigger(
        name="m", alias="champion", mlflow_conn_id="mlflow_down", poll_interval=0.01, max_consecutive_errors=3
    )
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "error"
    assert (
        "after 3 failed checks" in event.payload["message"]
        and "ServiceUnreachable" in event.payload["message"]
    )


def test_missing_connection_gives_an_error_event():
    trigger = MlflowModelAliasTrigger(name="m", alias="champion", mlflow_conn_id="mlflow_undefined_xyz")
    event = asyncio.run(_first_event(trigger))
    assert (
        event.payload["status"] == "error"
        and "'mlflow_undefined_xyz' is not defined" in event.payload["message"]
    )
