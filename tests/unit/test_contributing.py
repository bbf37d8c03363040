"""The checklists of docs/contributing.md, enforced: what a new operator, link or model YAML must also touch.

Each test names the checklist step it guards and says in its failure message what to add where. They only
import the provider's modules and read files (no server, no metadata DB): a few seconds in all.
The hardening test files are read with ``ast``, never imported, so these checks do not depend on their
fixtures.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# The repository root, wherever under tests/ this file sits.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DOCS = ROOT / "docs"
DAGS = ROOT / "dags"
BAD_INPUTS = ROOT / "tests" / "hardening" / "test_bad_inputs.py"
RETRY_SAFETY = ROOT / "tests" / "hardening" / "test_retry_safety.py"
HARDENING_DOC = DOCS / "hardening.md"
CHECKLIST = "docs/contributing.md"

# The packages of Airflow adapters (ARCHITECTURE.md) whose public classes are the provider's public API.
ADAPTER_PACKAGES = ("operators", "sensors", "triggers", "hooks")
# Where extra links may be defined (links/, and next to the operator that is their only user).
LINK_PACKAGES = ("links", "operators", "sensors")

# The bad-input catalog names its rows "<stage>: <bad input>"; the stage of each adapter module.
STAGE_OF_MODULE = {
    "airflow_mlops.operators.validation": "validation",
    "airflow_mlops.operators.training": "training",
    "airflow_mlops.operators.kubernetes": "training",
    "airflow_mlops.operators.mlflow": "registry",
    "airflow_mlops.operators.approval": "registry",
    "airflow_mlops.operators.inference": "inference",
    "airflow_mlops.operators.spark": "inference",
    "airflow_mlops.operators.drift": "drift",
    "airflow_mlops.sensors.mlflow": "registry",
    "airflow_mlops.sensors.drift": "drift",
}

# ---------------------------------------------------------------------------------------------- allow-lists
# Operators that no row of the bad-input catalog (tests/hardening/test_bad_inputs.py CASES) goes through by
# class today. Their stage's bad data is covered through the core functions they call (rows "training: ...",
# "inference: ...", "registry: ..."), but the operator's own argument checks have no row. To do: add a row
# per operator (a parse-time argument check, as the GXValidateDatasetOperator and MlflowPromoteModelOperator
# rows do), then delete its entry here; the staleness test below fails once an entry is no longer needed.
NO_BAD_INPUT_ROW_YET: dict[str, str] = {
    "LocalTrainModelOperator": "training rows call TrainingSpec / run_training directly",
    "KubernetesTrainModelOperator": "training rows call TrainingSpec / run_training directly",
    "MlflowRegisterModelOperator": "registry rows call core.registry.register_model_version",
    "MlflowRollbackModelOperator": "registry rows call core.aliases.rollback_alias",
    "MlflowSetModelAliasOperator": "registry rows call core.aliases.set_alias",
    "BatchInferenceOperator": "inference rows call core.scoring.run_batch_inference",
    "BatchInferencePlanOperator": "no row for shard planning",
    "BatchInferenceCombineOperator": "no row for combining shards",
    "MlflowModelAliasSensor": "sensor: no row (unknown model/alias is covered for the gate and scoring)",
    "DriftSensor": "sensor: no row",
}
# Operators the retry-safety harness (tests/hardening/test_retry_safety.py, flaky(<Operator>) in a case of
# CASES) does not run. Both are sensors: they only read MLflow, so a retry has no external state to
# duplicate, but the harness does not prove it. To do: a case each, or keep them here on purpose.
NO_RETRY_CASE_YET: dict[str, str] = {
    "MlflowModelAliasSensor": "sensor, read-only",
    "DriftSensor": "sensor, read-only",
}
# Operators without a row of their own in docs/hardening.md's retry-safety table.
NOT_IN_RETRY_TABLE_YET: dict[str, str] = {
    "BatchInferencePlanOperator": "covered by the row '`BatchInferenceOperator` (+ plan / mapped shards / combine)'",
    "BatchInferenceCombineOperator": "covered by the row '`BatchInferenceOperator` (+ plan / mapped shards / combine)'",
    "MlflowModelAliasSensor": "sensor, read-only",
    "DriftSensor": "sensor, read-only",
}


# -------------------------------------------------------------------------------------------- discovery
def _walk(package: str) -> Iterator[ModuleType]:
    pkg = importlib.import_module(f"airflow_mlops.{package}")
    yield pkg
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        yield importlib.import_module(info.name)


def _defined_in(module: ModuleType) -> Iterator[type]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ == module.__name__:
            yield obj


def _is_shared_base(cls: type) -> bool:
    """Private classes, bases named ``Base*`` / ``Mlflow*Base*``, and everything in a ``base`` module."""
    name = cls.__name__
    module = cls.__module__.split(".")
    return (
        name.startswith(("_", "Base"))
        or re.fullmatch(r"Mlflow\w*Base\w*", name) is not None
        or module[-1] == "base"
        or any(part.startswith("_") for part in module)
        or inspect.isabstract(cls)
    )


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@cache
def _kinds() -> tuple[type, ...]:
    from airflow.sdk import BaseHook, BaseOperator
    from airflow.triggers.base import BaseTrigger

    return (BaseOperator, BaseTrigger, BaseHook)


@cache
def public_adapters() -> tuple[type, ...]:
    """Every public operator, sensor, trigger and hook class the provider defines."""
    found: dict[str, type] = {}
    for package in ADAPTER_PACKAGES:
        for module in _walk(package):
            for cls in _defined_in(module):
                if issubclass(cls, _kinds()) and not _is_shared_base(cls):
                    found[_path(cls)] = cls
    assert found, "no operator, sensor, trigger or hook class found: discovery is broken"
    return tuple(found[k] for k in sorted(found))


@cache
def all_operator_classes() -> tuple[type, ...]:
    """Every BaseOperator subclass the provider defines, private bases included (they carry links)."""
    from airflow.sdk import BaseOperator

    found = {
        _path(cls): cls
        for package in ("operators", "sensors")
        for module in _walk(package)
        for cls in _defined_in(module)
        if issubclass(cls, BaseOperator)
    }
    return tuple(found[k] for k in sorted(found))


@cache
def defined_links() -> tuple[type, ...]:
    from airflow.sdk import BaseOperatorLink

    found = {
        _path(cls): cls
        for package in LINK_PACKAGES
        for module in _walk(package)
        for cls in _defined_in(module)
        if issubclass(cls, BaseOperatorLink) and not _is_shared_base(cls)
    }
    assert found, "no extra-link class found: discovery is broken"
    return tuple(found[k] for k in sorted(found))


def lazy() -> dict[str, str]:
    import airflow_mlops

    return dict(airflow_mlops._LAZY)


@cache
def exported_operators() -> tuple[str, ...]:
    """The names in ``airflow_mlops._LAZY`` that are operators or sensors."""
    from airflow.sdk import BaseOperator

    import airflow_mlops

    names = []
    for name in lazy():
        try:
            obj = getattr(airflow_mlops, name)
        except (ImportError, AttributeError):
            continue  # test_every_lazy_name_resolves_to_its_module reports it
        if inspect.isclass(obj) and issubclass(obj, BaseOperator):
            names.append(name)
    assert names, "no operator in airflow_mlops._LAZY"
    return tuple(sorted(names))


def _fail_if(problems: list[str], step: str) -> None:
    assert not problems, f"{len(problems)} problem(s); see {CHECKLIST}, {step}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------- (i) public names: airflow_mlops._LAZY
def test_every_public_adapter_class_has_a_lazy_public_name() -> None:
    """Checklist "Adding an operator", step 2: the class is importable from ``airflow_mlops``."""
    import airflow_mlops

    table = lazy()
    problems = []
    for cls in public_adapters():
        name, module = cls.__name__, cls.__module__
        if table.get(name) != module:
            where = "is not in airflow_mlops._LAZY" if name not in table else f"is mapped to {table[name]!r}"
            problems.append(
                f'{_path(cls)} {where}: add "{name}": "{module}" to _LAZY in airflow_mlops/__init__.py'
            )
        elif getattr(airflow_mlops, name) is not cls:
            problems.append(f"airflow_mlops.{name} is not {_path(cls)}")
    _fail_if(problems, "adding an operator, step 2")


def test_every_lazy_name_resolves_to_its_module() -> None:
    """A stale ``_LAZY`` entry would only break on first use, in a user's DAG file: catch it here."""
    import airflow_mlops

    problems = []
    for name, module in lazy().items():
        try:
            defined = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            problems.append(f'_LAZY["{name}"] = "{module}" does not import: {err}')
            continue
        if getattr(airflow_mlops, name) is not defined:
            problems.append(f"airflow_mlops.{name} is not {module}.{name}")
    missing_all = sorted(set(lazy()) - set(airflow_mlops.__all__))
    if missing_all:
        problems.append(f"airflow_mlops.__all__ lacks {missing_all}")
    _fail_if(problems, "adding an operator, step 2")


