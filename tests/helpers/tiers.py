"""The test tiers, checked: where each collected test sits, which markers it carries, which fixtures it uses.

* ``tests/unit`` is the fast tier: marker ``unit`` (added by tests/conftest.py through :func:`mark_unit_tier`);
  no server, no Airflow metadata DB, neither through a fixture nor through a helper it imports.
* Every test outside ``tests/unit`` carries ``integration``; under ``tests/production`` also ``production``.
* The modules measured at more than ~30 s (the ``slow`` table of tests/unit/test_tiers.py) carry ``slow``.

:func:`collect` runs ``pytest --collect-only`` on a tree in a subprocess with this module as a plugin
(``-p tests.helpers.tiers``), which writes every collected test, its markers and its fixture closure to the file
named by ``MLOPS_TIERS_REPORT``; :func:`problems` turns that, and an ``ast`` scan of the unit modules, into
one line per violation. Only the standard library is imported here: the plugin loads before tests/conftest.py
sets up Airflow's environment.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
UNIT = "tests/unit"
PRODUCTION = "tests/production"
REPORT_ENV = "MLOPS_TIERS_REPORT"

# The fixtures tests/unit can see that start a server or need the metadata DB (tests/conftest.py). Fixtures that
# start one inside an integration module (two_servers, auth_server, k8s, s3_conn, ...) are invisible to unit
# tests; a unit module that defines such a fixture itself is caught by SERVER_IMPORTS below.
SERVICE_FIXTURES: Mapping[str, str] = {
    "mlflow_server": "starts `mlflow server`",
    "airflow_db": "migrates the Airflow metadata DB",
}

# What a unit module may not import: each starts a server (or runs DAGs on the metadata DB). A dotted name also
# covers everything under it.
SERVER_IMPORTS: Mapping[str, str] = {
    "tests.helpers.mlflow_server": "starts `mlflow server` (free_port is in tests.helpers.process)",
    "tests.helpers.k8s_emulator": "starts the Kubernetes API emulation",
    "tests.helpers.airflow_standalone": "starts `airflow standalone`",
    "tests.helpers.airflow_api_server": "starts the Airflow API server",
    "tests.helpers.recording_http.RecordingProxy": "starts an HTTP server on loopback",
    "tests.helpers.process.LoopbackService": "starts a server process",
    "tests.helpers.airflow.run_dag": "runs a DAG on the Airflow metadata DB",
    "tests.helpers.airflow.migrate_db": "migrates the Airflow metadata DB",
    "tests.production": "starts PostgreSQL, Redis, Celery, MinIO and MLflow",
    "moto.server": "starts moto's S3 server",
    "http.server": "starts an HTTP server",
    "socketserver": "starts a socket server",
}

# Words of a command line (elements of a list or tuple literal) that start a server.
SERVER_ARGV: Mapping[str, str] = {
    "standalone": "`airflow standalone`",
    "api-server": "the Airflow API server",
    "scheduler": "the Airflow scheduler",
    "triggerer": "the Airflow triggerer",
    "dag-processor": "the Airflow DAG processor",
    "redis-server": "Redis",
    "pg_ctl": "PostgreSQL",
    "initdb": "PostgreSQL",
    "moto.server": "moto's S3 server",
}

# Rule name -> what it says, for the failure messages and the guard's parametrisation.
RULES: Mapping[str, str] = {
    "collects": "every test module collects (a module that does not cannot be checked)",
    "unit-marker": "every test under tests/unit carries `unit` (tests/conftest.py adds it)",
    "unit-no-services": "tests under tests/unit start no server and use no metadata DB",
    "unit-not-integration": "tests under tests/unit carry neither `integration` nor `production`",
    "integration-marker": "every test outside tests/unit carries `integration`",
    "production-marker": "every test under tests/production carries `production`",
    "slow-marker": "every module measured at more than ~30 s carries `slow`",
}


# ------------------------------------------------------------------------------------------ conftest side
def mark_unit_tier(items: Iterable[Any], unit_dir: Path) -> None:
    """Add the ``unit`` marker to every collected item under ``unit_dir``."""
    import pytest

    resolved = unit_dir.resolve()
    for item in items:
        if Path(item.path).resolve().is_relative_to(resolved):
            item.add_marker(pytest.mark.unit)


# ------------------------------------------------------------------------------------------ the plugin
_ERRORS: list[dict[str, str]] = []


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        text = str(report.longrepr).strip().splitlines()
        _ERRORS.append({"nodeid": report.nodeid, "message": text[-1] if text else "collection failed"})


def pytest_collection_finish(session: Any) -> None:
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    root = Path(session.config.rootpath)
    items = [
        {
            "nodeid": item.nodeid,
            "path": Path(item.path).resolve().relative_to(root.resolve()).as_posix(),
            "markers": sorted({mark.name for mark in item.iter_markers()}),
            "fixtures": sorted(getattr(item, "fixturenames", ())),
        }
        for item in session.items
    ]
    Path(target).write_text(json.dumps({"items": items, "errors": _ERRORS}))


# ------------------------------------------------------------------------------------------ the checks
def collect(root: Path) -> dict[str, Any]:
    """Collect ``root/tests`` in a subprocess: ``{"items": [...], "errors": [...]}`` (see the plugin above)."""
    with tempfile.TemporaryDirectory(prefix="mlops-tiers-") as folder:
        report = Path(folder) / "tiers.json"
        env = {**os.environ, REPORT_ENV: str(report)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "tests.helpers.tiers",
                   "--rootdir", str(root), str(root / "tests")]  # fmt: skip
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        if not report.exists():
            raise AssertionError(
                f"`pytest --collect-only` wrote no report (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return dict(json.loads(report.read_text()))


def server_uses(path: Path) -> list[str]:
    """What ``path`` imports or runs that starts a server (SERVER_IMPORTS, SERVER_ARGV), as ``line: why``."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            for banned, why in SERVER_IMPORTS.items():
                if name == banned or name.startswith(banned + "."):
                    found.append(f"line {node.lineno}: imports {name} ({why})")
                    break
        if isinstance(node, ast.List | ast.Tuple):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            for i, word in enumerate(words):
                if word in SERVER_ARGV:
                    found.append(f"line {node.lineno}: runs {word!r} ({SERVER_ARGV[word]})")
                elif word == "server" and i and words[i - 1] == "mlflow":
                    found.append(f"line {node.lineno}: runs 'mlflow server'")
    return sorted(set(found))


