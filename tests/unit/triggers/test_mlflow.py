"""MlflowModelAliasTrigger without a server: serialize round trip, and error events (never exceptions) for an
unreachable server and a missing connection.

Against a real MLflow server: tests/integration/test_mlflow_alias_trigger.py.
"""

from __future__ import annotations

import asyncio

from airflow_mlops.triggers.mlflow import MlflowModelAliasTrigger
from tests.helpers.process import free_port


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
