"""The MLflow server goes down in the middle of a lifecycle (train -> register -> promote) and comes back.

The test runs its own ``mlflow server`` (not the session fixture, which other tests share): it is stopped right
after training, so ``register`` fails with ServiceUnreachable naming the server URL; the server is started
again on the same port with the same stores, the failed task is retried (same task instance, try 2) and the
lifecycle completes with exactly one training run and one model version.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.hardening.conftest import run_task_again, unique
from tests.helpers.airflow import run_dag, task_states
from tests.helpers.mlflow_server import MlflowServer
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONN_ID = "mlflow_outage"
_SERVERS: dict[str, MlflowServer] = {}


def stop_server(dag_id: str) -> None:
    """The DAG's middle task: take the tracking server down (what an outage looks like to the next task)."""
    _SERVERS[dag_id].stop()


def test_mlflow_outage_mid_lifecycle_then_retry_completes_without_duplicates(
    airflow_db: Path,
    hard_data: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from mlflow import MlflowClient

    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator, MlflowRegisterModelOperator
    from airflow_mlops.operators.training import LocalTrainModelOperator

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-outage"))
    dag_id, name, experiment = unique("outage"), unique("outage-model"), unique("outage-exp")
    try:
        server.start()
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", server.connection_json())
        _SERVERS[dag_id] = server
        with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            train = LocalTrainModelOperator(
                task_id="train",
                mlflow_conn_id=CONN_ID,
                training={
                    "experiment": experiment,
                    "dataset_uri": hard_data["train"],
                    "target": "label",
                    "features": ["age", "income", "tenure", "score"],
                    "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                    "metrics": ["accuracy"],
                },
            )
            outage = PythonOperator(task_id="outage", python_callable=stop_server, op_args=[dag_id])
            register = MlflowRegisterModelOperator(
                task_id="register",
                name=name,
                run_id="{{ ti.xcom_pull('train')['run_id'] }}",
                mlflow_conn_id=CONN_ID,
            )
            promote = MlflowPromoteModelOperator(
                task_id="promote",
                name=name,
                version=register.output["version"],
                rules=[{"metric": "val_accuracy", "min": 0.5}],
                mlflow_conn_id=CONN_ID,
            )
            train >> outage >> register >> promote

        dag_run = run_dag(dag, expect="failed")
        states = task_states(dag_run)
        assert states == {
            "train": "success",
            "outage": "success",
            "register": "failed",
            "promote": "upstream_failed",
        }, states
        error = dag_run.task_errors["register"]
        assert "ServiceUnreachable" in error
        assert f"MLflow tracking server {server.url} (connection {CONN_ID!r}) is unreachable" in error

        server.start()  # same port, same backend store and artifacts
        assert run_task_again(dag, dag_run, "register") == ("success", 2)
        assert run_task_again(dag, dag_run, "promote")[0] == "success"

        registered = xcom(dag_run, "register")
        gate = xcom(dag_run, "promote")
        assert registered["version"] == "1" and gate["promoted"] is True
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert len(runs) == 1 and runs[0].info.run_id == xcom(dag_run, "train")["run_id"]
        versions = client.search_model_versions(f"name = '{name}'")
        assert [v.version for v in versions] == ["1"]
        aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
        assert aliases == {"champion": "1", "challenger": "1"}  # the gate moved each alias once
        assert client.get_model_version_by_alias(name, "champion").version == "1"
    finally:
        _SERVERS.pop(dag_id, None)
        server.stop()
