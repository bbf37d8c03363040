"""The compose stack's services as real processes on loopback, without Docker.

Every Airflow component, the MLflow server and the bucket get the configuration ``docker-compose.yaml`` gives
its service (read through :mod:`tests.helpers.compose`, with .env.example's defaults); only what cannot be the
same outside containers is changed, and that is listed here in one place:

* service host names become ``127.0.0.1`` with a free port (``postgres:5432`` -> ``127.0.0.1:<port>``);
* container paths (``/opt/airflow/...``) become folders of the stack's root;
* MinIO is replaced by moto's standalone S3 server (the server s3fs's own test suite runs against), PostgreSQL
  and Redis are Debian's servers, each started the way its image starts it;
* :data:`TEST_TUNING`: heartbeats and intervals short enough for a test, each one named.

:class:`ProductionStack` starts PostgreSQL (Airflow's metadata DB and MLflow's backend store, created by the
compose stack's own ``docker/postgres-init.sh``), Redis, the S3 server and its bucket, ``mlflow server`` with
``--artifacts-destination s3://...`` behind its proxy, ``docker/airflow-init.sh`` (migration, admin user,
pool), then the API server, scheduler, dag-processor, triggerer and two Celery workers as separate processes.
Each runs in its own process group under the stack's root and :meth:`ProductionStack.stop` ends them all.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.helpers.compose import ROOT, compose, service_env
from tests.helpers.process import LoopbackService, StartedInWith, descendants, free_port, stop_process_groups

BIN = Path(sys.executable).parent
HOSTS = ("postgres", "redis", "minio", "mlflow", "airflow-apiserver")
# Settings the tier adds to the compose environment, and why: nothing else differs from the compose stack.
TEST_TUNING = {
    # a killed worker's task is declared lost after 20 s instead of 5 min (the Celery kill check waits on it)
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.assets.manager=ERROR",
}
# Settings of the compose environment that name container paths or host-only features, replaced here.
REPLACED = (
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW_CONN_KUBERNETES_DEFAULT",
    "AIRFLOW__API__BASE_URL",
)


def pg_bin(name: str) -> str | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


def missing_servers() -> list[str]:
    """Debian packages the tier needs that are not installed (``./dev test`` installs them)."""
    missing = []
    if not (pg_bin("initdb") and pg_bin("postgres")):
        missing.append("postgresql")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    return missing


def loopback(value: str, ports: dict[str, int]) -> str:
    """``http://minio:9000`` -> ``http://127.0.0.1:<port>`` for every compose service host name."""
    pattern = re.compile(r"(?<=[/@])(" + "|".join(map(re.escape, HOSTS)) + r"):\d+")
    return pattern.sub(lambda m: f"127.0.0.1:{ports[m.group(1)]}", value)


class _Proc(LoopbackService):
    """A process of the stack: a command, an environment, a readiness check."""

    def __init__(self, root: Path, name: str, argv: list[str], env: dict[str, str], ready: Any, **kw: Any):
        super().__init__(root / "logs" / f"{name}.log")
        self.what = name
        self._argv, self._env, self._ready = argv, env, ready
        self._cwd = kw.get("cwd", root)
        self.grace = kw.get("grace", 10.0)

    def command(self) -> list[str]:
        return self._argv

    def env(self) -> dict[str, str]:
        return self._env

    def cwd(self) -> Path:
        return self._cwd

    def ready(self) -> bool:
        return bool(self._ready(self))


def _http_ok(url: str) -> Any:
    def check(_: Any) -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return check


def _tcp_answers(port: int, probe: bytes, expect: bytes) -> Any:
    def check(_: Any) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(probe)
                return expect in sock.recv(64)
        except OSError:
            return False

    return check


def _log_says(text: str) -> Any:
    def check(proc: LoopbackService) -> bool:
        try:
            return text in proc.log_path.read_text(errors="replace")
        except OSError:
            return False

    return check


