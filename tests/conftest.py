"""Test harness: a temporary AIRFLOW_HOME on SQLite, a real MLflow server on loopback, and a DAG runner.

Tiers: tests/unit (marker ``unit``, added below) starts no server; everything else is ``integration``.

The environment is set here, at import time, before anything imports Airflow: Airflow reads its
configuration once per process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HOME = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
for sub in ("dags", "plugins", "storage", "logs"):
    (_HOME / sub).mkdir()

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(_HOME / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:1/execution/",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_HOME / "logs"),
        "AIRFLOW__MLOPS__STORAGE_BASE_URI": str(_HOME / "storage"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
    }
)
for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN"):
    os.environ.pop(leaked, None)

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

import pytest  # noqa: E402

from tests.helpers.mlflow_server import MlflowServer  # noqa: E402

_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN")


def _mlflow_uri_modules() -> tuple[Any, Any] | None:
    """MLflow's modules that hold the fluent API's URIs, once something imported mlflow."""
    if "mlflow" not in sys.modules:
        return None
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    return tracking_utils, registry_utils


@pytest.fixture(autouse=True)
def _mlflow_globals_restored() -> Iterator[None]:
    """
    MLflow keeps the fluent API's tracking and registry URIs in module globals (and reads MLFLOW_* variables):
    whatever a test sets there ends with it, so a later test's ``MlflowClient(tracking_uri=...)`` never reads a
    registry an earlier test pointed the process at.
    """
    modules = _mlflow_uri_modules()
    saved = (modules[0]._tracking_uri, modules[1]._registry_uri) if modules else (None, None)
    env = {key: os.environ.get(key) for key in _MLFLOW_ENV}
    yield
    modules = _mlflow_uri_modules()
    if modules:
        modules[0]._tracking_uri, modules[1]._registry_uri = saved
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's AIRFLOW_HOME (SQLite metadata DB, dags/, storage/)."""
    return _HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """Migrate the SQLite metadata DB once per test session."""
    from tests.helpers.airflow import migrate_db

    migrate_db()
    return airflow_home / "airflow.db"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` on a free loopback port, exposed as the ``mlflow_default`` connection."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    previous = os.environ.get("AIRFLOW_CONN_MLFLOW_DEFAULT")
    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server.connection_json()
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = previous
        server.stop()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory):
    """
    Run `python -m airflow_mlops.demo` (what `./dev demo` runs) once per session in a clean environment; yields
    ``(root, output)``. Its MLflow store is ``root/mlflow/mlflow.db``, its Airflow home ``root/airflow``, and the
    OpenLineage events of the whole lifecycle are in ``root.parent / "openlineage" / "events.jsonl"``.
    """
    root = tmp_path_factory.mktemp("demo") / "run"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING", "OPENLINEAGE"))
    }
    # The OpenLineage provider's file transport is on, as a platform would set it: test_demo.py reads the events.
    events = root.parent / "openlineage" / "events.jsonl"
    events.parent.mkdir()
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(events), "append": True}
    )
    env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "mlops_demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_mlops.demo", "--root", str(root), "--timeout", "900"],
        cwd=_REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-8000:]
    yield root, output
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    """A fresh folder for the data, reports and predictions of one test."""
    path = tmp_path / "storage"
    path.mkdir()
    return path


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m unit` selects the fast tier by this marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/unit is the fast tier (tests/helpers/tiers.py; tests/unit/test_tiers.py checks)."""
    from tests.helpers.tiers import mark_unit_tier

    mark_unit_tier(items, Path(__file__).resolve().parent / "unit")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
