"""The shipped example lifecycle on the production topology: PostgreSQL, Celery on Redis, S3, MLflow on PG + S3.

:class:`~tests.production.stack.ProductionStack` starts the compose stack's configuration on loopback servers
(see its docstring). On it, with every URI on ``s3://`` through the ``aws_default`` connection and no AWS
credentials in any Airflow process's environment:

1. ``mlops_example_data`` writes the example data into the bucket (REST trigger, a logical date);
2. ``churn_training`` is triggered through the REST API; while ``training.train`` runs, the Celery worker that
   runs it is killed (SIGKILL to its whole process group); the scheduler declares the task lost, the other
   worker retries it, and the run ends with exactly one model version, one champion, one Asset event;
3. ``mlops_watch`` defers a model-alias sensor and a drift sensor: both wait in the triggerer at once;
4. ``churn_inference`` scores the drifted batch with the champion and confirms drift; the drift sensor fires;
5. the scheduler runs ``churn_retraining`` from the drift Asset event; its gate moves the challenger alias and
   the alias sensor fires.

Then the bucket holds the MLflow artifacts, predictions, manifests and reports; nothing was written to local
disk outside the servers' own folders; the Asset events and model versions have no duplicates.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.core.storage import safe_segment
from tests.production.stack import ROOT, ProductionStack, missing_servers

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.production]

DAY = "2026-11-29"
SHIPPED = ["churn_lifecycle.py", "churn_lifecycle.yaml", "mlops_example_data.py"]
DAGS = ("mlops_example_data", "churn_training", "churn_inference", "churn_retraining", "mlops_watch")
WATCH_DAG = '''
"""Two deferrable sensors waiting in the triggerer at once: a new challenger, and confirmed drift."""
from datetime import datetime

from airflow.sdk import dag

from airflow_mlops.sensors.drift import DriftSensor
from airflow_mlops.sensors.mlflow import MlflowModelAliasSensor


@dag(dag_id="mlops_watch", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def mlops_watch():
    MlflowModelAliasSensor(
        task_id="new_challenger", name="churn", alias="challenger",
        not_version="{{ dag_run.conf['not_version'] }}", deferrable=True, poke_interval=3, timeout=1200,
    )
    DriftSensor(
        task_id="drift_confirmed", model_name="churn", since="{{ dag_run.conf['since'] }}",
        deferrable=True, poke_interval=3, timeout=1200,
    )


mlops_watch()
'''


@pytest.fixture
def stack_root():
    if missing_servers():
        message = f"Debian packages {missing_servers()} are not installed (./dev test installs them)"
        if os.environ.get("MLOPS_REQUIRE_PRODUCTION_TIER"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="mlops-prod-"))  # under /tmp: the postgres user must reach it
    root.chmod(0o755)
    try:
        yield root
    finally:
        if os.environ.get("MLOPS_KEEP_TIER"):  # keep the servers' folders and logs to look at
            print(f"\nproduction tier folders kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _wait(what: str, check: Any, stack: ProductionStack, timeout: float = 420, poll: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what}: not after {timeout:.0f}s\n{stack.tails()}")


def _tis(stack: ProductionStack, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    body = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    return {ti["task_id"]: ti for ti in body["task_instances"]}


def _run_ok(stack: ProductionStack, dag_id: str, run_id: str, timeout: float = 420) -> dict[str, Any]:
    def done() -> Any:
        run = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = _wait(f"{dag_id} {run_id} finished", done, stack, timeout, poll=2)
    states = {t: (ti["state"], ti["try_number"]) for t, ti in _tis(stack, dag_id, run_id).items()}
    assert run["state"] == "success", f"{dag_id} {run_id}: {states}\n{stack.tails()}"
    return dict(run)


def _trigger(
    stack: ProductionStack, dag_id: str, conf: dict | None = None, logical_date: str | None = None
) -> str:
    body = stack.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
    )
    return str(body["dag_run_id"])


def _keys(stack: ProductionStack) -> list[str]:
    keys: list[str] = []
    for page in stack.s3().get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def _sql(stack: ProductionStack, query: str, *args: Any) -> list[tuple]:
    import psycopg2

    from tests.helpers.compose import service_env

    pg = service_env(stack.services["postgres"])
    with psycopg2.connect(
        host="127.0.0.1", port=stack.ports["postgres"], user=pg["POSTGRES_USER"],
        password=pg["POSTGRES_PASSWORD"], dbname=pg["POSTGRES_DB"],
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute(query, args)
        return list(cur.fetchall())


def _local_files(root: Path) -> list[str]:
    """Files under ``root`` outside the servers' own folders and Airflow's logs and generated config."""
    allowed = ("pg/", "redis/", "logs/", "airflow/logs/", "airflow/config/")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        # `airflow db migrate`'s own lock file (docker/airflow-init.sh)
        if rel.startswith("tmp/db_init_lock-"):
            continue
        if path.is_file() and not rel.startswith(allowed) and rel not in {"airflow/airflow.cfg"}:
            found.append(rel)
    return sorted(found)


def test_example_lifecycle_on_postgres_celery_and_s3(stack_root: Path):
    dags = stack_root / "dags"
    dags.mkdir()
    for name in SHIPPED:
        shutil.copy(ROOT / "dags" / name, dags / name)
    (dags / "mlops_watch.py").write_text(WATCH_DAG)
    figures: dict[str, Any] = {}

    with ProductionStack(stack_root / "stack", dags) as stack:
        figures["start_s"] = dict(stack.timings)
        env = stack.airflow_env()
        assert not [k for k in env if k.startswith(("AWS_", "FSSPEC_"))], "ambient credentials leaked in"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        t_all = time.monotonic()
        _wait("DAGs parsed", lambda: all(
            stack.api("GET", f"/api/v2/dags/{d}", ok=(200, 404)).get("dag_id") == d for d in DAGS
        ), stack, timeout=240, poll=2)  # fmt: skip
        for dag_id in DAGS:  # the compose stack creates DAGs paused, as users get them
            stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

        # 1. example data into the bucket
        t0 = time.monotonic()
        _run_ok(
            stack,
            "mlops_example_data",
            _trigger(stack, "mlops_example_data", {"drifted": True}, f"{DAY}T06:00:00Z"),
        )
        figures["example_data_s"] = round(time.monotonic() - t0, 1)
        base = "storage/example/churn"
        assert {
            f"{base}/train.parquet",
            f"{base}/train_recent.parquet",
            f"{base}/batches/{DAY}.parquet",
        } <= set(_keys(stack))

        # 2. training through the REST API, its Celery worker killed mid-task
        t0 = time.monotonic()
        train = _trigger(stack, "churn_training")

        def train_running() -> Any:
            tis = _tis(stack, "churn_training", train)
            failed = {
                t: v["state"] for t, v in tis.items() if v.get("state") in ("failed", "upstream_failed")
            }
            assert not failed, f"churn_training failed before training.train ran: {failed}\n{stack.tails()}"
            ti = tis.get("training.train", {})
            return ti if ti.get("state") == "running" and ti.get("pid") else None

        running = _wait("training.train running", train_running, stack, poll=0.5)
        time.sleep(4)  # mid-task: the task has started its training process
        assert train_running(), "training.train finished before the kill; the check needs a longer task"
        running = train_running() or running  # the TI as it is now: its pid is the running try's
        killed = stack.kill_worker(running)
        t_kill = time.monotonic()
        _run_ok(stack, "churn_training", train, timeout=600)
        ti = _tis(stack, "churn_training", train)["training.train"]
        assert ti["try_number"] == 2, f"the try on the killed {killed} was not retried: {ti}"
        figures["celery_kill"] = {
            "killed": killed,
            "retried_on": ti.get("hostname"),
            "kill_to_success_s": round(time.monotonic() - t_kill, 1),
        }
        figures["training_with_kill_s"] = round(time.monotonic() - t0, 1)
        stack.procs[killed].start(240)  # the worker comes back, as its supervisor would restart it

        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
        versions = client.search_model_versions("name = 'churn'")
        if [v.version for v in versions] != ["1"]:
            runs_of = stack.api("GET", "/api/v2/dags/churn_training/dagRuns")["dag_runs"]
            tries = {
                t: stack.api(
                    "GET", f"/api/v2/dags/churn_training/dagRuns/{train}/taskInstances/training.{t}/tries"
                ).get("task_instances")
                for t in ("train", "register")
            }
            pytest.fail(
                "the killed try must not leave a second model version: "
                f"{[(v.version, v.run_id, v.source, v.tags) for v in versions]}\nruns: "
                f"{[(r['dag_run_id'], r['state'], r['run_type']) for r in runs_of]}\ntries: "
                f"{[(t, i.get('try_number'), i.get('state'), i.get('start_date'), i.get('end_date')) for t, li in tries.items() for i in li or ()]}"
                f"\n{stack.tails(80)}"
            )
        assert client.get_model_version_by_alias("churn", "champion").version == "1"
        runs = client.search_runs(
            [client.get_experiment_by_name("churn").experiment_id],
            filter_string=f"tags.`mlops.airflow.run_id` = '{train}'",
        )
        figures["training_mlflow_runs"] = sorted(r.info.status for r in runs)

        # 3. two deferrable sensors wait in the triggerer at the same time
        watch = _trigger(stack, "mlops_watch", {"not_version": "1", "since": time.time()})
        both = _wait("both sensors deferred", lambda: all(
            t.get("state") == "deferred" for t in _tis(stack, "mlops_watch", watch).values()
        ) and len(_tis(stack, "mlops_watch", watch)) == 2, stack, timeout=180)  # fmt: skip
        assert both

        # 4. score the drifted batch; 5. the scheduler retrains from the drift Asset event
        t0 = time.monotonic()
        score = _trigger(stack, "churn_inference", logical_date=f"{DAY}T06:00:00Z")
        _run_ok(stack, "churn_inference", score)
        figures["inference_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        retrain = _wait("asset-triggered retraining", lambda: [
            r for r in stack.api("GET", "/api/v2/dags/churn_retraining/dagRuns")["dag_runs"]
            if r["run_type"] == "asset_triggered"
        ], stack, timeout=300, poll=2)[0]  # fmt: skip
        _run_ok(stack, "churn_retraining", retrain["dag_run_id"])
        figures["retraining_s"] = round(time.monotonic() - t0, 1)
        _run_ok(stack, "mlops_watch", watch, timeout=180)
        figures["lifecycle_s"] = round(time.monotonic() - t_all, 1)

        # --- the bucket holds everything; no temporary objects
        keys = _keys(stack)
        predictions = [k for k in keys if k.startswith(f"{base}/predictions/") and k.endswith(".parquet")]
        manifests = [k for k in keys if k.startswith(f"{base}/predictions/") and k.endswith(".manifest.json")]
        figures["bucket"] = {
            "objects": len(keys),
            "mlflow_artifacts": len([k for k in keys if k.startswith("mlflow-artifacts/")]),
            "predictions": predictions,
            "manifests": manifests,
            "validation_reports": len([k for k in keys if k.startswith("reports/validation/")]),
            "drift_reports": len([k for k in keys if k.startswith("reports/drift/")]),
        }
        assert any(k.startswith("mlflow-artifacts/") and k.endswith("/MLmodel") for k in keys), keys[:20]
        assert len(predictions) == 1 and len(manifests) == 1, figures["bucket"]
        assert predictions == [f"{base}/predictions/{safe_segment(score)}.parquet"], predictions
        assert figures["bucket"]["validation_reports"] and figures["bucket"]["drift_reports"], figures[
            "bucket"
        ]
        assert not [k for k in keys if ".mlops-tmp-" in k or ".mlops-lock-" in k]

        import pandas as pd

        s3 = stack.s3()
        scored = pd.read_parquet(
            io.BytesIO(s3.get_object(Bucket=stack.bucket, Key=predictions[0])["Body"].read())
        )
        batch = pd.read_parquet(
            io.BytesIO(s3.get_object(Bucket=stack.bucket, Key=f"{base}/batches/{DAY}.parquet")["Body"].read())
        )
        assert len(scored) == len(batch) and scored["customer_id"].is_unique
        manifest = json.loads(s3.get_object(Bucket=stack.bucket, Key=manifests[0])["Body"].read())
        assert (manifest["model_name"], str(manifest["model_version"]), manifest["rows"]) == (
            "churn",
            "1",
            len(batch),
        )

        # --- one Asset event per promise; the killed try added none
        events = _sql(
            stack,
            "SELECT a.uri, e.source_dag_id, e.source_task_id, e.source_run_id FROM asset_event e "
            "JOIN asset a ON a.id = e.asset_id ORDER BY e.id",
        )
        figures["asset_events"] = len(events)
        by_run = [(u, t) for u, d, t, r in events if r == train]
        assert by_run == [(f"s3://{stack.bucket}/{base}/train.parquet", "training.validate_data")], events
        drift = [e for e in events if e[0] == "x-mlops://models/churn/drift"]
        assert [(d, t, r) for _, d, t, r in drift] == [("churn_inference", "inference.detect_drift", score)]
        versions = sorted(int(v.version) for v in client.search_model_versions("name = 'churn'"))
        assert versions == [1, 2], versions
        assert client.get_model_version_by_alias("churn", "challenger").version == "2"

        # --- nothing on local disk outside the servers' folders (MLflow's cwd, workers' cwd and TMPDIR empty)
        assert _local_files(stack.root) == [], _local_files(stack.root)
        assert not (stack.root / "airflow" / "mlops").exists()
    print("\nproduction tier figures: " + json.dumps(figures, indent=1, default=str))