class ProductionStack(StartedInWith):
    """``with ProductionStack(root, dags) as stack: stack.trigger(...)``; timings in ``stack.timings``."""

    def __init__(self, root: Path, dags_folder: Path) -> None:
        self.root = root
        self.dags_folder = dags_folder
        self.ports = {name: free_port() for name in HOSTS}
        self.services = compose()["services"]
        self.bucket = service_env(self.services["minio-init"])["MLOPS_BUCKET"]
        self.procs: dict[str, _Proc] = {}
        self.timings: dict[str, float] = {}
        self.run_as: list[str] = []
        self._token: str | None = None
        for sub in ("logs", "pg", "redis", "mlflow", "airflow", "worker-cwd", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ config
    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['minio']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow-apiserver']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def _base_env(self) -> dict[str, str]:
        """The test process's environment minus everything Airflow, MLflow or AWS would read from it."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONHASHSEED", "TZ", "USER", "LOGNAME")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONPATH"] = str(ROOT)
        env["TMPDIR"] = str(self.root / "tmp")
        return env

    def compose_airflow_env(self) -> dict[str, str]:
        """The environment docker-compose.yaml gives the Airflow worker service, on loopback."""
        env = service_env(self.services["airflow-worker"])
        env = {k: loopback(v, self.ports) for k, v in env.items() if k not in REPLACED}
        return env

    def airflow_env(self) -> dict[str, str]:
        home = self.root / "airflow"
        env = self._base_env()
        env.update(self.compose_airflow_env())
        env.update(TEST_TUNING)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "config" / "passwords.json"),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.ports["airflow-apiserver"]),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW_UID": str(os.getuid()),
                "MLOPS_AIRFLOW_ENTRYPOINT": "",
            }
        )
        init = service_env(self.services["airflow-init"])
        env["_AIRFLOW_WWW_USER_USERNAME"] = init["_AIRFLOW_WWW_USER_USERNAME"]
        env["_AIRFLOW_WWW_USER_PASSWORD"] = init["_AIRFLOW_WWW_USER_PASSWORD"]
        return env

    # ------------------------------------------------------------------------------------------ servers
    def _timed(self, name: str, proc: _Proc, timeout: float = 180) -> _Proc:
        t0 = time.monotonic()
        self.procs[name] = proc
        proc.start(timeout)
        self.timings[name] = round(time.monotonic() - t0, 1)
        return proc

    def _start_postgres(self) -> None:
        pg = service_env(self.services["postgres"])
        data = self.root / "pg" / "data"
        sock = Path(tempfile.mkdtemp(prefix="mlops-pgsock-"))  # short path: socket names are limited
        self._pg_sock = sock
        pwfile = self.root / "pg" / "pw"
        pwfile.write_text(pg["POSTGRES_PASSWORD"] + "\n")
        if os.geteuid() == 0:  # the server refuses to run as root, as in its image
            pwd.getpwnam("postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
            for path in (self.root, self.root / "pg", sock, pwfile):
                shutil.chown(path, "postgres")
            self.root.chmod(0o755)
        subprocess.run(
            [*self.run_as, pg_bin("initdb") or "initdb", "-D", str(data), "-U", pg["POSTGRES_USER"],
             f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust"],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        port = self.ports["postgres"]
        argv = [*self.run_as, pg_bin("postgres") or "postgres", "-D", str(data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
                "-c", "max_connections=200", "-c", "fsync=off"]  # fmt: skip
        proc = _Proc(self.root, "postgres", argv, self._base_env(), lambda p: _pg_ready(port), grace=10)
        self._timed("postgres", proc)
        # the image creates POSTGRES_DB; then docker/postgres-init.sh creates MLflow's role and database
        env = {**self._base_env(), "PGHOST": str(sock), "PGPORT": str(port), **pg}
        subprocess.run(
            [shutil.which("psql") or "psql", "-U", pg["POSTGRES_USER"], "-d", "postgres", "-v", "ON_ERROR_STOP=1",
             "-c", f'CREATE DATABASE "{pg["POSTGRES_DB"]}"'],
            check=True, capture_output=True, env=env, timeout=60,
        )  # fmt: skip
        subprocess.run(
            [str(ROOT / "docker" / "postgres-init.sh")], check=True, capture_output=True, env=env, timeout=60
        )

    def _start_redis(self) -> None:
        argv = list(self.services["redis"]["command"])
        port = self.ports["redis"]
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.root / "redis")]
        argv[0] = shutil.which("redis-server") or argv[0]
        ready = _tcp_answers(port, b"PING\r\n", b"+PONG")
        self._timed("redis", _Proc(self.root, "redis", argv, self._base_env(), ready))

    def _start_s3(self) -> None:
        port = self.ports["minio"]
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        self._timed(
            "s3", _Proc(self.root, "s3", argv, self._base_env(), _http_ok(f"{self.s3_url}/moto-api/"))
        )
        self.s3().create_bucket(Bucket=self.bucket)

    def s3(self) -> Any:
        import boto3

        minio = service_env(self.services["minio"])
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=minio["MINIO_ROOT_USER"],
            aws_secret_access_key=minio["MINIO_ROOT_PASSWORD"],
            region_name="us-east-1",
        )

    def _start_mlflow(self) -> None:
        service = self.services["mlflow"]
        argv = [loopback(str(a), self.ports) for a in service["command"]]
        argv[0] = str(BIN / "mlflow")
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(self.ports["mlflow"])
        argv += ["--workers", "2"]
        env = {**self._base_env(), **{k: loopback(v, self.ports) for k, v in service_env(service).items()}}
        proc = _Proc(
            self.root, "mlflow", argv, env, _http_ok(f"{self.mlflow_url}/health"), cwd=self.root / "mlflow"
        )
        self._timed("mlflow", proc)

    def _init_airflow(self) -> None:
        t0 = time.monotonic()
        result = subprocess.run(
            [str(ROOT / "docker" / "airflow-init.sh")],
            capture_output=True, text=True, env=self.airflow_env(), cwd=self.root / "worker-cwd", timeout=600,
        )  # fmt: skip
        (self.root / "logs" / "airflow-init.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"docker/airflow-init.sh failed:\n{(result.stdout + result.stderr)[-4000:]}")
        self.timings["airflow-init"] = round(time.monotonic() - t0, 1)

    def _airflow_proc(self, name: str, args: list[str], ready: Any, **env: str) -> _Proc:
        argv = [str(BIN / "airflow"), *args]
        proc = _Proc(
            self.root, name, argv, {**self.airflow_env(), **env}, ready, cwd=self.root / "worker-cwd"
        )
        return proc

    def start(self) -> None:
        t0 = time.monotonic()
        self._start_postgres()
        self._start_redis()
        self._start_s3()
        self._start_mlflow()
        self._init_airflow()
        api = self._airflow_proc(
            "api-server", ["api-server"], _http_ok(f"{self.api_url}/api/v2/monitor/health")
        )
        self._timed("api-server", api, timeout=240)
        for name, args in (
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
            ("triggerer", ["triggerer"]),
        ):
            proc = self._airflow_proc(name, args, lambda p: True)
            self.procs[name] = proc
            proc.start(30)
        for n in (1, 2):
            name = f"worker{n}"
            proc = self._airflow_proc(
                name,
                ["celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", "default"],
                _log_says("ready."),
                AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            )
            self._timed(name, proc, timeout=240)
        self._wait_components_healthy()
        self.timings["total_start"] = round(time.monotonic() - t0, 1)

    def _wait_components_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                body = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError):
                body = {}
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if all(body.get(p, {}).get("status") == "healthy" for p in parts):
                return
            for proc in self.procs.values():
                if proc.proc is not None and proc.proc.poll() is not None:
                    raise RuntimeError(f"{proc.what} exited:\n{proc.tail()}")
            time.sleep(1)
        raise RuntimeError(f"Airflow components not healthy after {timeout:.0f}s: {body}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            try:
                proc.stop()
            except Exception:
                pass
        shutil.rmtree(getattr(self, "_pg_sock", "/nonexistent"), ignore_errors=True)

    def kill_worker(self, ti: dict[str, Any]) -> str:
        """SIGKILL the whole process group of the Celery worker that runs the task instance ``ti``.

        Both workers run on this machine, so the TI's hostname cannot tell them apart (and a machine
        named ``worker-…`` would match either); the TI's ``pid`` can: the worker is the one whose process
        tree holds it. Raises when no worker holds it, so the test never kills an idle worker.
        """
        pid = ti.get("pid")
        workers = {
            n: p.proc.pid for n, p in self.procs.items() if n.startswith("worker") and p.proc is not None
        }
        for name, root in workers.items():
            tree = descendants(root)
            if pid in tree or (pid is None and len(tree) > 2):
                stop_process_groups(self.procs[name].proc, grace=0)  # type: ignore[arg-type]
                for left in tree:  # a task process that re-grouped itself dies with its worker too
                    if _alive(left):
                        os.kill(left, signal.SIGKILL)
                return name
        trees = {n: sorted(descendants(r)) for n, r in workers.items()}
        raise AssertionError(f"no Celery worker runs pid {pid} of {ti.get('task_id')}: worker trees {trees}")

    # ------------------------------------------------------------------------------------------ REST API
    def api(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,)) -> Any:
        if self._token is None:
            init = service_env(self.services["airflow-init"])
            response = requests.post(
                f"{self.api_url}/auth/token",
                json={
                    "username": init["_AIRFLOW_WWW_USER_USERNAME"],
                    "password": init["_AIRFLOW_WWW_USER_PASSWORD"],
                },
                timeout=30,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        response = requests.request(
            method, f"{self.api_url}{path}", json=body, headers={"Authorization": f"Bearer {self._token}"},
            timeout=60,
        )  # fmt: skip
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:800]}")
        return response.json() if response.content else None

    def tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ---\n{proc.tail(lines)}" for name, proc in self.procs.items())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pg_ready(port: int) -> bool:
    isready = pg_bin("pg_isready") or "pg_isready"
    result = subprocess.run([isready, "-h", "127.0.0.1", "-p", str(port)], capture_output=True, timeout=10)
    return result.returncode == 0
