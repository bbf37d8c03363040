"""The demo lifecycle on the embedded default: real Airflow (SQLite), a local MLflow store, local folders.

``./dev demo`` runs the story of the example churn lifecycle (``dags/churn_lifecycle.yaml``):

1. train, validate, register and promote a first champion (``churn_training``, run with ``dag.test()``);
2. score a normal batch: no drift (``churn_inference``);
3. score a drifted batch: drift is confirmed and the drift Asset event is emitted;
4. the real Airflow scheduler sees that event and runs ``churn_retraining``; its candidate is gated;
5. a summary: versions, champion, drift share, where the reports are, how to open the UIs.

Everything lives under ``.demo/`` and is wiped at the start, so running it twice works.

This module sets the demo's Airflow environment (``AIRFLOW_HOME``, the SQLite DB, ports) before anything imports
Airflow, so it imports nothing from the package at module level: ``airflow_mlops.templates`` imports Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "churn"


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where to look."""


def _say(message: str) -> None:
    print(f"\033[1m[demo]\033[0m {message}", flush=True)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the test harness uses this one too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_groups(*procs: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """
    Stop processes started with ``start_new_session=True``, their children included: SIGTERM each whole process
    group, wait up to ``grace`` seconds for all of them together, SIGKILL whatever is left, reap the leaders.

    A group whose leader has already exited is signalled too: children it left behind still hold ports and
    files. The test harness stops its servers with this same function.
    """
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    floor = min(grace, 0.1)  # each process gets a last look, unless the caller wants no grace at all
    for proc in procs:
        try:
            proc.wait(timeout=max(floor, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): nothing more a caller can do
            pass


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _setup_env(root: Path, repo: Path) -> dict[str, str]:
    home = root / "airflow"
    storage = root / "storage"
    mlflow_dir = root / "mlflow"
    for folder in (home, storage, mlflow_dir, root / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "logs"),
        "AIRFLOW__MLOPS__STORAGE_BASE_URI": str(storage),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "mlflow", "host": f"sqlite:///{mlflow_dir / 'mlflow.db'}"}
        ),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("MLOPS_DEMO_LOG_LEVEL", "WARNING"),
        # Airflow warns "AssetModel ... not found; cannot create asset event" (then "inactive AssetModel") the
        # first time a URI is published through an AssetAlias, and then creates the asset and the event
        # (tests/integration/test_api_triggers.py reads them from asset_event). Not news in the demo's story.
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.assets.manager=ERROR",
    }
    os.environ.update(env)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(key, None)
    return env


def _quiet_demo_process() -> None:
    """
    Silence what only the demo's own process prints: MLflow creating its SQLite tables, and the Starlette
    deprecation that ``dag.test()``'s in-process execution API client raises on every call. Both are filtered
    by logger or message where they are raised; task logs are not touched.
    """
    import logging
    import warnings

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")


