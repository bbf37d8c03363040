"""Secrets canary: credentials of the MLflow and object-storage connections never leak anywhere we write.

One lifecycle DAG run (stage with an object-storage connection -> validate -> train in an emulated Kubernetes
pod -> register -> gate -> score -> drift) uses an MLflow connection whose password and token, and a storage
connection whose secret key and session token, are canary values. None of them may appear in: the console
output of dag.test (task logs printed before any redaction), the task log files, the rendered template fields
(RenderedTaskInstanceFields rows), the XCom rows, any request body the Kubernetes emulation received (pod
specs included), the MLflow tags / params of the runs, versions and registered model, or any file written
(reports, predictions, manifests).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.conftest import unique
from tests.helpers.airflow import run_dag
from tests.helpers.xcom import run_xcoms

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "ml"
SECRET_NAME = "mlflow-credentials"
MLFLOW_PASSWORD = "canary-mlflow-pw-4c1d9e"
MLFLOW_TOKEN = "canary-mlflow-token-8b2f7a"
LAKE_SECRET = "canary-lake-secret-71e0c3"
LAKE_SESSION = "canary-lake-session-a93d54"
CANARIES = (MLFLOW_PASSWORD, MLFLOW_TOKEN, LAKE_SECRET, LAKE_SESSION)


def stage(src: str, dest: str) -> str:
    """A user task copying data in with an object-storage connection (credentials into fsspec options)."""
    import fsspec
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("lake_canary")
    options = {"key": conn.login, "secret": conn.password, "token": conn.extra_dejson.get("session_token")}
    fs = fsspec.filesystem("file", **options)
    fs.makedirs(os.path.dirname(dest), exist_ok=True)
    fs.copy(src, dest)
    print(f"staged {src} -> {dest} with connection {conn.conn_id}")
    return dest


def _leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


def _db_rows(dag_run: Any) -> dict[str, str]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rtif = session.execute(
            select(RTIF.task_id, RTIF.rendered_fields).where(
                RTIF.dag_id == dag_run.dag_id, RTIF.run_id == dag_run.run_id
            )
        ).all()
    xcoms = run_xcoms(dag_run)
    return {
        "rendered": json.dumps([list(r) for r in rtif], default=str),
        "xcom": json.dumps([list(r) for r in xcoms], default=str),
        "rendered_tasks": json.dumps(sorted(r[0] for r in rtif)),
    }


def _mlflow_text(url: str, experiment: str, name: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    model = client.get_registered_model(name)
    versions = client.search_model_versions(f"name = '{name}'")
    return json.dumps(
        {
            "runs": [{"tags": r.data.tags, "params": r.data.params} for r in runs],
            "model_tags": model.tags,
            "versions": [{"tags": v.tags, "source": v.source} for v in versions],
            "n_runs": len(runs),
        }
    )


def _files_text(root: Path) -> dict[str, str]:
    return {
        str(path): path.read_bytes().decode("utf-8", errors="replace")
        for path in root.rglob("*")
        if path.is_file()
    }


def test_canary_secrets_never_leak(
    airflow_db: Path,
    mlflow_server: Any,
    hard_data: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator
    from airflow_mlops.operators.inference import BatchInferenceOperator
    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator, MlflowRegisterModelOperator
    from airflow_mlops.operators.validation import GXValidateDatasetOperator
    from tests.helpers.k8s_emulator import K8sEmulator

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_CANARY",
        mlflow_server.connection_json(
            login="svc-mlops", password=MLFLOW_PASSWORD, extra={"token": MLFLOW_TOKEN}
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_LAKE_CANARY",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIACANARYKEYID",
                "password": LAKE_SECRET,
                "extra": {"session_token": LAKE_SESSION, "region_name": "eu-west-1"},
            }
        ),
    )
    dag_id, name, experiment = unique("secrets"), unique("secrets-model"), unique("secrets-exp")
    out = tmp_path / "out"
    staged = str(out / "lake" / "train.parquet")
    conn = {"mlflow_conn_id": "mlflow_canary"}

    with K8sEmulator(namespace=NAMESPACE) as k8s:
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", k8s.connection_json())
        k8s.add_secret(NAMESPACE, SECRET_NAME, {"MLFLOW_TRACKING_TOKEN": MLFLOW_TOKEN})
        with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            staging = PythonOperator(
                task_id="stage", python_callable=stage, op_args=[hard_data["train"], staged]
            )
            validate = GXValidateDatasetOperator(
                task_id="validate",
                dataset_uri=staged,
                suite=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}],
                report_uri=str(out / "reports" / "validation"),
            )
            train = KubernetesTrainModelOperator(
                task_id="train",
                training={
                    "experiment": experiment,
                    "dataset_uri": staged,
                    "target": "label",
                    "features": ["age", "income", "tenure", "score"],
                    "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
                    "metrics": ["accuracy"],
                },
                namespace=NAMESPACE,
                mlflow_secret_name=SECRET_NAME,
                startup_check_interval_seconds=1,
                poll_interval=0.5,
                **conn,
            )
            register = MlflowRegisterModelOperator(
                task_id="register", name=name, run_id="{{ ti.xcom_pull('train')['run_id'] }}", **conn
            )
            gate = MlflowPromoteModelOperator(
                task_id="gate",
                name=name,
                version=register.output["version"],
                rules=[{"metric": "val_accuracy", "min": 0.5}],
                **conn,
            )
            score = BatchInferenceOperator(
                task_id="score",
                model_uri=f"models:/{name}@champion",
                input_uri=hard_data["score_in"],
                output_uri=str(out / "predictions" / "pred.parquet"),
                passthrough_columns=["id"],
                **conn,
            )
            drift = EvidentlyDetectDriftOperator(
                task_id="drift",
                model_name=name,
                current_uri=hard_data["current"],
                report_uri=str(out / "reports" / "drift"),
                policy={"persistence": 1},
                sample_size=0,
                **conn,
            )
            staging >> validate >> train >> register >> gate >> score >> drift

        dag_run = run_dag(dag)
        captured = capfd.readouterr()
        pod_requests = json.dumps([[r.method, r.path, r.body] for r in k8s.requests], default=str)
        pods = k8s.created_pod_bodies()
        assert len(pods) == 1

    task_ids = [t.task_id for t in dag.tasks]
    console = captured.out + captured.err
    # dag.test() runs tasks in-process and prints their logs to the console: the capture holds every task's log
    for line in ("staged ", "Suite inline", "Training run", "Registered version", "Drift share"):
        assert line in console, f"task log line {line!r} not captured"
    log_root = Path(os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]) / f"dag_id={dag_id}"
    logs = _files_text(log_root) if log_root.exists() else {}  # written by real workers, not by dag.test
    rows = _db_rows(dag_run)
    assert json.loads(rows["rendered_tasks"]) == sorted(task_ids)
    files = _files_text(out)
    assert {Path(f).name for f in files} >= {
        "validation.json",
        "validation.html",
        "pred.parquet",
        "drift.html",
    }
    # the canaries really were in use: the pod resolved the token from the Secret, the stage task had the key
    assert {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"key": "MLFLOW_TRACKING_TOKEN",
            "name": SECRET_NAME, "optional": False}}} in _base_env(pods[0])  # fmt: skip

    places = {
        "console (dag.test stdout+stderr: the task logs)": console,
        **{f"task log file {path}": text for path, text in logs.items()},
        "rendered template fields": rows["rendered"],
        "XCom rows": rows["xcom"],
        "Kubernetes API requests (pod spec)": pod_requests,
        "MLflow runs/versions/model tags and params": _mlflow_text(mlflow_server.url, experiment, name),
        **{f"file {path}": text for path, text in files.items()},
    }
    leaked = {place: found for place, text in places.items() if (found := _leaks(text))}
    assert not leaked, f"canary secrets leaked: {leaked}"


def _base_env(pod: dict[str, Any]) -> list[dict[str, Any]]:
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    return list(container.get("env") or [])
