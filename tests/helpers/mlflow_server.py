"""Start and stop a real ``mlflow server`` on a free loopback port, in its own process group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace`` seconds."""
    if proc.poll() is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class MlflowServer:
    """A tracking server with a SQLite backend and a local artifact root under ``root``."""

    def __init__(self, root: Path, *, app_name: str | None = None, extra_env: dict[str, str] | None = None):
        self.root = root
        self.app_name = app_name
        self.extra_env = extra_env or {}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection_json(self, **extra: object) -> str:
        body: dict[str, object] = {"conn_type": "mlflow", "host": self.url}
        body.update(extra)
        return json.dumps(body)

    def start(self, timeout: float = 120.0) -> None:
        """Start (or start again on the same port, keeping the stores) and wait until healthy."""
        self.port = self.port or free_port()
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", (self.root / "artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        env = {**os.environ, **self.extra_env, "MLFLOW_DISABLE_TELEMETRY": "true"}
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD"):  # fmt: skip
            env.pop(key, None)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.root
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not become healthy in {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None
            self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