def _lacking(items: list[Mapping[str, Any]], marker: str) -> str | None:
    """None when every item carries ``marker``, else which ones do not (``all its tests`` or their names)."""
    missing = [item["nodeid"].split("::", 1)[-1] for item in items if marker not in item["markers"]]
    if not missing:
        return None
    return "all its tests" if len(missing) == len(items) else ", ".join(missing)


def problems(tree: Mapping[str, Any], root: Path, slow: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every violation of RULES in a collected ``tree`` under ``root``, as ``(rule, message)``."""
    out: list[tuple[str, str]] = []
    for error in tree["errors"]:
        out.append(
            ("collects", f"{error['nodeid']}: does not collect ({error['message']}); its tier is unchecked")
        )
    modules: dict[str, list[Mapping[str, Any]]] = {}
    for item in tree["items"]:
        modules.setdefault(item["path"], []).append(item)

    for path, items in sorted(modules.items()):
        if path.startswith(UNIT + "/"):
            if missing := _lacking(items, "unit"):
                why = "tests/conftest.py's pytest_collection_modifyitems (tiers.mark_unit_tier) adds it"
                out.append(("unit-marker", f"{path}: `unit` missing on {missing}; {why}"))
            for item in items:
                for fixture in sorted(set(item["fixtures"]) & set(SERVICE_FIXTURES)):
                    why = SERVICE_FIXTURES[fixture]
                    move = "move it to tests/integration/"
                    out.append(
                        ("unit-no-services", f"{item['nodeid']} uses fixture {fixture!r} ({why}): {move}")
                    )
                for marker in sorted({"integration", "production"} & set(item["markers"])):
                    fix = "move it out of tests/unit, or drop the marker if it needs no service"
                    out.append(("unit-not-integration", f"{item['nodeid']} is marked `{marker}`: {fix}"))
        else:
            if missing := _lacking(items, "integration"):
                fix = (
                    "add `pytestmark = pytest.mark.integration`, or move what needs no service to tests/unit"
                )
                out.append(("integration-marker", f"{path}: `integration` missing on {missing}; {fix}"))
            if path.startswith(PRODUCTION + "/") and (missing := _lacking(items, "production")):
                out.append(("production-marker", f"{path}: `production` missing on {missing}"))
    for path, measured in sorted(slow.items()):
        if path not in modules:
            out.append(
                ("slow-marker", f"{path} is in the slow table ({measured}) but none of its tests collected")
            )
        elif missing := _lacking(modules[path], "slow"):
            out.append(("slow-marker", f"{path} takes {measured}: `slow` missing on {missing}"))
    unit_dir = root / UNIT
    for path in sorted(unit_dir.rglob("*.py")) if unit_dir.is_dir() else ():
        for use in server_uses(path):
            fix = "tests under tests/unit start no servers; move the test to tests/integration/"
            out.append(("unit-no-services", f"{path.relative_to(root).as_posix()} {use}: {fix}"))
    return out