def _airflow(*args: str, timeout: float = 600) -> str:
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow_bin, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise DemoError(f"`airflow {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _prepare_mlflow(root: Path) -> None:
    """Create the experiment with an absolute artifact root so every process stores artifacts in .demo/."""
    from airflow_mlops.hooks.mlflow import MlflowHook

    with MlflowHook().session() as client:
        for name in (MODEL,):
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(name, artifact_location=(root / "mlflow" / "artifacts").as_uri())


def _run(dag: Any, conf: dict[str, Any] | None = None) -> Any:
    dag_run = dag.test(run_conf=conf or {})
    if str(dag_run.state) != "success":
        raise DemoError(
            f"DAG {dag.dag_id} ended {dag_run.state}; its task log is above. Fix the cause and run again."
        )
    return dag_run


def task_xcom(
    dag_id: str,
    run_id: str,
    task_id: str,
    key: str = "return_value",
    map_index: int = -1,
    *,
    raw: bool = False,
) -> Any:
    """
    One XCom value of a task instance, read from the metadata DB; None when there is none.

    A value stored as JSON text comes back decoded; a plain string that is not JSON (a bare URL) comes back as it
    is. ``raw=True`` returns the stored value untouched (for a string that would decode, such as ``"2"``). The
    test harness reads XCom with this same function.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
        ).first()
    if row is None:
        return None
    value = row[0]
    if raw or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _xcom(dag_run: Any, task_id: str) -> Any:
    return task_xcom(dag_run.dag_id, dag_run.run_id, task_id)


def _start_scheduler(root: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int]:
    """The real scheduler plus the API server its LocalExecutor workers report to."""
    port = free_port()
    os.environ["AIRFLOW__API__PORT"] = str(port)
    os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    api_log = open(root / "logs" / "api-server.log", "wb")  # noqa: SIM115 - closed with the process
    sched_log = open(root / "logs" / "scheduler.log", "wb")  # noqa: SIM115
    os.environ["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    api = subprocess.Popen(
        [airflow_bin, "api-server", "--port", str(port), "--host", "127.0.0.1"],
        stdout=api_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    _wait_healthy(api, f"http://127.0.0.1:{port}/api/v2/monitor/health", root)
    scheduler = subprocess.Popen(
        [airflow_bin, "scheduler"], stdout=sched_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return api, scheduler, port


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, root: Path, timeout: float = 180) -> None:
    """Task workers report to the API server: the scheduler may only start once it answers."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(
                f"the Airflow API server exited ({proc.returncode}); see {root / 'logs' / 'api-server.log'}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    stop_process_groups(proc)
    raise DemoError(f"the Airflow API server did not answer {url} in {timeout:.0f}s")


def _wait_for_retraining(dag_id: str, after: Any, timeout: float) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    deadline = time.monotonic() + timeout
    announced = False
    while time.monotonic() < deadline:
        with create_session() as session:
            run = (
                session.execute(
                    select(DagRun)
                    .where(DagRun.dag_id == dag_id, DagRun.run_after >= after)
                    .order_by(DagRun.run_after.desc())
                )
                .scalars()
                .first()
            )
            if run is not None:
                if not announced:
                    _say(f"  the scheduler created {dag_id} run {run.run_id} (run type: {run.run_type})")
                    announced = True
                if str(run.state) in {"success", "failed"}:
                    session.expunge(run)
                    return run
        time.sleep(2)
    raise DemoError(f"the scheduler did not finish a {dag_id} run within {timeout:.0f}s; see .demo/logs/")


def run_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".demo", help="working folder (wiped at start)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the retraining run")
    args = parser.parse_args(argv)

    started = time.monotonic()
    repo = Path(__file__).resolve().parents[1]
    root = Path(args.root).resolve()
    if root.exists():
        shutil.rmtree(root)
    _setup_env(root, repo)
    _quiet_demo_process()
    _say(f"embedded default under {root}: SQLite Airflow, local MLflow store, local folders")
    _airflow("db", "migrate")
    _prepare_mlflow(root)

    from airflow_mlops.core.storage import join_uri
    from airflow_mlops.settings import get_settings
    from airflow_mlops.templates.example_data import write_example_data

    data = write_example_data(join_uri(get_settings().storage_base_uri, "example", "churn"))
    _say(f"wrote example data: {', '.join(sorted(data))}")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(repo / "dags" / "churn_lifecycle.py"))
    if bag.import_errors:
        raise DemoError(f"dags/churn_lifecycle.py does not import: {bag.import_errors}")
    training, inference = bag.dags[f"{MODEL}_training"], bag.dags[f"{MODEL}_inference"]
    retraining_id = f"{MODEL}_retraining"

    t0 = time.monotonic()
    _say("1/4 training DAG: validate -> train -> register -> gate")
    run = _run(training)
    first = _xcom(run, "training.promote")
    _say(f"  v{first['version']}: {first['decision']} ({'; '.join(first.get('reasons', []))[:200]})")
    _say(f"  ({time.monotonic() - t0:.0f}s)")

    out = join_uri(get_settings().storage_base_uri, "example", "churn", "predictions")
    drift_results = {}
    for step, name in (("2/4", "batch_normal"), ("3/4", "batch_drifted")):
        t0 = time.monotonic()
        _say(f"{step} inference DAG on {name}: validate -> score with the champion -> drift check")
        run = _run(inference, {"input_uri": data[name], "output_uri": join_uri(out, f"{name}.parquet")})
        score, drift = _xcom(run, "inference.score"), _xcom(run, "inference.detect_drift")
        drift_results[name] = drift
        _say(
            f"  scored {score['rows']} rows with v{score['model_version']}; drift share "
            f"{drift['drift_share']:.2f} -> {'DRIFT' if drift['drift_detected'] else 'no drift'}"
            f"{', drift Asset event emitted' if drift.get('emitted') else ''} ({time.monotonic() - t0:.0f}s)"
        )
    if not drift_results["batch_drifted"].get("emitted"):
        raise DemoError("the drifted batch did not emit a drift event; see the detect_drift log above")

    t0 = time.monotonic()
    _say("4/4 the real scheduler picks up the drift Asset event and runs the retraining DAG")
    from airflow.sdk import timezone

    since = timezone.utcnow()
    api, scheduler, _ = _start_scheduler(root)
    try:
        retrain_run = _wait_for_retraining(retraining_id, since - _seconds(600), args.timeout)
    finally:
        stop_process_groups(scheduler, api)
    if str(retrain_run.state) != "success":
        raise DemoError(
            f"{retraining_id} ended {retrain_run.state}; task logs are under {root / 'logs'}\n"
            + _failure_details(root, retrain_run)
        )
    gate = _xcom(retrain_run, "training.promote")
    _say(f"  v{gate['version']}: {gate['decision']} ({'; '.join(gate.get('reasons', []))[:300]})")
    _say(f"  ({time.monotonic() - t0:.0f}s)")

    _summary(root, first, gate, drift_results, time.monotonic() - started)
    return 0


