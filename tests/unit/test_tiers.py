"""The test tree is honest about its tiers (rules and checks: tests/helpers/tiers.py).

tests/unit starts no server and uses no metadata DB, and every test there carries ``unit``; every test outside
it carries ``integration`` (``production`` under tests/production); the modules in :data:`SLOW` carry ``slow``.
The tree is collected once, in a subprocess; the last test builds a small tree with one violation of each kind
and checks that the guard names exactly those.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import tiers

ROOT = Path(__file__).resolve().parents[2]

# Modules whose tests take more than ~30 s together: wall time of `python -m pytest FILE` alone on a 2-core machine,
# session fixtures included (an MLflow server starts in ~10 s, `airflow db migrate` in ~15 s), 2026-12-04. Where a
# file was run twice the lower time is given: a busy machine doubled some. Under 30 s (not slow): test_compose
# 25 s, test_dag_integrity 26 s, test_provider_info 16 s, test_validation_dag 28 s, test_promotion_pool 10 s,
# test_storage_connections 12 s, test_mlflow_hook_connections 14 s.
SLOW: dict[str, str] = {
    "tests/bench/test_run_all.py": "60 s (the quick inference bench)",
    "tests/hardening/test_faults.py": "139 s",
    "tests/hardening/test_mlflow_outage.py": "77 s",
    "tests/hardening/test_retry_semantics.py": "57 s",
    "tests/hardening/test_secrets.py": "70 s",
    "tests/integration/test_api_triggers.py": "306 s",
    "tests/integration/test_demo.py": "99 s",
    "tests/integration/test_drift.py": "66 s",
    "tests/integration/test_drift_scheduler.py": "79 s",
    "tests/integration/test_harness_dag.py": "35 s",
    "tests/integration/test_inference.py": "106 s",
    "tests/integration/test_lifecycle.py": "101 s",
    "tests/hardening/test_bad_inputs.py": "54 s",
    "tests/hardening/test_retry_safety.py": "118 s",
    "tests/integration/test_registry.py": "75 s",
    "tests/integration/test_registry_concurrency.py": "166 s",
    "tests/integration/test_mlflow_alias_trigger.py": "33 s",
    "tests/integration/test_mlflow_credentials.py": "60 s",
    "tests/integration/test_mlflow_hook.py": "56 s",
    "tests/integration/test_models_api.py": "45 s",
    "tests/integration/test_models_view.py": "159 s (the demo run it shares with test_lifecycle.py: ~100 s)",
    "tests/integration/test_report_viewer.py": "33 s",
    "tests/integration/test_templates.py": "81 s",
    "tests/integration/test_training_entrypoint.py": "78 s",
    "tests/integration/test_training_kubernetes.py": "211 s",
    "tests/integration/test_training_local.py": "118 s",
    # Not measured here: it skips without redis-server. It starts PostgreSQL, Redis, moto S3, MLflow, the Airflow
    # services and two Celery workers, then runs the lifecycle on them.
    "tests/production/test_production_lifecycle.py": "minutes (the whole production topology)",
}


@pytest.fixture(scope="module")
def tree() -> dict[str, Any]:
    return tiers.collect(ROOT)


@pytest.mark.parametrize("rule", list(tiers.RULES))
def test_the_tree_keeps_the_rule(tree: dict[str, Any], rule: str) -> None:
    broken = [message for name, message in tiers.problems(tree, ROOT, SLOW) if name == rule]
    if broken:
        pytest.fail(f"{tiers.RULES[rule]}:\n" + "\n".join(broken), pytrace=False)


def test_dash_m_unit_selects_exactly_tests_unit(tree: dict[str, Any]) -> None:
    marked = {item["path"] for item in tree["items"] if "unit" in item["markers"]}
    under = {item["path"] for item in tree["items"] if item["path"].startswith(tiers.UNIT + "/")}
    assert marked == under and "tests/unit/test_tiers.py" in marked


# -------------------------------------------------------------------------------- the guard catches violations
FAKE_CONFTEST = """
from pathlib import Path

import pytest

from tests.helpers.tiers import mark_unit_tier


@pytest.fixture(scope="session")
def mlflow_server():
    raise AssertionError("never started: the guard only collects")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    mark_unit_tier(items, Path(__file__).parent / "unit")
"""

# path -> source; the ones marked "clean" must raise nothing.
FAKE_TREE = {
    "unit/test_clean.py": "def test_pure():\n    assert 1 + 1 == 2\n",
    "unit/test_server_fixture.py": "def test_x(mlflow_server):\n    pass\n",
    "unit/test_server_through_a_fixture.py": """
        import pytest

        @pytest.fixture
        def client(mlflow_server):
            return mlflow_server

        def test_x(client):
            pass
    """,
    "unit/test_server_helper.py": """
        from tests.helpers.recording_http import RecordingProxy

        def test_x():
            assert RecordingProxy
    """,
    "unit/test_server_command.py": """
        import sys

        def test_x():
            assert [sys.executable, "-m", "mlflow", "server"]
    """,
    "unit/test_marked_integration.py": """
        import pytest

        pytestmark = pytest.mark.integration

        def test_x():
            pass
    """,
    "integration/test_clean_integration.py": """
        import pytest

        pytestmark = pytest.mark.integration

        def test_x(mlflow_server):
            pass
    """,
    "integration/test_unmarked.py": "def test_x():\n    pass\n",
    "integration/test_half_marked.py": """
        import pytest

        @pytest.mark.integration
        def test_marked():
            pass

        def test_unmarked():
            pass
    """,
    "integration/test_slow_unmarked.py": """
        import pytest

        pytestmark = pytest.mark.integration

        def test_x():
            pass
    """,
    "integration/test_broken.py": "import a_module_that_does_not_exist_anywhere\n",
    "production/test_prod.py": """
        import pytest

        pytestmark = pytest.mark.integration

        def test_x():
            pass
    """,
}
FAKE_SLOW = {
    "tests/integration/test_slow_unmarked.py": "31 s",
    "tests/integration/test_gone.py": "40 s",
}
EXPECTED = {
    ("unit-no-services", "tests/unit/test_server_fixture.py"),
    ("unit-no-services", "tests/unit/test_server_through_a_fixture.py"),
    ("unit-no-services", "tests/unit/test_server_helper.py"),
    ("unit-no-services", "tests/unit/test_server_command.py"),
    ("unit-not-integration", "tests/unit/test_marked_integration.py"),
    ("integration-marker", "tests/integration/test_unmarked.py"),
    ("integration-marker", "tests/integration/test_half_marked.py"),
    ("production-marker", "tests/production/test_prod.py"),
    ("slow-marker", "tests/integration/test_slow_unmarked.py"),
    ("slow-marker", "tests/integration/test_gone.py"),
    ("collects", "tests/integration/test_broken.py"),
}


def test_the_guard_names_each_violation_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    unit\n    integration\n    slow\n    production\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(FAKE_CONFTEST)
    for path, source in FAKE_TREE.items():
        target = tmp_path / "tests" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source).lstrip())

    tree = tiers.collect(tmp_path)
    found = tiers.problems(tree, tmp_path, FAKE_SLOW)

    named = {(rule, re.findall(r"tests/[\w/]+\.py", message)[0]) for rule, message in found}
    assert named == EXPECTED, "\n".join(f"{rule}: {message}" for rule, message in found)
    marked = {item["path"] for item in tree["items"] if "unit" in item["markers"]}
    assert marked == {f"tests/{path}" for path in FAKE_TREE if path.startswith("unit/")}
