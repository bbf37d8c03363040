"""Start and stop a real ``mlflow server`` on a free loopback port, in its own process group."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import requests

from tests.helpers.process import LoopbackService, free_port

__all__ = ["MlflowServer", "free_port"]


class MlflowServer(LoopbackService):
    """A tracking server with a SQLite backend and a local artifact root under ``root``."""

    what = "mlflow server"
    poll = 0.5
    grace = 5.0

    def __init__(self, root: Path, *, app_name: str | None = None, extra_env: dict[str, str] | None = None):
        super().__init__(root / "server.log")
        self.root = root
        self.app_name = app_name
        self.extra_env = extra_env or {}

    def connection_json(self, **extra: object) -> str:
        body: dict[str, object] = {"conn_type": "mlflow", "host": self.url}
        body.update(extra)
        return json.dumps(body)

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", (self.root / "artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        return [*cmd, "--app-name", self.app_name] if self.app_name else cmd

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, "MLFLOW_DISABLE_TELEMETRY": "true"}
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD"):  # fmt: skip
            env.pop(key, None)
        return env

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float = 120.0) -> None:
        """Start (or start again on the same port, keeping the stores) and wait until healthy."""
        super().start(timeout)