def _failure_details(root: Path, dag_run: Any) -> str:
    """The failed tasks of a scheduler-run DAG run and the tail of their logs (and of the scheduler's)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    parts = [f"task states: {dict((t, str(s)) for t, s in rows)}"]
    run_dir = root / "logs" / f"dag_id={dag_run.dag_id}" / f"run_id={dag_run.run_id}"
    for task_id, state in rows:
        if str(state) not in {"failed", "up_for_retry"}:
            continue
        for log in sorted(run_dir.glob(f"task_id={task_id}/**/*.log")):
            lines = log.read_text(errors="replace").splitlines()
            parts.append(f"--- {log.relative_to(root)} (last 25 lines) ---\n" + "\n".join(lines[-25:]))
    sched = root / "logs" / "scheduler.log"
    if sched.exists():
        errors = [line for line in sched.read_text(errors="replace").splitlines() if "error" in line.lower()]
        parts.append("--- scheduler errors ---\n" + "\n".join(errors[-15:]))
    return "\n".join(parts)


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


def _summary(
    root: Path, first: dict[str, Any], gate: dict[str, Any], drift: dict[str, Any], elapsed: float
) -> None:
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.settings import get_settings

    settings = get_settings()
    hook = MlflowHook()
    with hook.session() as client:
        model = client.get_registered_model(MODEL)
        versions = sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    print()
    _say(f"done in {elapsed:.0f}s. Summary")
    print(f"  model {MODEL}: versions {[int(v.version) for v in versions]}, aliases {dict(model.aliases)}")
    print(f"  first training: v{first['version']} {first['decision']}")
    print(
        f"  retraining after drift: v{gate['version']} {gate['decision']}: {'; '.join(gate.get('reasons', []))}"
    )
    for name, result in drift.items():
        print(
            f"  drift on {name}: share {result['drift_share']:.2f}, drifted {result.get('drifted_columns')}, "
            f"report {result.get('report_uri')}"
        )
    print(f"  validation and drift reports: {settings.report_base_uri}")
    print(f"  predictions: {settings.storage_base_uri}/example/churn/predictions")
    print("  open the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri " + hook.tracking_uri)
    print(
        f"  open the Airflow UI: AIRFLOW_HOME={root / 'airflow'} AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags "
        f"AIRFLOW__MLOPS__STORAGE_BASE_URI={settings.storage_base_uri} "
        f"AIRFLOW_CONN_MLFLOW_DEFAULT='{os.environ['AIRFLOW_CONN_MLFLOW_DEFAULT']}' .venv/bin/airflow standalone"
    )


def main(argv: list[str] | None = None) -> int:
    return int(run_demo(argv if argv is not None else sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