# ------------------------------------------------------------------ (ii) extra links in provider info
def _provider_links() -> list[str]:
    from airflow_mlops.get_provider_info import get_provider_info

    return list(get_provider_info().get("extra-links", []))


def test_every_registered_extra_link_imports() -> None:
    """Checklist "Adding an operator", step 3: every provider-info link path is a link class."""
    from airflow.sdk import BaseOperatorLink

    problems = []
    listed = _provider_links()
    if len(listed) != len(set(listed)):
        problems.append(
            f"extra-links lists a class twice: {sorted(p for p in listed if listed.count(p) > 1)}"
        )
    for path in listed:
        module, _, name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            problems.append(f"extra-links entry {path} does not import: {err}")
            continue
        if not (inspect.isclass(cls) and issubclass(cls, BaseOperatorLink)):
            problems.append(f"extra-links entry {path} is not a BaseOperatorLink subclass")
        elif _path(cls) != path:
            problems.append(
                f"extra-links entry {path} is a re-export: list {_path(cls)}, where it is defined"
            )
    _fail_if(problems, "adding an operator, step 3")


def test_every_defined_extra_link_is_registered() -> None:
    """Airflow's UI finds a link only through the provider's ``extra-links`` list."""
    listed = set(_provider_links())
    problems = [
        f"{_path(cls)} is missing from get_provider_info()['extra-links'] in airflow_mlops/get_provider_info.py"
        for cls in defined_links()
        if _path(cls) not in listed
    ]
    _fail_if(problems, "adding an operator, step 3")


