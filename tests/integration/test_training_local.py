"""LocalTrainModelOperator in real DAG runs: a real subprocess, the real MLflow server, SQLite Airflow DB."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.core.tags import TAG_DAG_ID, TAG_DATASET_FINGERPRINT, TAG_TI_KEY
from tests.helpers.airflow import run_dag
from tests.helpers.frames import make_frame
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESULT_KEYS = {
    "run_id",
    "experiment_id",
    "model_uri",
    "metrics",
    "dataset_uri",
    "dataset_fingerprint",
    "run_url",
}


def test_local_training_dag_returns_the_tagged_run(airflow_db, mlflow_server, storage_dir, airflow_home):
    from airflow.sdk import DAG
    from mlflow import MlflowClient

    from airflow_mlops.operators.training import LocalTrainModelOperator, MlflowTrainingRunLink

    data = storage_dir / "train.parquet"
    make_frame(rows=800).to_parquet(data)
    with DAG("train_local", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocalTrainModelOperator(
            task_id="train_sklearn",
            training={
                "experiment": "local-dag",
                "dataset_uri": "{{ params.data }}",
                "target": "label",
                "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
                "metrics": ["accuracy", "roc_auc"],
            },
            params={"data": str(data)},
        )
        LocalTrainModelOperator(
            task_id="train_mlp",
            training={
                "experiment": "local-dag",
                "dataset_uri": str(data),
                "target": "label",
                "model": {
                    "family": "torch_mlp",
                    "params": {"epochs": 3, "hidden_layers": [8], "learning_rate": 0.05},
                },
            },
        )

    dag_run = run_dag(dag)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    for task_id in ("train_sklearn", "train_mlp"):
        result = xcom(dag_run, task_id)
        assert set(result) == RESULT_KEYS
        assert (
            result["run_url"]
            == f"{mlflow_server.url}/#/experiments/{result['experiment_id']}/runs/{result['run_id']}"
        )
        assert xcom(dag_run, task_id, MlflowTrainingRunLink.xcom_url_key) == result["run_url"]
        assert result["dataset_uri"] == str(data) and result["dataset_fingerprint"] == fingerprint(str(data))
        run = client.get_run(result["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_DAG_ID] == "train_local"
        assert run.data.tags[TAG_TI_KEY] == f"train_local/{dag_run.run_id}/{task_id}/-1"
        assert run.data.tags[TAG_DATASET_FINGERPRINT] == result["dataset_fingerprint"]
        assert result["model_uri"].startswith("models:/") and 0 <= result["metrics"]["val_accuracy"] <= 1
    assert xcom(dag_run, "train_sklearn")["metrics"]["val_accuracy"] > 0.8
    mlp = xcom(dag_run, "train_mlp")
    assert client.get_run(mlp["run_id"]).data.metrics["epochs_completed"] == 3
    # The default checkpoint lives under [mlops] storage_base_uri, one per task instance.
    checkpoints = list((airflow_home / "storage" / "checkpoints" / "train_local").rglob("checkpoint.pt"))
    assert len(checkpoints) == 1 and "train_mlp" in str(checkpoints[0])


def test_bad_specs_fail_with_clear_errors(airflow_db, mlflow_server, storage_dir):
    from airflow.sdk import DAG

    from airflow_mlops.operators.training import LocalTrainModelOperator

    data = storage_dir / "train.parquet"
    make_frame(rows=100).to_parquet(data)
    base = {"experiment": "local-bad", "dataset_uri": str(data), "target": "label"}
    with DAG("train_local_bad", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocalTrainModelOperator(
            task_id="unknown_estimator",
            training={**base, "model": "sklearn.ensemble.RandomForestClasifier"},
            retries=0,
        )
        LocalTrainModelOperator(
            task_id="missing_target", training={**base, "target": "churn", "model": "torch_mlp"}, retries=0
        )
    dag_run = run_dag(dag, expect="failed")
    errors = dag_run.task_errors
    assert "TrainingSpecError" in errors["unknown_estimator"]
    assert "has no class 'RandomForestClasifier'" in errors["unknown_estimator"]
    assert "the trainer rejected the spec or data" in errors["missing_target"]
    assert "target column 'churn' missing from dataset" in errors["missing_target"]
