"""MlflowModelAliasTrigger against a real MLflow server: it fires when the alias moves, without blocking the event
loop, and an unknown model is an error event, never an exception.

Serialization and the errors that need no server: tests/unit/triggers/test_mlflow.py.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from airflow_mlops.triggers.mlflow import MlflowModelAliasTrigger

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    original = trigger.check

    def recording_check():
        check_threads.add(threading.get_ident())
        return original()

    trigger.check = recording_check  # type: ignore[method-assign]

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