def test_every_operator_uses_registered_links_only() -> None:
    listed = set(_provider_links())
    problems = []
    for op in all_operator_classes():
        links = list(getattr(op, "operator_extra_links", ()) or ())
        names = [link.name for link in links]
        if len(names) != len(set(names)):
            problems.append(f"{_path(op)} has two extra links with one name: {names}")
        for link in links:
            link_cls = link if inspect.isclass(link) else type(link)
            # Links inherited from another provider's operator (KubernetesPodOperator) are that provider's.
            if link_cls.__module__.startswith("airflow_mlops.") and _path(link_cls) not in listed:
                problems.append(
                    f"{_path(op)}.operator_extra_links uses {_path(link_cls)}, which get_provider_info() "
                    "does not list under extra-links"
                )
    _fail_if(problems, "adding an operator, step 3")


# ------------------------------------------------- (iii) hardening: bad-input catalog and retry safety
def _tree(path: Path) -> ast.Module:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return ast.parse(path.read_text(), filename=str(path))


def _assigned(tree: ast.Module, target: str) -> ast.expr:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == target for t in node.targets
        ):
            return node.value
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == target:
            assert node.value is not None
            return node.value
    raise AssertionError(f"no module-level {target} = ... found")


def _identifiers(node: ast.AST) -> set[str]:
    """Names, attribute names and string constants used under ``node``."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.alias):
            out.add(sub.asname or sub.name.rpartition(".")[2])
    return out


def _reach(tree: ast.Module, roots: set[str]) -> set[str]:
    """``roots`` plus everything the module-level functions they name use, transitively."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    seen, todo = set(roots), list(roots & set(functions))
    done: set[str] = set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        used = _identifiers(functions[name])
        seen |= used
        todo.extend(used & set(functions))
    return seen


