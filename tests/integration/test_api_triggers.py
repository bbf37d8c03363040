"""The shipped DAGs and the lifecycle templates under real Airflow semantics, through the real API server.

One ``airflow standalone`` (scheduler, dag-processor, triggerer, API server; SQLite) runs the files of
``dags/`` unchanged plus a scheduled copy of the churn lifecycle, against a real MLflow server. Every run is
started the way users start them:

(a) ``POST /api/v2/dags/{id}/dagRuns`` with ``logical_date: null`` (the UI's "Trigger" button),
(b) the same with a logical date,
(c) by the scheduler on a cron schedule,
(d) by an Asset event (drift -> retraining),

and every run must succeed, with per-run output paths that are unique per run and stable across retries.
The Asset events the docs promise are read from the ``asset_event`` table: one per new URI, none more when a
successful task is cleared and runs again.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from airflow_mlops.core.storage import safe_segment
from tests.helpers.airflow_standalone import AirflowStandalone

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["churn_lifecycle.py", "churn_lifecycle.yaml", "mlops_example_data.py", "mlops_connection_check.py"]
DAY = "2026-11-30"
DRIFT_DAY = "2026-11-29"


def _scheduled_copy(dags: Path) -> None:
    """``churn_sched``: the shipped churn YAML with cron schedules on training and inference."""
    text = (ROOT / "dags" / "churn_lifecycle.yaml").read_text()
    text = text.replace("model_name: churn\n", "model_name: churn_sched\n").replace(
        "experiment: churn\n", "experiment: churn_sched\n"
    )
    text = text.replace(
        "schedule: null                      # train on demand", 'schedule: "* * * * *"  # train'
    )
    text = text.replace("inference:\n", 'inference:\n  schedule: "* * * * *"\n', 1)
    assert text.count("* * * * *") == 2
    (dags / "churn_sched.yaml").write_text(text)
    shutil.copy(ROOT / "dags" / "churn_lifecycle.py", dags / "churn_sched.py")


def _file_uri(path: Path) -> str:
    """The Asset URI the operators give a local path (``file://`` + the absolute path, not percent-encoded)."""
    return "file://" + str(path.resolve())


def _events(db: Path, dag_id: str = "churn_inference") -> list[tuple[str, str, str]]:
    """(asset URI, source task, source run) of every Asset event the tasks of ``dag_id`` produced."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT a.uri, e.source_task_id, e.source_run_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.source_dag_id = ?",
            (dag_id,),
        ).fetchall()
    return [(str(u), str(t), str(r)) for u, t, r in rows]


def _ok(airflow: AirflowStandalone, dag_id: str, run_id: str) -> dict:
    run = airflow.wait_for_run(dag_id, run_id=run_id, timeout=420)
    assert run["state"] == "success", (dag_id, run_id, airflow.task_instances(dag_id, run_id), airflow.tail())
    return run


def _wait_rerun(airflow: AirflowStandalone, dag_id: str, run_id: str, task_ids: list[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        body = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        tis = {ti["task_id"]: ti for ti in body["task_instances"] if ti["task_id"] in task_ids}
        if all(ti["try_number"] >= 2 and ti["state"] in ("success", "failed") for ti in tis.values()):
            assert {ti["state"] for ti in tis.values()} == {"success"}, tis
            return
        time.sleep(2)
    raise AssertionError(
        f"cleared tasks {task_ids} of {dag_id} {run_id} did not run again:\n{airflow.tail()}"
    )


def test_shipped_dags_run_from_the_rest_api_the_scheduler_and_asset_events(mlflow_server, tmp_path: Path):
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in SHIPPED:
        shutil.copy(ROOT / "dags" / name, dags / name)
    storage = tmp_path / "storage"
    churn = storage / "example" / "churn"
    home = tmp_path / "home"
    with AirflowStandalone(
        home, dags, extra_env={"AIRFLOW__MLOPS__STORAGE_BASE_URI": str(storage)}
    ) as airflow:
        airflow.wait_for_dags(
            "mlops_example_data",
            "mlops_connection_check",
            "churn_training",
            "churn_inference",
            "churn_retraining",
        )

        # (a) no logical date: the example data (a batch for the trigger date) and the connection check
        data_null = airflow.trigger("mlops_example_data")
        _ok(airflow, "mlops_example_data", data_null)
        today = airflow.runs("mlops_example_data")[0]["run_after"][:10]
        assert (churn / "batches" / f"{today}.parquet").is_file()
        _ok(airflow, "mlops_connection_check", airflow.trigger("mlops_connection_check"))
        # (b) with a logical date: that day's normal batch, and a drifted one for (d)
        _ok(
            airflow,
            "mlops_example_data",
            airflow.trigger("mlops_example_data", logical_date=f"{DAY}T06:00:00Z"),
        )
        drifted = airflow.trigger(
            "mlops_example_data", {"drifted": True}, logical_date=f"{DRIFT_DAY}T06:00:00Z"
        )
        _ok(airflow, "mlops_example_data", drifted)
        assert (churn / "batches" / f"{DAY}.parquet").is_file()

        # (a) train the first champion without a logical date, then score today's batch the same way
        train = airflow.trigger("churn_training")
        _ok(airflow, "churn_training", train)
        score_null = airflow.trigger("churn_inference")
        _ok(airflow, "churn_inference", score_null)
        # (b) score the batch of a given logical date
        score_dated = airflow.trigger("churn_inference", logical_date=f"{DAY}T06:00:00Z")
        _ok(airflow, "churn_inference", score_dated)
        predictions = {p.name for p in (churn / "predictions").glob("*.parquet")}
        assert {f"{safe_segment(score_null)}.parquet", f"{safe_segment(score_dated)}.parquet"} <= predictions

        # Clearing the successful validation and scoring tasks (the UI's "Clear") re-runs them (try 2) with the
        # same data and champion: no second Asset event for the batch or the predictions.
        batch_uri = _file_uri(churn / "batches" / f"{today}.parquet")
        pred_uri = _file_uri(churn / "predictions" / f"{safe_segment(score_null)}.parquet")
        tasks = ["inference.validate_batch", "inference.score"]
        first = [
            (batch_uri, "inference.validate_batch", score_null),
            (pred_uri, "inference.score", score_null),
        ]
        assert [e for e in _events(home / "airflow.db") if e[2] == score_null] == first
        airflow.clear_tasks("churn_inference", score_null, tasks)
        _wait_rerun(airflow, "churn_inference", score_null, tasks)
        assert [e for e in _events(home / "airflow.db") if e[2] == score_null] == first

        # (d) a drifted batch emits the drift Asset event; the scheduler runs the retraining DAG on it
        drift_run = airflow.trigger("churn_inference", logical_date=f"{DRIFT_DAY}T06:00:00Z")
        _ok(airflow, "churn_inference", drift_run)
        retrain = airflow.wait_for_run("churn_retraining", run_type="asset_triggered", timeout=420)
        assert retrain["state"] == "success", airflow.task_instances(
            "churn_retraining", retrain["dag_run_id"]
        )

        # (c) the scheduler's own cron runs of a scheduled copy: training, then inference with its champion
        # (added only now, so that its every-minute runs do not compete with the runs above)
        _scheduled_copy(dags)
        airflow.wait_for_dags("churn_sched_training", "churn_sched_inference")
        sched_train = airflow.wait_for_run("churn_sched_training", run_type="scheduled", timeout=420)
        assert sched_train["state"] == "success", airflow.task_instances(
            "churn_sched_training", sched_train["dag_run_id"]
        )
        deadline = time.monotonic() + 420
        sched_scores: list[dict] = []
        while time.monotonic() < deadline and not sched_scores:
            sched_scores = [
                r for r in airflow.runs("churn_sched_inference")
                if r["run_type"] == "scheduled" and r["state"] == "success"
                and r["queued_at"] > sched_train["end_date"]
            ]  # fmt: skip
            time.sleep(3)
        assert sched_scores, (airflow.runs("churn_sched_inference"), airflow.tail())

        # Asset events: every promised event landed once per new URI ...
        by_uri: dict[str, list[tuple[str, str]]] = {}
        for uri, task, run in _events(home / "airflow.db"):
            by_uri.setdefault(uri, []).append((task, run))
        train_uri = _file_uri(churn / "train.parquet")
        assert _events(home / "airflow.db", "churn_training") == [
            (train_uri, "training.validate_data", train)
        ]
        assert by_uri[batch_uri] == [("inference.validate_batch", score_null)]
        assert by_uri[pred_uri] == [("inference.score", score_null)]
        assert by_uri["x-mlops://models/churn/drift"] == [("inference.detect_drift", drift_run)]

        # Task logs carry no third-party deprecation floods (skops used to add ~1,100 lines per model load)
        floods = {}
        for log in (home / "logs").glob("dag_id=*/**/*.log"):
            count = len(
                re.findall(r"DeprecationWarning|DeprecatedImportWarning|FutureWarning", log.read_text())
            )
            if count > 3:
                floods[str(log.relative_to(home / "logs"))] = count
        assert not floods, floods
