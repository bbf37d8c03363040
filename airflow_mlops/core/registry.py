"""MLflow model registry on aliases: name checks and lookups, with one "not found" rule and one message.

Framework-free: every function takes an ``MlflowClient`` and plain values and returns a small dataclass. Nothing
here imports Airflow; ``mlflow`` itself is imported lazily (only for its exception type).

The registry's jobs live in four modules, each importing only the ones before it:

* this one: name/alias/version checks and lookups (:func:`get_registered_model`, :func:`get_model_version`,
  :func:`require_alias_version`...): the one "not found" rule, with one message format;
* :mod:`airflow_mlops.core.registration`: idempotent registration (the ``mlops.registry.key`` tag; a retry
  returns the same version, concurrent attempts settle on the lowest);
* :mod:`airflow_mlops.core.aliases`: alias history (one registered-model tag per move, ``mlops.history.<seq>``),
  the move ledger that makes concurrent moves safe (:func:`~airflow_mlops.core.aliases.settle`), ``set_alias``
  and ``rollback_alias``;
* :mod:`airflow_mlops.core.gate`: gate rules and the champion/challenger gate
  (:func:`~airflow_mlops.core.gate.promote_if_better`), whose decision is recorded in ``mlops.gate.*`` tags.

The names of the other three stay importable from here (``from airflow_mlops.core.registry import
promote_if_better``), resolved on first use.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound, ModelRegistryError, first_line

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

_ALIAS_RE = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")
MAX_REASON = 500
_MAX_LISTED = 20

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- small helpers
def error_code(err: BaseException) -> str:
    return str(getattr(err, "error_code", "") or "")


def is_not_found(err: BaseException) -> bool:
    return error_code(err) == "RESOURCE_DOES_NOT_EXIST"


def mlflow_exception() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def listed(values: Iterable[str]) -> str:
    items = sorted(values)
    shown = ", ".join(repr(v) for v in items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]" if items else "none"


def check_version(version: Any, *, what: str = "version") -> str:
    """A model version number as MLflow's string form; raises MlopsConfigError for anything else."""
    text = str(version).strip() if version is not None and not isinstance(version, bool) else ""
    if text.startswith(("v", "V")):
        text = text[1:]
    if not text.isdigit() or int(text) < 1:
        raise MlopsConfigError(f"{what} must be a positive model version number such as 3, got {version!r}.")
    return str(int(text))


def check_alias(alias: Any, *, what: str = "alias") -> str:
    """An MLflow alias name (letters, digits, ``_`` and ``-``; not ``latest`` or ``v<N>``)."""
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise MlopsConfigError(
            f"{what} {alias!r} is not a valid MLflow alias: use letters, digits, '_' and '-' (e.g. 'champion')."
        )
    if alias.lower() == "latest" or _VERSION_ALIAS_RE.match(alias):
        raise MlopsConfigError(f"{what} {alias!r} is reserved by MLflow; choose another name.")
    return alias


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MlopsConfigError(f"Registered model name must be a non-empty string, got {name!r}.")
    return name.strip()


# ---------------------------------------------------------------- lookups
# The one "not found" rule of the provider: every lookup of a registered model, alias or version goes through
# these functions (the scoring refs, the gate, the sensors and the drift check), so one bad name gets one message.
def get_registered_model(client: Any, name: str) -> Any:
    """The registered model, or ModelNotFound naming similar existing models."""
    try:
        return client.get_registered_model(name)
    except mlflow_exception() as err:
        if not is_not_found(err):
            raise ModelRegistryError(f"Could not read registered model {name!r}: {first_line(err)}") from None
    raise ModelNotFound(
        f"registered model {name!r} does not exist in the MLflow registry{_known_models_hint(client, name)}; "
        "register a model version under that name first (MlflowRegisterModelOperator), or fix the name."
    )


def _known_models_hint(client: Any, name: str) -> str:
    """`` (did you mean 'churn'?)`` or a few registered model names; empty when the registry cannot say."""
    import difflib

    try:
        names = sorted(m.name for m in client.search_registered_models(max_results=1000))
    except Exception:  # noqa: BLE001 - the hint is a courtesy: never hide the not-found error behind another one
        return ""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if not names:
        return " (the registry has no registered models)"
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f" (registered models: {names[:10]}{more})"


def aliases_of(model: Any) -> dict[str, str]:
    return {str(alias): str(version) for alias, version in (getattr(model, "aliases", None) or {}).items()}


def _aliases_text(aliases: Mapping[str, str]) -> str:
    return ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"