@cache
def bad_input_rows() -> dict[str, set[str]]:
    """Catalog row name -> the identifiers its trigger uses, through the file's helper functions."""
    tree = _tree(BAD_INPUTS)
    rows: dict[str, set[str]] = {}
    for call in ast.walk(_assigned(tree, "CASES")):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Case":
            first = call.args[0] if call.args else None
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.dump(call)[:200]
            rows[first.value] = _reach(tree, _identifiers(call))
    assert rows, "tests/hardening/test_bad_inputs.py CASES holds no Case(...) row"
    return rows


@cache
def retry_wrapped() -> set[str]:
    """Operator classes that a case of test_retry_safety.py CASES runs through ``flaky(<Operator>)``."""
    tree = _tree(RETRY_SAFETY)
    cases = _assigned(tree, "CASES")
    assert isinstance(cases, ast.Dict), "test_retry_safety.py CASES is no longer a dict of case functions"
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    roots = {v.id for v in cases.values if isinstance(v, ast.Name)}
    assert roots, "test_retry_safety.py CASES names no case function"
    wrapped: set[str] = set()
    for name in _reach(tree, roots) & set(functions):
        for call in ast.walk(functions[name]):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id == "flaky"
                and call.args
                and isinstance(call.args[0], ast.Name)
            ):
                wrapped.add(call.args[0].id)
    return wrapped


def retry_table_operators() -> set[str]:
    """The names in the first column of the first table under '## Retry safety' in docs/hardening.md."""
    lines = HARDENING_DOC.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().lower() == "## retry safety")
    except StopIteration:
        raise AssertionError("docs/hardening.md has no '## Retry safety' section") from None
    names: set[str] = set()
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            names.update(re.findall(r"`(\w+)`", line.split("|")[1]))
        elif in_table:
            break
    assert names, "the '## Retry safety' section of docs/hardening.md has no table of operators"
    return names


def _module_of(name: str) -> str:
    import airflow_mlops

    return str(getattr(airflow_mlops, name).__module__)


def test_every_operator_stage_has_bad_input_rows() -> None:
    """Checklist "Adding an operator", step 4: the catalog has rows "<stage>: ..." for the operator's stage."""
    stages = {name.partition(":")[0].strip() for name in bad_input_rows()}
    problems = []
    for name in exported_operators():
        module = _module_of(name)
        stage = STAGE_OF_MODULE.get(module)
        if stage is None:
            problems.append(
                f"{name} lives in {module}, which has no stage in STAGE_OF_MODULE of tests/test_contributing.py: "
                "add it, and rows '<stage>: <bad input>' to CASES in tests/hardening/test_bad_inputs.py"
            )
        elif stage not in stages:
            problems.append(f"no row '{stage}: ...' in tests/hardening/test_bad_inputs.py CASES (for {name})")
    _fail_if(problems, "adding an operator, step 4")


def test_every_operator_has_a_bad_input_row_of_its_own() -> None:
    """Step 4 again: at least one catalog row goes through the operator class (directly or via a helper)."""
    rows = bad_input_rows()
    problems = []
    for name in exported_operators():
        if name in NO_BAD_INPUT_ROW_YET:
            continue
        if not any(name in used for used in rows.values()):
            problems.append(
                f"no row of CASES in tests/hardening/test_bad_inputs.py goes through {name}: add "
                f'Case("<stage>: <bad argument> (operator, parse time)", lambda w: {name}(...), <error>, <regex>)'
            )
    _fail_if(problems, "adding an operator, step 4")


