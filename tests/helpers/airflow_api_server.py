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
import sys
from pathlib import Path

import requests

from tests.helpers.process import LoopbackService

ROOT = Path(__file__).resolve().parents[2]


class AirflowApiServer(LoopbackService):
    """``with AirflowApiServer(tmp, {"alice": ("viewer", "pw")}) as api: api.token("alice")``."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, tuple[str, str]],
        *,
        auth_manager: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir / "api-server.log")
        self.workdir = workdir
        self.users = users  # name -> (role, password)
        self.auth_manager = auth_manager
        self.extra_env = extra_env or {}

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

    what = "airflow api-server"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), "api-server", "--apps", "core"]

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/mlops/health", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def token(self, user: str) -> str:
        """A JWT from ``POST /auth/token``, as API clients get one."""
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": user, "password": self.users[user][1]},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])
