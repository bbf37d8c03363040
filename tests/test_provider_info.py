"""The provider registration: every module and class it lists imports, and Airflow's CLI sees it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops.get_provider_info import get_provider_info
from airflow_mlops.settings import OPTIONS, MlopsSettings

pytestmark = pytest.mark.integration
INFO = get_provider_info()


def _modules() -> list[str]:
    out = []
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in INFO.get(kind, []):
            out.extend(entry["python-modules"])
    return out


def _classes() -> list[str]:
    out = [c["hook-class-name"] for c in INFO["connection-types"]]
    out += list(INFO.get("extra-links", []))
    out += ["airflow_mlops.plugins.MlopsPlugin"]
    return out


@pytest.mark.parametrize("module", _modules())
def test_listed_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("path", _classes())
def test_listed_class_imports(path):
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name)


def test_provider_info_matches_airflow_schema():
    import json

    import jsonschema
    from airflow import settings as airflow_settings  # noqa: F401  (configures airflow)

    schema_path = Path(importlib.import_module("airflow").__file__).parent / "provider_info.schema.json"
    jsonschema.validate(INFO, json.loads(schema_path.read_text()))


def test_config_section_covers_every_setting():
    options = INFO["config"]["mlops"]["options"]
    assert set(options) == set(OPTIONS) == set(MlopsSettings.__dataclass_fields__)


def test_settings_fallbacks_and_env_override(monkeypatch):
    from airflow_mlops.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("AIRFLOW__MLOPS__CHAMPION_ALIAS", "prod")
    monkeypatch.setenv("AIRFLOW__MLOPS__INFERENCE_BATCH_SIZE", "1024")
    try:
        s = get_settings()
        assert s.champion_alias == "prod"
        assert s.inference_batch_size == 1024
        assert s.challenger_alias == "challenger"
        assert s.report_base_uri == s.storage_base_uri.rstrip("/") + "/reports"
    finally:
        get_settings.cache_clear()


def _airflow(*args: str) -> str:
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run(
        [airflow_bin, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_airflow_cli_lists_provider_hook_and_plugin(airflow_db):
    assert "airflow-mlops" in _airflow("providers", "list", "-o", "plain")
    hooks = _airflow("providers", "hooks", "-o", "plain")
    assert "mlflow" in hooks and "airflow_mlops.hooks.mlflow.MlflowHook" in hooks
    assert "airflow_mlops" in _airflow("plugins", "-o", "plain")


def test_every_lazy_public_name_resolves():
    import airflow_mlops

    for name in airflow_mlops.__all__:
        assert getattr(airflow_mlops, name) is not None, name


def test_every_operator_module_is_registered():
    listed = set(_modules())
    package = Path(importlib.import_module("airflow_mlops").__file__).parent
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    modules = [
        importlib.import_module(f"airflow_mlops.{kind}.{path.stem}")
        for kind in ("operators", "sensors", "triggers")
        for path in (package / kind).glob("*.py")
    ]
    classes = [
        obj
        for module in modules
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseOperator | BaseTrigger)
        and obj.__module__ == module.__name__
        and not obj.__name__.startswith("_")
    ]
    bases = {base for cls in classes for base in cls.__mro__[1:]}
    for module in modules:  # a module of shared plumbing (a base class others extend, helpers) may stay out
        if any(cls.__module__ == module.__name__ and cls not in bases for cls in classes):
            assert module.__name__ in listed, f"{module.__name__} missing from provider info"
