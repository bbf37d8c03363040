"""Batch inference on Apache Spark: real PySpark in local mode (Debian's JDK), submitted with the Spark
provider's SparkSubmitHook, scoring a real model of the real MLflow server on real parquet.

* the Spark backend writes the same predictions as the single-machine path, pins the alias once, and a re-run
  with nothing changed is skipped;
* bad inputs (missing column, wrong type, unknown alias, CSV) fail before any job is submitted, writing nothing;
* a driver killed mid-job is retried by Airflow and the output holds every row exactly once, with nothing staged
  left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.airflow import run_dag, try_numbers
from tests.helpers.process import descendants
from tests.helpers.xcom import xcom

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'airflow-mlops[spark]')")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURES = ["f0", "f1", "f2", "f3"]
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.memory": "1g",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "5000",
}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
    df.insert(0, "id", np.arange(n, dtype=np.int64) + seed * 10_000_000)
    return df


def _write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=10_000)
    return path


@pytest.fixture(scope="module")
def model(mlflow_server: Any) -> str:
    """A logistic regression registered as ``<name>`` with the alias champion on version 1."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.hooks.mlflow import MlflowHook

    name = f"spark-churn-{uuid.uuid4().hex[:6]}"
    train = _frame(2_000, seed=7)
    x, y = train[FEATURES], (train.f0 - train.f1 * train.f2 > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    with MlflowHook().session() as client:
        mlflow.set_experiment(f"spark-tests-{name}")
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                clf, name="model", signature=infer_signature(x, clf.predict(x)), registered_model_name=name
            )
        client.set_registered_model_alias(name, "champion", "1")
    return name


@pytest.fixture
def spark_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    return "spark_local"


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    _write(_frame(30_000, seed=1), folder / "part-0.parquet")
    _write(_frame(20_000, seed=2), folder / "part-1.parquet")
    return folder


def _spark_dag(dag_id: str, **score: Any) -> Any:
    from airflow.sdk import DAG

    from airflow_mlops.operators.spark import SparkBatchInferenceOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        SparkBatchInferenceOperator(task_id="score", conf=SPARK_CONF, passthrough_columns=["id"], **score)
    return dag


def _read_folder(folder: Path) -> pd.DataFrame:
    return pq.read_table(folder).to_pandas().sort_values("id").reset_index(drop=True)


def _hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".mlops-tmp-", ".mlops-lock-")))


