"""The run_dag harness on a real SQLite metadata DB, and secret masking in real task logs."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.helpers.airflow import run_dag, task_log
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANARY_PASSWORD = "canary-pw-93b1e"
CANARY_TOKEN = "canary-token-5d2c8"


def test_task_uses_mlflow_connection_and_secrets_are_masked(airflow_db, mlflow_server, monkeypatch):
    """Auth settings reach the task, and the hook registers them with the masker Airflow applies to task logs.

    dag.test() prints task logs to the console without the supervisor's redaction, so the task redacts with
    the very masker the supervisor uses and returns the result.
    """
    from airflow.sdk import DAG, task

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_CANARY",
        mlflow_server.connection_json(login="svc", password=CANARY_PASSWORD, extra={"token": CANARY_TOKEN}),
    )

    with DAG("harness_mask", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def log_and_track() -> dict:
            from airflow.sdk._shared.secrets_masker.secrets_masker import redact

            from airflow_mlops.hooks.mlflow import MlflowHook

            hook = MlflowHook("mlflow_canary")
            env = hook.child_env()
            with hook.session() as client:
                exp = client.create_experiment("harness-mask")
            return {
                "experiment_id": exp,
                "keys": sorted(env),
                "logged": redact(f"child env: {env} password={hook.config.password}"),
                "config_repr": repr(hook.config),
            }

        log_and_track()

    dag_run = run_dag(dag)
    result = xcom(dag_run, "log_and_track")
    assert result["keys"] == ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI"]
    assert result["experiment_id"]
    assert "child env:" in result["logged"] and "***" in result["logged"]
    assert CANARY_TOKEN not in json.dumps(result) and CANARY_PASSWORD not in json.dumps(result)
    assert task_log("harness_mask", dag_run.run_id, "log_and_track").count(CANARY_TOKEN) == 0


def test_run_dag_reports_failing_task_with_its_log(airflow_db):
    from airflow.sdk import DAG, task

    with DAG("harness_fail", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def boom():
            raise ValueError("the-unique-failure-reason")

        boom()

    with pytest.raises(AssertionError, match="the-unique-failure-reason"):
        run_dag(dag)
    assert run_dag(dag, expect="failed").state == "failed"
