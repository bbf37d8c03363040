"""Retry semantics: what no retry can fix fails for good on try 1; transient failures keep Airflow's retries.

Every task below has ``retries=2`` and no retry delay, and ``dag.test()`` retries like the scheduler does. A
bad spec, bad data, a schema mismatch, a failed suite and a gate rejection with ``on_reject="fail"`` must end
on try 1 with ``MlopsPermanentFailure`` (an ``AirflowFailException``); an unreachable MLflow server must be tried three times. (The
Kubernetes cases, one pod per try, are in tests/integration/test_training_kubernetes.py.)
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.conftest import make_frame, unique
from tests.helpers.airflow import run_dag, task_states, try_numbers
from tests.helpers.mlflow_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRIES = {"retries": 2, "retry_delay": timedelta(0)}


def test_permanent_failures_are_not_retried_and_transient_ones_are(
    airflow_db: Path,
    mlflow_server: Any,
    logged_model: dict[str, str],
    hard_data: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk import DAG
    from mlflow import MlflowClient

    from airflow_mlops.operators.inference import BatchInferenceOperator
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator
    from airflow_mlops.operators.training import LocalTrainModelOperator
    from airflow_mlops.operators.validation import GXValidateDatasetOperator

    model = unique("retry-gate")
    client = MlflowClient(mlflow_server.url)
    client.create_registered_model(model)
    version = client.create_model_version(
        model,
        source=logged_model["model_uri"],
        run_id=logged_model["run_id"],
        model_id=logged_model["model_uri"].split("/")[-1],
    ).version
    missing_column = tmp_path / "no_income.parquet"
    make_frame(50, 3, label=False).drop(columns="income").to_parquet(missing_column, index=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DOWN",
        json.dumps(
            {"conn_type": "mlflow", "host": f"http://127.0.0.1:{free_port()}", "extra": {"timeout": 1}}
        ),
    )
    spec = {
        "experiment": unique("retry-train"),
        "dataset_uri": hard_data["train"],
        "target": "label",
        "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    }

    with DAG(unique("retry_semantics"), schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        # permanent: the trainer finds no such target column in the data (bad data for this spec)
        LocalTrainModelOperator(task_id="bad_data", training={**spec, "target": "no_such_label"}, **RETRIES)
        # permanent: an estimator parameter the estimator does not have (bad spec, caught before any process)
        LocalTrainModelOperator(
            task_id="bad_spec",
            training={**spec, "model": {**spec["model"], "params": {"max_iterations": 5}}},
            **RETRIES,
        )
        # permanent: the input lacks a column of the model signature
        BatchInferenceOperator(
            task_id="schema_mismatch",
            model_uri=f"models:/{model}/{version}",
            input_uri=str(missing_column),
            output_uri=str(tmp_path / "out.parquet"),
            **RETRIES,
        )
        # permanent: the suite fails on the data
        GXValidateDatasetOperator(
            task_id="suite_fails",
            dataset_uri=hard_data["train"],
            suite=[
                {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "max_value": 1}}
            ],
            **RETRIES,
        )
        # permanent: the gate rejects and on_reject is fail
        MlflowPromoteModelOperator(
            task_id="gate_rejects",
            name=model,
            version=version,
            rules=[{"metric": "val_roc_auc", "min": 0.99}],
            on_reject="fail",
            **RETRIES,
        )
        # transient: MLflow does not answer; a later try may reach it
        LocalTrainModelOperator(task_id="mlflow_down", training=spec, mlflow_conn_id="mlflow_down", **RETRIES)

    dag_run = run_dag(dag, expect="failed")
    states, tries, errors = task_states(dag_run), try_numbers(dag_run), dag_run.task_errors
    assert set(states.values()) == {"failed"}, states
    for task in ("bad_data", "bad_spec", "schema_mismatch", "suite_fails", "gate_rejects"):
        assert tries[task] == 1, (task, tries, errors.get(task, "")[-2000:])
        assert "MlopsPermanentFailure" in errors[task], errors[task][-2000:]
    assert "no_such_label" in errors["bad_data"] and "max_iterations" in errors["bad_spec"]
    assert "income" in errors["schema_mismatch"] and "rejected by the gate" in errors["gate_rejects"]
    assert tries["mlflow_down"] == 3, (tries, errors["mlflow_down"][-2000:])
    assert (
        "ServiceUnreachable" in errors["mlflow_down"] and "MlopsPermanentFailure" not in errors["mlflow_down"]
    )