def test_every_operator_has_a_retry_safety_case() -> None:
    """Checklist "Adding an operator", step 5: a case of the retry harness runs ``flaky(<Operator>)``."""
    wrapped = retry_wrapped()
    problems = [
        f"no case of CASES in tests/hardening/test_retry_safety.py runs flaky({name})(...): add a case_<x> "
        f'function and "{name}": case_<x> to CASES'
        for name in exported_operators()
        if name not in wrapped and name not in NO_RETRY_CASE_YET
    ]
    _fail_if(problems, "adding an operator, step 5")


def test_every_operator_has_a_row_in_the_docs_retry_table() -> None:
    """Step 5 again: docs/hardening.md says what a retry of the operator finds and reuses."""
    table = retry_table_operators()
    problems = [
        f"docs/hardening.md '## Retry safety' table has no row for `{name}`: add '| `{name}` | <what a retry "
        "finds and reuses> |'"
        for name in exported_operators()
        if name not in table and name not in NOT_IN_RETRY_TABLE_YET
    ]
    _fail_if(problems, "adding an operator, step 5")


@pytest.mark.parametrize(
    ("allow_list", "covered"),
    [
        pytest.param(
            NO_BAD_INPUT_ROW_YET,
            lambda n: any(n in used for used in bad_input_rows().values()),
            id="NO_BAD_INPUT_ROW_YET",
        ),
        pytest.param(NO_RETRY_CASE_YET, lambda n: n in retry_wrapped(), id="NO_RETRY_CASE_YET"),
        pytest.param(
            NOT_IN_RETRY_TABLE_YET, lambda n: n in retry_table_operators(), id="NOT_IN_RETRY_TABLE_YET"
        ),
    ],
)
def test_allow_lists_hold_only_real_gaps(allow_list: dict[str, str], covered: Any) -> None:
    """An allow-list entry whose operator is gone or now covered must be deleted, so the lists only shrink."""
    exported = set(exported_operators())
    problems = [
        f"{name}: not an exported operator any more; delete it" for name in allow_list if name not in exported
    ]
    problems += [
        f"{name}: now covered; delete it from the allow-list" for name in allow_list if covered(name)
    ]
    _fail_if(problems, "the allow-lists at the top of tests/test_contributing.py")


# ------------------------------------------------------------------------------------- (iv) doc pages
def test_every_public_adapter_class_is_documented() -> None:
    """Checklist "Adding an operator", step 6: a docs page (not only the hardening catalog) names the class."""
    pages = {p.name: p.read_text() for p in sorted(DOCS.glob("*.md")) if p != HARDENING_DOC}
    assert pages, "docs/ holds no pages"
    problems = [
        f"no page in docs/ (besides hardening.md) mentions {cls.__name__}: document it in the page of its stage"
        for cls in public_adapters()
        if not any(re.search(rf"\b{re.escape(cls.__name__)}\b", text) for text in pages.values())
    ]
    _fail_if(problems, "adding an operator, step 6")


# ------------------------------------------------------------------------------------ (v) model YAMLs
def _yamls() -> list[Path]:
    return sorted(DAGS.glob("*.yaml"))


def test_dags_folder_has_model_yamls() -> None:
    assert _yamls(), "dags/ holds no lifecycle YAML"


@pytest.mark.parametrize("yaml_file", [p.name for p in _yamls()])
def test_every_model_yaml_has_its_loader_and_loads(yaml_file: str) -> None:
    """Checklist "Adding a model YAML", steps 1-2: a two-line loader of the same stem, and a valid config."""
    from airflow_mlops.templates.config import LifecycleConfig

    path = DAGS / yaml_file
    loader = path.with_suffix(".py")
    assert loader.is_file(), (
        f"dags/{yaml_file} has no loader: copy dags/churn_lifecycle.py to dags/{loader.name} "
        "(Airflow only parses .py files, so the YAML is otherwise ignored)"
    )
    assert "dags_from_yaml" in loader.read_text(), f"dags/{loader.name} does not call dags_from_yaml"
    config = LifecycleConfig.from_yaml(path)
    assert config.source == str(path)