def get_alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when the alias is not set; ModelNotFound for an unknown model."""
    return aliases_of(get_registered_model(client, name)).get(alias)


def alias_moved(client: Any, name: str, alias: str, not_version: str | None = None) -> str | None:
    """
    The version ``alias`` points to once it exists and differs from ``not_version``, else None (keep waiting).

    What the alias sensor and trigger poll; an unknown registered model raises ModelNotFound.
    """
    current = get_alias_version(client, name, alias)
    if current is None or (not_version is not None and current == not_version):
        return None
    return current


def require_alias_version(client: Any, name: str, alias: str) -> str:
    """Like :func:`get_alias_version` but ModelNotFound (listing existing aliases) when the alias is not set."""
    aliases = aliases_of(get_registered_model(client, name))
    if alias not in aliases:
        raise ModelNotFound(
            f"registered model {name!r} has no alias {alias!r} (aliases: {_aliases_text(aliases)}); promote a "
            f"version to {alias!r} first (MlflowSetModelAliasOperator) or use models:/{name}/<version>."
        )
    return aliases[alias]


def list_versions(client: Any, name: str) -> list[Any]:
    """Every version of registered model ``name`` (any order); empty when it has none."""
    try:
        return list(client.search_model_versions(f"name = {_quote(name)}"))
    except mlflow_exception() as err:
        raise ModelRegistryError(
            f"Could not list the versions of model {name!r}: {first_line(err)}"
        ) from None


def get_latest_version(client: Any, name: str) -> Any:
    """The highest version of ``name``; ModelNotFound when the model is unknown or has no versions."""
    get_registered_model(client, name)  # unknown model -> its own message
    versions = list_versions(client, name)
    if not versions:
        raise ModelNotFound(f"registered model {name!r} has no versions; register one first.")
    return max(versions, key=lambda v: int(v.version))


def get_model_version(client: Any, name: str, version: str) -> Any:
    """The model version, or ModelNotFound listing the versions and aliases that exist."""
    try:
        return client.get_model_version(name, version)
    except mlflow_exception() as err:
        if not is_not_found(err):
            raise ModelRegistryError(
                f"Could not read version {version} of model {name!r}: {first_line(err)}"
            ) from None
    aliases = aliases_of(get_registered_model(client, name))  # unknown model -> its own message
    try:
        numbers = sorted(int(mv.version) for mv in list_versions(client, name))
        known = f"versions: {_listed_numbers(numbers)}; "
    except ModelRegistryError:
        known = ""
    raise ModelNotFound(
        f"registered model {name!r} has no version {version} ({known}aliases: {_aliases_text(aliases)}); "
        "use one of those versions or an alias."
    )


def _listed_numbers(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[-_MAX_LISTED:])
    return f"[{'..., ' if len(numbers) > _MAX_LISTED else ''}{shown}]" if numbers else "none"


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise MlopsConfigError(
        f"Name {value!r} contains both quote characters; MLflow filters cannot express it."
    )


# ---------------------------------------------------------------- runs
def get_run(client: Any, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except mlflow_exception() as err:
        if is_not_found(err):
            raise ModelNotFound(
                f"MLflow run {run_id!r} does not exist. Pass the run_id of a finished training run "
                "(the training task's XCom 'run_id')."
            ) from None
        raise ModelRegistryError(f"Could not read MLflow run {run_id!r}: {err}") from err


# ---------------------------------------------------------------- names moved to registration, aliases, gate
_MOVED = {
    "airflow_mlops.core.registration": (
        "ModelSource",
        "RegisteredVersion",
        "lineage_tags",
        "register_model_version",
        "registration_key",
        "resolve_model_source",
        "settle_duplicates",
        "wait_until_ready",
    ),
    "airflow_mlops.core.aliases": (
        "AliasAction",
        "AliasEvent",
        "AliasMove",
        "LEDGER_EXPERIMENT_PREFIX",
        "alias_history",
        "previous_version",
        "rollback_alias",
        "set_alias",
        "settle",
    ),
    "airflow_mlops.core.gate": (
        "DEFAULT_GATE",
        "GateDecision",
        "GateResult",
        "GateRule",
        "default_gate_rules",
        "evaluate_rules",
        "missing_metrics",
        "parse_rules",
        "promote_if_better",
    ),
}


def __getattr__(name: str) -> Any:
    """The alias and gate names, importable from here as before the split (loaded on first use: no cycle)."""
    import importlib

    for module, names in _MOVED.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