def test_spark_scores_like_the_single_machine_path_and_a_rerun_is_skipped(
    airflow_db: Path, model: str, spark_conn: str, batch: Path, tmp_path: Path
) -> None:
    from airflow.sdk import DAG

    from airflow_mlops.core.scoring import manifest_uri_for
    from airflow_mlops.operators.inference import BatchInferenceOperator
    from airflow_mlops.operators.spark import SparkBatchInferenceOperator

    out = tmp_path / "predictions" / "spark.parquet"
    single = tmp_path / "predictions" / "single.parquet"
    with DAG("spark_vs_single", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        SparkBatchInferenceOperator(
            task_id="score",
            model_uri=f"models:/{model}@champion",
            input_uri=str(batch),
            output_uri=str(out),
            passthrough_columns=["id"],
            spark_conn_id=spark_conn,
            conf=SPARK_CONF,
        )
        BatchInferenceOperator(
            task_id="single",
            model_uri=f"models:/{model}@champion",
            input_uri=str(batch),
            output_uri=str(single),
            passthrough_columns=["id"],
            outlets=[],
        )
    run = run_dag(dag)
    summary = xcom(run, "score")
    assert summary["model_version"] == "1" and summary["rows"] == 50_000 and not summary["skipped"]
    assert summary["model_uri"] == f"models:/{model}/1"  # pinned before submission
    assert set(summary) == set(xcom(run, "single")), "the two backends return the same summary"

    spark_rows = _read_folder(out)
    single_rows = pq.read_table(single).to_pandas().sort_values("id").reset_index(drop=True)
    assert list(spark_rows.columns) == ["id", "prediction"]
    assert len(spark_rows) == 50_000 and spark_rows["id"].is_unique
    assert spark_rows["prediction"].dtype == single_rows["prediction"].dtype == np.int64
    pd.testing.assert_frame_equal(spark_rows, single_rows)

    manifest = json.loads(Path(manifest_uri_for(str(out))).read_text())
    assert manifest["engine"] == "spark" and manifest["flavor"] == "spark_udf"
    assert (
        manifest["input_fingerprint"]
        == json.loads(Path(manifest_uri_for(str(single))).read_text())["input_fingerprint"]
    ), "lineage: both paths record the same input content"
    parts = {p.name for p in out.iterdir() if not p.name.startswith((".", "_"))}
    assert (
        parts == {p["path"] for p in manifest["parts"]}
        and sum(p["rows"] for p in manifest["parts"]) == 50_000
    )
    assert _hidden_leftovers(out.parent) == []

    # nothing changed: a second run skips without submitting (no new files, same manifest)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rerun = run_dag(
        _spark_dag(
            "spark_rerun",
            model_uri=f"models:/{model}@champion",
            input_uri=str(batch),
            output_uri=str(out),
            spark_conn_id=spark_conn,
        )
    )
    assert xcom(rerun, "score")["skipped"] is True
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_bad_inputs_fail_before_anything_is_submitted_or_written(
    airflow_db: Path, model: str, spark_conn: str, tmp_path: Path
) -> None:
    good = _frame(1_000, seed=3)
    cases = {
        "missing": _write(good.drop(columns=["f2"]), tmp_path / "missing" / "data.parquet"),
        "wrong_type": _write(good.assign(f1=good.f1.astype(str)), tmp_path / "wrong_type" / "data.parquet"),
        "csv": tmp_path / "csv" / "data.csv",
    }
    cases["csv"].parent.mkdir()
    good.to_csv(cases["csv"], index=False)
    from airflow.sdk import DAG

    from airflow_mlops.operators.spark import SparkBatchInferenceOperator

    outputs = {case: tmp_path / "out" / f"{case}.parquet" for case in [*cases, "unknown_alias"]}
    with DAG("spark_bad_inputs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        for case, path in cases.items():
            SparkBatchInferenceOperator(
                task_id=case,
                model_uri=f"models:/{model}@champion",
                input_uri=str(path),
                output_uri=str(outputs[case]),
                passthrough_columns=["id"],
                spark_conn_id=spark_conn,
                retries=2,
            )
        SparkBatchInferenceOperator(
            task_id="unknown_alias",
            model_uri=f"models:/{model}@nope",
            input_uri=str(cases["missing"]),
            output_uri=str(outputs["unknown_alias"]),
            spark_conn_id=spark_conn,
            retries=2,
        )
    run = run_dag(dag, expect="failed")
    errors = run.task_errors
    assert "SchemaMismatch" in errors["missing"] and "missing column(s) ['f2']" in errors["missing"]
    assert "f1 (string, signature wants double)" in errors["wrong_type"]
    assert "the Spark backend reads parquet" in errors["csv"]
    assert "ModelNotFound" in errors["unknown_alias"] and "nope" in errors["unknown_alias"]
    assert set(try_numbers(run).values()) == {1}, "bad input is not retried"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "nothing was written"


def _spark_processes_below(root: int) -> list[int]:
    out = []
    for pid in sorted(descendants(root) - {root}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"SparkSubmit" in cmdline or b"spark_job.py" in cmdline or b"pyspark" in cmdline:
            out.append(pid)
    return out


def test_a_driver_killed_mid_job_is_retried_and_commits_every_row_once(
    airflow_db: Path, model: str, spark_conn: str, tmp_path: Path
) -> None:
    batch = tmp_path / "big"
    for i in range(4):
        _write(_frame(100_000, seed=10 + i), batch / f"part-{i}.parquet")
    out = tmp_path / "predictions" / "killed.parquet"
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_driver_once_it_writes() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            staging = [p for p in out.parent.glob(".mlops-tmp-spark*") if (p / "_temporary").exists()]
            if staging:
                victims = _spark_processes_below(os.getpid())
                for pid in victims:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed.extend(victims)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_driver_once_it_writes, daemon=True)
    watcher.start()
    try:
        run = run_dag(
            _spark_dag(
                "spark_killed_driver",
                model_uri=f"models:/{model}@champion",
                input_uri=str(batch),
                output_uri=str(out),
                spark_conn_id=spark_conn,
                retries=1,
                retry_delay=timedelta(0),
            )
        )
    finally:
        stop.set()
        watcher.join(10)
    assert killed, "the driver was never seen writing: the check did not kill anything"
    assert try_numbers(run)["score"] == 2
    assert "spark-submit exited with code" in run.task_errors["score"]  # the first try's error
    rows = _read_folder(out)
    expected = pd.concat([_frame(100_000, seed=10 + i) for i in range(4)])
    assert len(rows) == len(expected) == 400_000 and rows["id"].is_unique
    assert set(rows["id"]) == set(expected["id"])
    assert _hidden_leftovers(out.parent) == [], "the killed try's staging folder was removed"
    assert xcom(run, "score")["rows"] == 400_000
    shutil.rmtree(batch)
