"""Airflow helpers for tests: migrate the SQLite DB, register a DAG built in a test, run it with dag.test()."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers.xcom import xcom  # noqa: F401 - re-exported: tests/integration/test_registry.py imports it here

_migrated = False


def migrate_db() -> None:
    """``airflow db migrate`` once per process, in a subprocess with the test environment."""
    global _migrated
    if _migrated:
        return
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run(
        [airflow_bin, "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    _migrated = True


def register_dag(dag: Any) -> None:
    """Serialise a DAG built inside a test into the ``dags-folder`` bundle so ``dag.test()`` accepts it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder="/dev/null", collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)


def _per_task(dag_run: Any, column: str) -> dict[str, Any]:
    """``{task_id[map_index]: <TaskInstance column>}`` of a DagRun."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, getattr(TaskInstance, column)).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    return {(tid if mi < 0 else f"{tid}[{mi}]"): value for tid, mi, value in rows}


def task_states(dag_run: Any) -> dict[str, str]:
    """``{task_id[map_index]: state}`` of a finished DagRun."""
    return {key: str(state) for key, state in _per_task(dag_run, "state").items()}


def try_numbers(dag_run: Any) -> dict[str, int]:
    """``{task_id[map_index]: try number}`` of a finished DagRun (1 = never retried)."""
    return {key: int(n) for key, n in _per_task(dag_run, "try_number").items()}


def task_log(
    dag_id: str, run_id: str, task_id: str, try_number: int | None = None, map_index: int = -1
) -> str:
    """The log file text of one task try (the newest try when ``try_number`` is None)."""
    base = Path(os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]) / f"dag_id={dag_id}" / f"run_id={run_id}"
    folder = base / f"task_id={task_id}"
    if map_index >= 0:
        folder = folder / f"map_index={map_index}"
    logs = sorted(folder.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
    if try_number is not None:
        logs = [p for p in logs if p.stem == f"attempt={try_number}"]
    return logs[-1].read_text(errors="replace") if logs else ""


@contextlib.contextmanager
def _recording_task_errors() -> Iterator[dict[str, str]]:
    """
    Record the exception of every task that dag.test() runs in-process, keyed by ``task_id[map_index]``.

    dag.test() swallows task failures (it only sets the state) and logs to the console, so the harness wraps
    the in-process runner it calls to keep the error text for the failure report.
    """
    import traceback

    from airflow.sdk.execution_time import supervisor

    errors: dict[str, str] = {}
    original = supervisor.run_task_in_process

    def recording(ti: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(ti, task, *args, **kwargs)
        if result.error is not None:
            key = ti.task_id if ti.map_index in (None, -1) else f"{ti.task_id}[{ti.map_index}]"
            errors[key] = "".join(traceback.format_exception(result.error))
        return result

    supervisor.run_task_in_process = recording
    try:
        yield errors
    finally:
        supervisor.run_task_in_process = original


def run_dag(
    dag: Any, conf: dict[str, Any] | None = None, *, expect: str | None = "success", **kwargs: Any
) -> Any:
    """
    Register and run ``dag`` with ``dag.test()``; return the DagRun (``.task_errors`` maps task -> traceback).

    ``dag.test()`` does not raise when a task fails, so with ``expect`` set this asserts the final state and,
    on a mismatch, fails with every task's state and the failing tasks' errors.
    """
    migrate_db()
    register_dag(dag)
    with _recording_task_errors() as errors:
        dag_run = dag.test(run_conf=conf, **kwargs)
    dag_run.task_errors = errors
    state = str(dag_run.state)
    if expect is not None and state != expect:
        states = task_states(dag_run)
        details = [f"DAG {dag.dag_id} ended {state!r}, expected {expect!r}; task states: {states}"]
        for key, error in errors.items():
            details.append(f"---- error of {key} ({states.get(key)}) ----\n{error[-8000:]}")
        raise AssertionError("\n".join(details))
    return dag_run
