"""A server process a test starts: its own process group, a free loopback port, a log file, stopped whole."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

# One implementation of each, shared with `./dev demo` (tests/ is not installed, so the package owns them).
from airflow_mlops.demo import free_port, stop_process_groups

__all__ = ["LoopbackService", "StartedInWith", "free_port", "stop_process_groups"]


class StartedInWith:
    """``with thing:`` starts it (stopping whatever did start when start-up fails) and stops it at the end."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoopbackService(StartedInWith):
    """
    Subclasses say what to run (:meth:`command`, :meth:`env`, :meth:`cwd`) and when it is up (:meth:`ready`);
    this starts it in a new session (so :meth:`stop` ends every child too), waits, and tails its log on failure.
    """

    what = "server"
    poll = 1.0
    grace = 10.0

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def cwd(self) -> Path:
        return self.log_path.parent

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 180.0) -> None:
        """Start (again on the same port, when it ran before) and wait until :meth:`ready`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            cwd=self.cwd(),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"{self.what} exited with {code}:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(self.poll)
        self.stop()
        raise RuntimeError(f"{self.what} was not up after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_groups(self.proc, grace=self.grace)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def descendants(root: int) -> set[int]:
    """``root`` and every process below it, read from /proc (process groups miss a task that re-groups)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found
