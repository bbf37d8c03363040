"""Run a real ``airflow standalone`` (scheduler, dag-processor, triggerer, API server) for one test.

It gets its own AIRFLOW_HOME (SQLite), DAGs folder and free loopback port, with the execution API URL pointed
at that port (otherwise task workers call :8080), low parallelism for 2-core machines, and DAGs unpaused at
creation so Asset-scheduled DAGs run. Everything runs in its own process group: :meth:`stop` sends SIGTERM to
the group, then SIGKILL, because SIGTERM to ``airflow standalone`` alone leaves its children and the idle
LocalExecutor workers running.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.helpers.process import LoopbackService

# Settings the pytest session sets for dag.test() that must not leak into the standalone stack.
_SESSION_ONLY = (
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
)


class AirflowStandalone(LoopbackService):
    """``with AirflowStandalone(home, dags) as af: af.trigger("dag", conf); af.wait_for_run("other")``."""

    def __init__(self, home: Path, dags_folder: Path, *, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(home / "standalone.log")
        self.home = home
        self.dags_folder = dags_folder
        self.extra_env = extra_env or {}
        self._token: str | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SESSION_ONLY}
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone spawns `airflow`
            }
        )
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------------------------------ lifecycle
    what = "airflow standalone"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), "standalone"]

    def ready(self) -> bool:
        return self._healthy() and self._password() is not None

    def start(self, timeout: float = 300.0) -> None:
        super().start(timeout)

    # ------------------------------------------------------------------------------------------ REST API
    def _healthy(self) -> bool:
        try:
            response = requests.get(f"{self.url}/api/v2/monitor/health", timeout=3)
            body = response.json() if response.status_code == 200 else {}
        except (requests.RequestException, ValueError):
            return False
        return body.get("scheduler", {}).get("status") == "healthy"

    def _password(self) -> str | None:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        try:
            return str(json.loads(path.read_text())["admin"])
        except (OSError, ValueError, KeyError):
            return None

    def api(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,)) -> Any:
        if self._token is None:
            response = requests.post(
                f"{self.url}/auth/token", json={"username": "admin", "password": self._password()}, timeout=30
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        response = requests.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=30,
        )
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dags(self, *dag_ids: str, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed every DAG (and report import errors if it did not)."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            missing = [
                d for d in dag_ids if self.api("GET", f"/api/v2/dags/{d}", ok=(200, 404)).get("dag_id") != d
            ]
            if not missing:
                return
            time.sleep(2.0)
        errors = self.api("GET", "/api/v2/importErrors")
        raise AssertionError(f"DAGs {missing} not parsed after {timeout:.0f}s; import errors: {errors}")

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: str | None = None
    ) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` like the UI: ``logical_date`` null unless given (ISO 8601)."""
        body = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
        )
        return str(body["dag_run_id"])

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """Clear (re-run) finished tasks of one run, as the UI's "Clear" does."""
        self.api(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False},
        )

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"])

    def wait_for_run(
        self,
        dag_id: str,
        *,
        run_id: str | None = None,
        run_type: str | None = None,
        timeout: float = 300.0,
    ) -> dict[str, Any]:
        """Wait for a finished run of ``dag_id`` (``run_id``, else the first of ``run_type``) and return it."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = [
                r
                for r in self.runs(dag_id)
                if (run_id is None or r["dag_run_id"] == run_id)
                and (run_type is None or r["run_type"] == run_type)
            ]
            done = [r for r in seen if r["state"] in ("success", "failed")]
            if done:
                return done[0]
            time.sleep(2.0)
        raise AssertionError(
            f"no finished run of {dag_id} after {timeout:.0f}s (runs: {seen}):\n{self.tail()}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, str]:
        body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}
