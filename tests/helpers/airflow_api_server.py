"""Run only a real ``airflow api-server`` (no scheduler) with known users, for tests of plugin endpoints.

Much cheaper than :class:`tests.helpers.airflow_standalone.AirflowStandalone`: one uvicorn worker on a free
loopback port, on the test session's AIRFLOW_HOME and SQLite DB (migrate it first), so it sees the DAG runs
and files the tests write. Users and passwords are given (``simple_auth_manager_users`` and a passwords file);
the auth manager class can be swapped (e.g. :mod:`tests.helpers.dag_acl_auth_manager`). The server runs in
its own process group, which :meth:`stop` ends whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.helpers.mlflow_server import free_port, stop_process_group

ROOT = Path(__file__).resolve().parents[2]


class AirflowApiServer:
    """``with AirflowApiServer(tmp, {"alice": ("viewer", "pw")}) as api: api.token("alice")``."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, tuple[str, str]],
        *,
        auth_manager: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.users = users  # name -> (role, password)
        self.auth_manager = auth_manager
        self.extra_env = extra_env or {}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "api-server.log"
        self._log: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        passwords = self.workdir / "passwords.json"
        passwords.write_text(json.dumps({name: pw for name, (_, pw) in self.users.items()}))
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": "mlops-tests-jwt-secret-" + "0123456789abcdef" * 4,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                    f"{name}:{role}" for name, (role, _) in self.users.items()
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            }
        )
        if self.auth_manager:
            env["AIRFLOW__CORE__AUTH_MANAGER"] = self.auth_manager
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--apps", "core"],
            stdout=self._log,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            env=self.env(),
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airflow api-server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/mlops/health", timeout=3).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"airflow api-server was not up after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace=10.0)
            self.proc = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def __enter__(self) -> AirflowApiServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def token(self, user: str) -> str:
        """A JWT from ``POST /auth/token``, as API clients get one."""
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": user, "password": self.users[user][1]},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])
