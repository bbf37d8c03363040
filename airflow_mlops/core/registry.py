"""MLflow model registry on aliases: idempotent registration, the champion/challenger gate, history and rollback.

Framework-free: every function takes an ``MlflowClient`` and plain values and returns a small dataclass. Nothing
here imports Airflow; ``mlflow`` itself is imported lazily (only for its exception type).

Where state lives (all in MLflow, so it survives Airflow and is visible in the MLflow UI):

* **Registration key**: each version created by :func:`register_model_version` carries the tag
  ``mlops.registry.key`` = hash(name, caller key, model source). A retry finds it and returns the same version; two
  concurrent attempts both create, both re-read by tag and the higher version deletes itself (lowest wins).
* **Gate decision**: tags ``mlops.gate.*`` on the candidate version (decision, reasons, rules, compared champion).
* **Alias history**: one registered-model tag per alias move, ``mlops.history.<seq>`` = JSON
  ``{"alias", "from", "to", "action", "at", "reason", "by"}``; :func:`alias_history` reads it back. A move takes
  its slot ``seq`` atomically first (a uniquely named ledger experiment, see :func:`settle`), so concurrent
  gates, rollbacks and manual sets of one model never fork the history or leave the alias on a stale version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from airflow_mlops.core.tags import (
    HISTORY_TAG_PREFIX,
    LINEAGE_RUN_TAGS,
    TAG_ALIAS_MOVE,
    TAG_GATE_AT,
    TAG_GATE_BY,
    TAG_GATE_CHAMPION,
    TAG_GATE_DECISION,
    TAG_GATE_REASONS,
    TAG_GATE_RULES,
    TAG_REGISTRY_KEY,
    TAG_TRAINING_RUN,
)
from airflow_mlops.exceptions import (
    GateRuleError,
    MlopsConfigError,
    ModelNotFound,
    ModelRegistryError,
    first_line,
)

_ALIAS_RE = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")
_LOGGED_MODEL_URI = re.compile(r"^models:/m-[0-9a-f]+$")
_MAX_REASON = 500
_MAX_LISTED = 20

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- small helpers
def _error_code(err: BaseException) -> str:
    return str(getattr(err, "error_code", "") or "")


def _is_not_found(err: BaseException) -> bool:
    return _error_code(err) == "RESOURCE_DOES_NOT_EXIST"


def _mlflow_exception() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _listed(values: Iterable[str]) -> str:
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
    except _mlflow_exception() as err:
        if not _is_not_found(err):
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
    except Exception:  # the hint is a courtesy: never hide the not-found error behind another one
        return ""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if not names:
        return " (the registry has no registered models)"
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f" (registered models: {names[:10]}{more})"


def _aliases_of(model: Any) -> dict[str, str]:
    return {str(alias): str(version) for alias, version in (getattr(model, "aliases", None) or {}).items()}


def _aliases_text(aliases: Mapping[str, str]) -> str:
    return ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"


def get_alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when the alias is not set; ModelNotFound for an unknown model."""
    return _aliases_of(get_registered_model(client, name)).get(alias)


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
    aliases = _aliases_of(get_registered_model(client, name))
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
    except _mlflow_exception() as err:
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
    except _mlflow_exception() as err:
        if not _is_not_found(err):
            raise ModelRegistryError(
                f"Could not read version {version} of model {name!r}: {first_line(err)}"
            ) from None
    aliases = _aliases_of(get_registered_model(client, name))  # unknown model -> its own message
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


# ---------------------------------------------------------------- registration
@dataclass(frozen=True)
class ModelSource:
    """What will be registered: the source URI MLflow stores, its run and logged model (when known)."""

    source: str
    run_id: str | None = None
    model_id: str | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    """The result of :func:`register_model_version`."""

    name: str
    version: str
    run_id: str | None
    source: str
    created: bool

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_xcom(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "created": self.created,
        }


def _get_run(client: Any, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except _mlflow_exception() as err:
        if _is_not_found(err):
            raise ModelNotFound(
                f"MLflow run {run_id!r} does not exist. Pass the run_id of a finished training run "
                "(the training task's XCom 'run_id')."
            ) from None
        raise ModelRegistryError(f"Could not read MLflow run {run_id!r}: {err}") from err


def _logged_models_of(client: Any, run: Any) -> list[Any]:
    outputs = getattr(run, "outputs", None)
    found = []
    for output in getattr(outputs, "model_outputs", None) or []:
        model_id = getattr(output, "model_id", None)
        if model_id:
            try:
                found.append((getattr(output, "step", 0) or 0, client.get_logged_model(model_id)))
            except _mlflow_exception() as err:
                if not _is_not_found(err):
                    raise
    return [model for _, model in sorted(found, key=lambda pair: pair[0])]


def _is_ready(model: Any) -> bool:
    status = str(getattr(model, "status", "READY")).rsplit(".", 1)[-1].upper()
    return status in {"READY", "LOGGEDMODELSTATUS_READY"}


def _prefer_ready(models: list[Any]) -> Any:
    """The last READY model (a failed log_model attempt before a retry leaves a FAILED one), else the last."""
    ready = [m for m in models if _is_ready(m)]
    return (ready or models)[-1]


def _check_logged_model_ready(model: Any) -> None:
    status = str(getattr(model, "status", "READY")).rsplit(".", 1)[-1].upper()
    if not _is_ready(model):
        raise ModelRegistryError(
            f"Logged model {model.model_id} (run {model.source_run_id}) has status {status}; only a READY "
            "model can be registered. Re-run training."
        )


def _source_from_run(client: Any, run_id: str, artifact_name: str | None = None) -> ModelSource:
    run = _get_run(client, run_id)
    models = _logged_models_of(client, run)
    if artifact_name is not None:
        named = [m for m in models if m.name == artifact_name]
        if named:
            pick = _prefer_ready(named)
            _check_logged_model_ready(pick)
            return ModelSource(source=f"models:/{pick.model_id}", run_id=run_id, model_id=pick.model_id)
        # Runs logged by MLflow 2 keep the model under the run's artifacts.
        try:
            files = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(run_id, artifact_name)}
        except Exception:
            files = set()
        if "MLmodel" in files:
            return ModelSource(source=f"{run.info.artifact_uri.rstrip('/')}/{artifact_name}", run_id=run_id)
        raise ModelNotFound(
            f"MLflow run {run_id!r} has no logged model named {artifact_name!r}. "
            f"Models it logged: {_listed(m.name for m in models)}."
        )
    if not models:
        raise ModelNotFound(
            f"MLflow run {run_id!r} has no logged model. Log one in the run with "
            "mlflow.<flavor>.log_model(model, name='model'), or pass model_uri."
        )
    preferred = [m for m in models if m.name == "model"] or models
    chosen = _prefer_ready(preferred)  # the last READY one
    _check_logged_model_ready(chosen)
    return ModelSource(source=f"models:/{chosen.model_id}", run_id=run_id, model_id=chosen.model_id)


def resolve_model_source(
    client: Any, *, run_id: str | None = None, model_uri: str | None = None
) -> ModelSource:
    """
    Find what to register from a run id and/or a model URI; raises before anything is created.

    ``model_uri`` may be ``models:/m-<id>`` (a logged model, what training returns), ``runs:/<run>/<name>``,
    ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (copy another version), or an artifact URI.
    With only ``run_id``, the run's logged model named ``model`` (else its only / last one) is used.
    """
    run_id = (run_id or "").strip() or None
    model_uri = (model_uri or "").strip() or None
    if not run_id and not model_uri:
        raise MlopsConfigError(
            "Nothing to register: pass run_id (the training task's XCom 'run_id') or model_uri "
            "(e.g. 'models:/m-<id>' or 'runs:/<run_id>/model')."
        )
    if not model_uri:
        assert run_id is not None
        return _source_from_run(client, run_id)
    if model_uri.startswith("runs:/"):
        rest = model_uri[len("runs:/") :].strip("/")
        uri_run, _, name = rest.partition("/")
        if not uri_run or not name:
            raise MlopsConfigError(f"model_uri {model_uri!r} must look like runs:/<run_id>/<model name>.")
        resolved = _source_from_run(client, uri_run, name)
    elif model_uri.startswith("models:/m-") and "/" not in model_uri[len("models:/") :]:
        model_id = model_uri[len("models:/") :]
        try:
            logged = client.get_logged_model(model_id)
        except _mlflow_exception() as err:
            if _is_not_found(err):
                raise ModelNotFound(
                    f"Logged model {model_uri!r} does not exist. Pass the model_uri the training run logged."
                ) from None
            raise ModelRegistryError(f"Could not read logged model {model_uri!r}: {err}") from err
        _check_logged_model_ready(logged)
        resolved = ModelSource(source=model_uri, run_id=logged.source_run_id or None, model_id=model_id)
    elif model_uri.startswith("models:/"):
        ref = model_uri[len("models:/") :]
        if "@" in ref:
            src_name, _, src_alias = ref.rpartition("@")
            src_version = require_alias_version(client, src_name, src_alias)
        else:
            src_name, _, src_version = ref.rpartition("/")
        if not src_name:
            raise MlopsConfigError(
                f"model_uri {model_uri!r} is not a model version; use models:/<name>/<version>, "
                "models:/<name>@<alias> or models:/m-<id>."
            )
        mv = get_model_version(client, src_name, check_version(src_version, what=f"version in {model_uri!r}"))
        resolved = ModelSource(
            source=mv.source, run_id=mv.run_id or None, model_id=getattr(mv, "model_id", None)
        )
    else:
        resolved = ModelSource(source=model_uri, run_id=run_id)
    if run_id and resolved.run_id and resolved.run_id != run_id:
        raise MlopsConfigError(
            f"model_uri {model_uri!r} belongs to run {resolved.run_id!r}, not to the given run_id {run_id!r}; "
            "pass only one of them."
        )
    if run_id and not resolved.run_id:
        _get_run(client, run_id)
        resolved = ModelSource(source=resolved.source, run_id=run_id, model_id=resolved.model_id)
    if not resolved.model_id and _LOGGED_MODEL_URI.match(resolved.source):
        # the server requires model_id with a models:/m-<id> source (version entities do not carry it)
        resolved = ModelSource(resolved.source, resolved.run_id, resolved.source[len("models:/") :])
    return resolved


def registration_key(name: str, key: str, source: str) -> str:
    """The tag value that identifies one registration attempt: the same task + model -> the same value."""
    digest = hashlib.sha256(f"{name}\n{key}\n{source}".encode()).hexdigest()
    return f"sha256:{digest[:40]}"


def lineage_tags(run: Any) -> dict[str, str]:
    """The lineage tags a version inherits from its training run (dataset, fingerprint, validation)."""
    tags = getattr(getattr(run, "data", None), "tags", None) or {}
    out = {key: str(tags[key]) for key in LINEAGE_RUN_TAGS if tags.get(key)}
    out[TAG_TRAINING_RUN] = run.info.run_id
    return out


def _versions_with_key(client: Any, name: str, key_value: str) -> list[Any]:
    found = client.search_model_versions(f"tags.`{TAG_REGISTRY_KEY}` = '{key_value}'")
    live = [mv for mv in found if mv.name == name and str(mv.status) != "FAILED_REGISTRATION"]
    return sorted(live, key=lambda mv: int(mv.version))


def _delete_quietly(client: Any, name: str, version: str) -> None:
    try:
        client.delete_model_version(name, version)
    except _mlflow_exception() as err:
        if not _is_not_found(err):
            raise


def settle_duplicates(client: Any, name: str, key_value: str, mine: str | None = None) -> Any | None:
    """
    Keep one version per registration key: the lowest wins, every other one without aliases is deleted.

    Each concurrent registrant calls this after creating its version; since each sees at least its own and
    every earlier version, all of them agree on the lowest one. Returns the winner (None when none exists).
    """
    versions = _versions_with_key(client, name, key_value)
    if not versions:
        return None
    winner, losers = versions[0], versions[1:]
    for loser in losers:
        number = str(loser.version)
        if number != mine:
            # search results carry no aliases: re-read, and never delete a version someone already points at
            try:
                if client.get_model_version(name, number).aliases:
                    continue
            except _mlflow_exception() as err:
                if _is_not_found(err):
                    continue
                raise
        _delete_quietly(client, name, number)
    return winner


def _ensure_registered_model(client: Any, name: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except _mlflow_exception() as err:
        if not _is_not_found(err):
            raise ModelRegistryError(f"Could not read registered model {name!r}: {err}") from err
    try:
        client.create_registered_model(name)
    except _mlflow_exception() as err:
        if _error_code(err) in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            return
        if _error_code(err) == "INVALID_PARAMETER_VALUE":
            raise MlopsConfigError(f"Invalid registered model name {name!r}: {err.message}") from None  # type: ignore[attr-defined]
        raise ModelRegistryError(f"Could not create registered model {name!r}: {err}") from err


def wait_until_ready(
    client: Any, name: str, version: str, *, timeout: float = 300.0, poll: float = 0.5
) -> Any:
    """Poll a version until READY; ModelRegistryError on FAILED_REGISTRATION or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        mv = client.get_model_version(name, version)
        status = str(mv.status)
        if status == "READY":
            return mv
        if status == "FAILED_REGISTRATION":
            raise ModelRegistryError(
                f"Version {version} of model {name!r} failed registration: {mv.status_message or 'no message'}. "
                "Check that the model artifacts are readable by the MLflow server."
            )
        if time.monotonic() >= deadline:
            raise ModelRegistryError(
                f"Version {version} of model {name!r} is still {status} after {timeout:.0f}s; "
                "raise await_ready_timeout or check the MLflow server."
            )
        time.sleep(poll)


def register_model_version(
    client: Any,
    *,
    name: str,
    run_id: str | None = None,
    model_uri: str | None = None,
    key: str | None = None,
    tags: Mapping[str, Any] | None = None,
    await_ready_timeout: float = 300.0,
) -> RegisteredVersion:
    """
    Register a model version once per ``key`` and wait until it is READY.

    Nothing is created when the source is invalid. With a ``key`` (the Airflow task instance key), a retry returns
    the version the first attempt created (``created=False``) and concurrent attempts end with one version.
    The version is tagged with the run's lineage (:data:`LINEAGE_RUN_TAGS`, ``mlops.training.run_id``) and ``tags``.
    """
    name = check_model_name(name)
    source = resolve_model_source(client, run_id=run_id, model_uri=model_uri)
    wanted: dict[str, str] = {}
    if source.run_id:
        wanted.update(lineage_tags(_get_run(client, source.run_id)))
    wanted.update({str(k): str(v) for k, v in (tags or {}).items() if v is not None})
    key_value = registration_key(name, key, source.source) if key else None
    if key_value:
        wanted[TAG_REGISTRY_KEY] = key_value

    created = False
    winner = settle_duplicates(client, name, key_value) if key_value else None
    if winner is None:
        _ensure_registered_model(client, name)
        try:
            mv = client.create_model_version(
                name,
                source.source,
                run_id=source.run_id,
                tags=wanted,
                await_creation_for=0,
                model_id=source.model_id,
            )
        except _mlflow_exception() as err:
            raise ModelRegistryError(
                f"Could not create a version of model {name!r} from {source.source}: {err}"
            ) from err
        mine = str(mv.version)
        winner = settle_duplicates(client, name, key_value, mine) if key_value else mv
        if winner is None:  # cannot happen unless someone deleted every version meanwhile
            raise ModelRegistryError(
                f"Version {mine} of model {name!r} vanished right after registration; retry."
            )
        created = str(winner.version) == mine
    version = str(winner.version)
    mv = wait_until_ready(client, name, version, timeout=await_ready_timeout)
    present = dict(getattr(mv, "tags", None) or {})
    for tag_key, tag_value in wanted.items():
        if present.get(tag_key) != tag_value:
            client.set_model_version_tag(name, version, tag_key, tag_value)
    return RegisteredVersion(
        name=name, version=version, run_id=mv.run_id or source.run_id, source=mv.source, created=created
    )


# ---------------------------------------------------------------- gate rules
_RULE_KEYS = frozenset({"metric", "min_delta", "greater_is_better", "min", "max"})


@dataclass(frozen=True)
class GateRule:
    """
    One rule of the gate on a run metric.

    * ``min_delta``: compared with the champion: the candidate must beat it by at least this much (in the
      direction of ``greater_is_better``; 0 means "not worse", a negative value tolerates a small regression).
      Skipped when there is no champion.
    * ``min`` / ``max``: absolute floors/ceilings, always checked.
    """

    KEYS: ClassVar[frozenset[str]] = _RULE_KEYS

    metric: str
    min_delta: float | None = None
    greater_is_better: bool = True
    min: float | None = None
    max: float | None = None

    @classmethod
    def from_obj(cls, obj: Any, index: int = 0) -> GateRule:
        where = f"gate rule #{index + 1}"
        if isinstance(obj, GateRule):
            return obj
        if not isinstance(obj, Mapping):
            raise GateRuleError(
                f"{where} must be a mapping like {{'metric': 'val_auc', 'min_delta': 0.002}}, got {obj!r}."
            )
        unknown = sorted(set(obj) - _RULE_KEYS)
        if unknown:
            raise GateRuleError(f"{where} has unknown keys {unknown}; allowed keys: {sorted(_RULE_KEYS)}.")
        metric = obj.get("metric")
        if not isinstance(metric, str) or not metric.strip():
            raise GateRuleError(f"{where} needs 'metric': the name of a run metric such as 'val_auc'.")
        numbers: dict[str, float | None] = {}
        for key in ("min_delta", "min", "max"):
            value = obj.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            ):
                raise GateRuleError(f"{where} ({metric}): {key!r} must be a finite number, got {value!r}.")
            numbers[key] = None if value is None else float(value)
        gib = obj.get("greater_is_better", True)
        if not isinstance(gib, bool):
            raise GateRuleError(
                f"{where} ({metric}): 'greater_is_better' must be true or false, got {gib!r}."
            )
        if all(v is None for v in numbers.values()):
            raise GateRuleError(
                f"{where} ({metric}) checks nothing: give 'min_delta' (beat the champion by), 'min' or 'max'."
            )
        low, high = numbers["min"], numbers["max"]
        if low is not None and high is not None and low > high:
            raise GateRuleError(f"{where} ({metric}): 'min' {low} is above 'max' {high}.")
        return cls(metric=metric.strip(), greater_is_better=gib, **numbers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric}
        if self.min_delta is not None:
            out["min_delta"] = self.min_delta
            out["greater_is_better"] = self.greater_is_better
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        return out


DEFAULT_GATE = "default"
_DEFAULT_GATES: dict[str, list[dict[str, Any]]] = {
    "classification": [
        {"metric": "val_roc_auc", "min_delta": 0.0, "greater_is_better": True},
        {"metric": "val_roc_auc", "min": 0.65},
    ],
    "regression": [
        {"metric": "val_rmse", "min_delta": 0.0, "greater_is_better": False},
        {"metric": "val_r2", "min": 0.0},
    ],
}


def default_gate_rules(task: str) -> list[dict[str, Any]]:
    """
    The gate applied when none is configured: the candidate must not be worse than the champion and must
    show skill. Classification: ``val_roc_auc`` >= the champion's and >= 0.65 (0.5 is a coin flip).
    Regression: ``val_rmse`` <= the champion's and ``val_r2`` >= 0 (better than predicting the mean).
    """
    try:
        return [dict(rule) for rule in _DEFAULT_GATES[str(task)]]
    except KeyError:
        raise GateRuleError(
            f"there is no default gate for task {task!r}; give the gate rules explicitly."
        ) from None


def parse_rules(rules: Any) -> list[GateRule]:
    """Rules from a list of mappings (or one mapping, or a JSON string of either); raises GateRuleError."""
    if isinstance(rules, str):
        try:
            rules = json.loads(rules)
        except json.JSONDecodeError as err:
            raise GateRuleError(
                f"Gate rules are not valid JSON ({err.msg} at {err.pos}): {rules[:200]!r}"
            ) from None
    if rules is None:
        return []
    if isinstance(rules, Mapping | GateRule):
        rules = [rules]
    if not isinstance(rules, Sequence):
        raise GateRuleError(f"Gate rules must be a list of mappings, got {type(rules).__name__}.")
    parsed = [GateRule.from_obj(rule, i) for i, rule in enumerate(rules)]
    return parsed


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def evaluate_rules(
    rules: Sequence[GateRule],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    candidate_version: str = "?",
    champion_version: str | None = None,
) -> tuple[bool, list[str]]:
    """
    Apply the rules: ``(passed, reasons)``, one reason per check. Pure: no I/O.

    The caller checks beforehand that the candidate has every metric (:func:`missing_metrics`).
    """
    reasons: list[str] = []
    passed = True
    cand = f"v{candidate_version}"
    if champion is None:
        reasons.append("no current champion: comparison rules skipped, floors decide")
    for rule in rules:
        value = float(candidate[rule.metric])
        if math.isnan(value):
            passed = False
            reasons.append(f"{rule.metric}: {cand} value is NaN: fail")
            continue
        if rule.min is not None:
            ok = value >= rule.min
            passed &= ok
            reasons.append(f"{rule.metric}: {cand} {_fmt(value)} {'>=' if ok else '<'} min {_fmt(rule.min)}: "
                           f"{'pass' if ok else 'fail'}")  # fmt: skip
        if rule.max is not None:
            ok = value <= rule.max
            passed &= ok
            reasons.append(f"{rule.metric}: {cand} {_fmt(value)} {'<=' if ok else '>'} max {_fmt(rule.max)}: "
                           f"{'pass' if ok else 'fail'}")  # fmt: skip
        if rule.min_delta is not None and champion is not None:
            champ = f"champion v{champion_version}"
            if rule.metric not in champion or math.isnan(float(champion[rule.metric])):
                reasons.append(f"{rule.metric}: {champ} has no value: comparison skipped")
                continue
            base = float(champion[rule.metric])
            delta = value - base if rule.greater_is_better else base - value
            ok = delta >= rule.min_delta
            passed &= ok
            direction = "higher" if rule.greater_is_better else "lower"
            reasons.append(
                f"{rule.metric}: {cand} {_fmt(value)} vs {champ} {_fmt(base)}, improvement {_fmt(delta)} "
                f"({direction} is better) {'>=' if ok else '<'} min_delta {_fmt(rule.min_delta)}: "
                f"{'pass' if ok else 'fail'}"
            )
    if not rules:
        reasons.append("no rules: the candidate passes")
    return passed, reasons


def missing_metrics(rules: Sequence[GateRule], metrics: Mapping[str, float]) -> list[str]:
    return sorted({rule.metric for rule in rules if rule.metric not in metrics})


# ---------------------------------------------------------------- history
@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias move."""

    seq: int
    alias: str
    from_version: str | None
    to_version: str
    action: str
    at: str
    reason: str = ""
    by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "action": self.action,
            "at": self.at,
            "reason": self.reason,
            "by": self.by,
        }


class AliasAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    SET = "set"


def _history_tag(seq: int) -> str:
    return f"{HISTORY_TAG_PREFIX}{seq:06d}"


def _events_from_tags(tags: Mapping[str, str]) -> list[AliasEvent]:
    events = []
    for key, raw in tags.items():
        if not key.startswith(HISTORY_TAG_PREFIX):
            continue
        suffix = key[len(HISTORY_TAG_PREFIX) :]
        try:
            seq = int(suffix)
            data = json.loads(raw)
            events.append(
                AliasEvent(
                    seq=seq,
                    alias=str(data["alias"]),
                    from_version=None if data.get("from") in (None, "") else str(data["from"]),
                    to_version=str(data["to"]),
                    action=str(data.get("action", "")),
                    at=str(data.get("at", "")),
                    reason=str(data.get("reason", "")),
                    by=str(data.get("by", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a tag someone edited by hand: not ours to interpret
    return sorted(events, key=lambda e: e.seq)


def alias_history(client: Any, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every recorded move of ``alias`` (all aliases when None), oldest first."""
    model = get_registered_model(client, name)
    events = _events_from_tags(getattr(model, "tags", None) or {})
    return [e for e in events if alias is None or e.alias == alias]


# ---------------------------------------------------------------- the move ledger
# An alias move takes history slot ``seq`` by creating the experiment ``<prefix><model>/<seq>``: experiment
# names are unique in the tracking store (a database constraint), so exactly one of any number of concurrent
# movers gets each slot, and a mover that lost knows the champion it judged against is stale. The experiment
# carries the move (tag ``mlops.alias_move``) until it is copied into the model's history tags; it is then
# soft-deleted (hidden in the UI; its name stays taken). Whoever comes next completes a move whose mover died
# between the claim and the copy, so the history never has a hole and never forks.
LEDGER_EXPERIMENT_PREFIX = "mlops-alias-ledger/"
_SETTLE_LIMIT = 50
_MAX_MOVE_ATTEMPTS = 12
_MAX_LEDGER_NAME = 400


def _claim_name(name: str, seq: int) -> str:
    key = name if len(name) <= _MAX_LEDGER_NAME else hashlib.sha256(name.encode()).hexdigest()
    return f"{LEDGER_EXPERIMENT_PREFIX}{key}/{seq:06d}"


def _next_seq(tags: Mapping[str, str]) -> int:
    seqs = [key[len(HISTORY_TAG_PREFIX) :] for key in tags if key.startswith(HISTORY_TAG_PREFIX)]
    return max((int(s) for s in seqs if s.isdigit()), default=0) + 1


def _read_claim(client: Any, name: str, seq: int) -> tuple[dict[str, Any], Any] | None:
    """The move that holds slot ``seq`` (deleted claims included: they may not be copied yet), else None."""
    experiment = client.get_experiment_by_name(_claim_name(name, seq))
    if experiment is None:
        return None
    try:
        payload = json.loads((experiment.tags or {})[TAG_ALIAS_MOVE])
        if not isinstance(payload, dict) or "alias" not in payload or "to" not in payload:
            raise ValueError(payload)
    except (KeyError, ValueError, TypeError):
        raise ModelRegistryError(
            f"History slot {seq} of model {name!r} is held by experiment {experiment.name!r} without a readable "
            f"{TAG_ALIAS_MOVE!r} tag; it was edited outside airflow-mlops. Delete that experiment permanently "
            "(mlflow gc) to free the slot."
        ) from None
    return payload, experiment


def _claim(client: Any, name: str, seq: int, payload: dict[str, Any]) -> bool:
    """Take history slot ``seq`` for ``payload``; False when another mover holds it."""
    try:
        client.create_experiment(
            _claim_name(name, seq), tags={TAG_ALIAS_MOVE: json.dumps(payload, sort_keys=True)}
        )
        return True
    except _mlflow_exception() as err:
        if _error_code(err) != "RESOURCE_ALREADY_EXISTS":
            raise ModelRegistryError(
                f"Could not record the move of alias {payload['alias']!r} of model {name!r}: {err}"
            ) from err
    held = _read_claim(client, name, seq)  # our own create answered twice (the client retried a lost reply)?
    return held is not None and held[0].get("claim") == payload["claim"]


def _checked(write: Callable[[], Any], done: Callable[[], bool], what: str) -> None:
    """Run an MLflow upsert; when it errors (two first-writes of one key race in the server), accept it if a
    re-read shows the wanted state, else try again."""
    last: Exception | None = None
    for attempt in range(4):
        try:
            write()
            return
        except _mlflow_exception() as err:
            last = err
        if done():
            return
        time.sleep(0.05 * (attempt + 1))
    raise ModelRegistryError(f"Could not {what}: {last}") from last


def _set_alias(client: Any, name: str, alias: str, version: str) -> None:
    _checked(
        lambda: client.set_registered_model_alias(name, alias, version),
        lambda: get_alias_version(client, name, alias) == version,
        f"point alias {alias!r} of model {name!r} at v{version}",
    )


def _set_model_tag(client: Any, name: str, key: str, value: str) -> None:
    _checked(
        lambda: client.set_registered_model_tag(name, key, value),
        lambda: (get_registered_model(client, name).tags or {}).get(key) == value,
        f"write tag {key!r} of model {name!r}",
    )


def _drop_claim(client: Any, experiment: Any) -> None:
    if getattr(experiment, "lifecycle_stage", "active") == "deleted":
        return
    try:
        client.delete_experiment(experiment.experiment_id)
    except _mlflow_exception():
        pass  # another mover deleted it first


def settle(client: Any, name: str, alias: str) -> tuple[Any, list[AliasEvent]]:
    """
    Bring ``name`` up to date with its move ledger and return ``(registered model, history)``.

    Copies every claimed move newer than the history into it (a mover that died after its claim is completed
    by whoever comes next; the copy is the same bytes, so two copiers agree), then points ``alias`` where the
    newest history entry of it says, re-reading until a read shows it there. The history is the record: an
    alias moved outside airflow-mlops while it has history is put back (and a warning logged).
    """
    for _ in range(_SETTLE_LIMIT):
        model = get_registered_model(client, name)
        tags = dict(getattr(model, "tags", None) or {})
        seq = _next_seq(tags)
        pending = _read_claim(client, name, seq)
        if pending is not None:
            payload, experiment = pending
            _drop_claim(client, experiment)  # first: a crash after it still leaves the claim readable
            _set_model_tag(client, name, _history_tag(seq), json.dumps(payload, sort_keys=True))
            continue
        events = _events_from_tags(tags)
        newest = next((e for e in reversed(events) if e.alias == alias), None)
        current = _aliases_of(model).get(alias)
        if newest is None or current == newest.to_version:
            return model, events
        if current is not None and all(e.to_version != current for e in events if e.alias == alias):
            logger.warning(
                "Alias %r of model %r points at v%s, which its history never recorded; putting it back to v%s. "
                "Move aliases with MlflowSetModelAliasOperator (or core.registry.set_alias) so the move is recorded.",
                alias,
                name,
                current,
                newest.to_version,
            )
        _set_alias(client, name, alias, newest.to_version)
    raise ModelRegistryError(
        f"Alias {alias!r} of model {name!r} kept moving while it was being settled ({_SETTLE_LIMIT} reads); "
        "the task can be retried."
    )


def _move(
    client: Any,
    name: str,
    *,
    seq: int,
    alias: str,
    from_version: str | None,
    to_version: str,
    action: AliasAction | str,
    reason: str = "",
    by: str = "",
) -> AliasEvent | None:
    """Claim slot ``seq`` for the move and carry it out; None when another mover took the slot first."""
    event = AliasEvent(
        seq=seq,
        alias=alias,
        from_version=from_version,
        to_version=to_version,
        action=AliasAction(action).value,
        at=_now(),
        reason=reason[:_MAX_REASON],
        by=by,
    )
    payload = {k: v for k, v in event.to_dict().items() if k != "seq"}
    payload["claim"] = uuid.uuid4().hex
    if not _claim(client, name, seq, payload):
        return None
    settle(client, name, alias)
    return event


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))


def _moving_error(name: str, alias: str, attempts: int) -> ModelRegistryError:
    return ModelRegistryError(
        f"Alias {alias!r} of model {name!r} was moved by other tasks {attempts} times while this one tried; "
        "nothing was moved by this task and it can be retried. Put the tasks that move it in the one-slot "
        "[mlops] promotion_pool."
    )


def previous_version(events: Sequence[AliasEvent], alias: str, current: str) -> str | None:
    """
    The version ``alias`` pointed to before ``current``, walking back over rollbacks like an undo stack.

    The newest promote/set event that moved ``alias`` *to* ``current`` says where it came from; rollback events
    are skipped, so rolling back twice goes two steps back rather than toggling.
    """
    for event in reversed(events):
        if (
            event.alias == alias
            and event.to_version == current
            and event.action != AliasAction.ROLLBACK.value
        ):
            return event.from_version
    return None


@dataclass(frozen=True)
class AliasMove:
    """The result of an alias move (set, rollback)."""

    name: str
    alias: str
    version: str
    previous_version: str | None
    action: str
    moved: bool
    reason: str = ""

    def to_xcom(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "action": self.action,
            "moved": self.moved,
            "reason": self.reason,
        }


def set_alias(
    client: Any,
    name: str,
    alias: str,
    version: Any,
    *,
    reason: str = "",
    by: str = "",
    action: AliasAction | str = AliasAction.SET,
) -> AliasMove:
    """Point ``alias`` at ``version`` and record the move; a no-op (``moved=False``) when it already does."""
    alias = check_alias(alias)
    version = check_version(version)
    get_registered_model(client, name)
    get_model_version(client, name, version)
    kind = AliasAction(action).value
    for attempt in range(_MAX_MOVE_ATTEMPTS):
        model, _ = settle(client, name, alias)
        current = _aliases_of(model).get(alias)
        if current == version:
            return AliasMove(name, alias, version, current, kind, moved=False, reason=reason)
        seq = _next_seq(getattr(model, "tags", None) or {})
        moved = _move(
            client, name, seq=seq, alias=alias, from_version=current, to_version=version, action=kind,
            reason=reason, by=by,
        )  # fmt: skip
        if moved is not None:
            return AliasMove(name, alias, version, current, kind, moved=True, reason=reason)
        _backoff(attempt)
    raise _moving_error(name, alias, _MAX_MOVE_ATTEMPTS)


def rollback_alias(
    client: Any,
    name: str,
    alias: str,
    *,
    version: Any = None,
    reason: str = "",
    by: str = "",
) -> AliasMove:
    """
    Move ``alias`` back to the version it pointed to before (or to ``version``) in one step, and record it.

    Retry-safe: when the newest event is a rollback of this alias recorded by the same ``by`` and the alias
    still points where it put it, nothing moves again and that rollback is returned. When another task moves
    the alias at the same moment, the rollback is judged again on the new state (one step back from it).
    """
    alias = check_alias(alias)
    wanted = None if version is None else check_version(version)
    for attempt in range(_MAX_MOVE_ATTEMPTS):
        model, events = settle(client, name, alias)
        if alias not in _aliases_of(model):
            require_alias_version(client, name, alias)  # raises ModelNotFound listing the aliases
        current = _aliases_of(model)[alias]
        newest = next((e for e in reversed(events) if e.alias == alias), None)
        if (
            by
            and newest is not None
            and newest.action == AliasAction.ROLLBACK.value
            and newest.by == by
            and newest.to_version == current
            and (wanted is None or wanted == current)
        ):
            return AliasMove(
                name, alias, current, newest.from_version, newest.action, moved=False, reason=newest.reason
            )
        target = wanted if wanted is not None else previous_version(events, alias, current)
        if target is None:
            raise ModelRegistryError(
                f"No earlier {alias!r} version of model {name!r} is recorded before v{current}, so there is "
                "nothing to roll back to. Pass version=<N> to choose one."
            )
        get_model_version(client, name, target)
        if target == current:
            return AliasMove(
                name, alias, current, current, AliasAction.ROLLBACK.value, moved=False, reason=reason
            )
        text = reason or f"rollback of {alias} from v{current} to v{target}"
        seq = _next_seq(getattr(model, "tags", None) or {})
        moved = _move(
            client, name, seq=seq, alias=alias, from_version=current, to_version=target,
            action=AliasAction.ROLLBACK, reason=text, by=by,
        )  # fmt: skip
        if moved is not None:
            return AliasMove(
                name, alias, target, current, AliasAction.ROLLBACK.value, moved=True, reason=text
            )
        _backoff(attempt)
    raise _moving_error(name, alias, _MAX_MOVE_ATTEMPTS)


# ---------------------------------------------------------------- the gate
class GateDecision(StrEnum):
    PROMOTED = "promoted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class GateResult:
    """The gate's decision about one candidate version."""

    name: str
    version: str
    decision: GateDecision
    champion_version: str | None
    previous_champion_version: str | None
    reasons: list[str] = field(default_factory=list)
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"

    @property
    def promoted(self) -> bool:
        return self.decision is GateDecision.PROMOTED

    def to_xcom(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "decision": self.decision.value,
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "previous_champion_version": self.previous_champion_version,
            "reasons": list(self.reasons),
        }


def _run_metrics(client: Any, name: str, mv: Any) -> dict[str, float]:
    if not mv.run_id:
        raise ModelRegistryError(
            f"Version {mv.version} of model {name!r} has no source run, so the gate has no metrics to read. "
            "Register versions from a training run."
        )
    return dict(_get_run(client, mv.run_id).data.metrics)


def _run_task(client: Any, name: str, mv: Any) -> str:
    """The task (classification/regression) the trainer recorded on the version's run."""
    from airflow_mlops.core.tags import TAG_TASK

    task = (_get_run(client, mv.run_id).data.tags or {}).get(TAG_TASK) if mv.run_id else None
    if task not in _DEFAULT_GATES:
        raise GateRuleError(
            f"{name!r} v{mv.version}: the default gate needs the model's task, but its run records none "
            f"(tag {TAG_TASK!r}); give the gate rules explicitly."
        )
    return str(task)


def promote_if_better(
    client: Any,
    name: str,
    version: Any,
    rules: Any,
    *,
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
    by: str = "",
    max_attempts: int = _MAX_MOVE_ATTEMPTS,
) -> GateResult:
    """
    The champion/challenger gate: point ``challenger_alias`` at the candidate; move ``champion_alias`` only if it
    passes ``rules`` against the current champion (or the floors when there is none). Records the decision on
    the version and the champion move in the history.

    Every input is checked before anything changes (malformed rule, unknown model/version, metric the run
    lacks). Retry-safe: a candidate that is already the champion is reported as promoted again.

    Safe under concurrency without a pool: the champion move takes the next history slot atomically (see
    :func:`settle`); a gate that loses the slot to another move judges again against the new champion (up to
    ``max_attempts``), so the champion is always the best candidate that passed and the history is a chain.
    The one-slot ``[mlops] promotion_pool`` still keeps gates of one model from working in vain.
    """
    name = check_model_name(name)
    version = check_version(version)
    parsed = [] if rules == DEFAULT_GATE else parse_rules(rules)
    champion_alias = check_alias(champion_alias, what="champion alias")
    challenger_alias = check_alias(challenger_alias, what="challenger alias")
    if champion_alias == challenger_alias:
        raise MlopsConfigError(f"champion and challenger aliases must differ, both are {champion_alias!r}.")
    get_registered_model(client, name)
    mv = get_model_version(client, name, version)
    if str(mv.status) != "READY":
        raise ModelRegistryError(
            f"Version {version} of model {name!r} is {mv.status}, not READY; register it first."
        )
    metrics = _run_metrics(client, name, mv)
    if rules == DEFAULT_GATE:
        task = _run_task(client, name, mv)
        parsed = parse_rules(default_gate_rules(task))
        missing = missing_metrics(parsed, metrics)
        if missing:
            raise GateRuleError(
                f"The default {task} gate needs {missing}, but the run {mv.run_id} of {name!r} v{version} logged "
                f"{_listed(metrics)} (a classifier without predict_proba logs no roc_auc). Give the gate rules "
                "explicitly, e.g. [{'metric': 'val_accuracy', 'min_delta': 0.0}, {'metric': 'val_accuracy', "
                "'min': 0.7}]."
            )
    missing = missing_metrics(parsed, metrics)
    if missing:
        raise GateRuleError(
            f"The gate needs metrics {missing} but the run {mv.run_id} of {name!r} v{version} has "
            f"{_listed(metrics)}. Fix the rule's metric name or log the metric in training."
        )

    for attempt in range(max(1, max_attempts)):
        model, events = settle(client, name, champion_alias)
        aliases = _aliases_of(model)
        champion = aliases.get(champion_alias)
        if champion == version:
            return _already_champion(
                client, name, version, model, events, champion_alias, challenger_alias, by
            )
        champion_metrics = None
        if champion is not None:
            champion_metrics = _run_metrics(client, name, get_model_version(client, name, champion))
        passed, reasons = evaluate_rules(
            parsed, metrics, champion_metrics, candidate_version=version, champion_version=champion
        )
        decision = GateDecision.PROMOTED if passed else GateDecision.REJECTED
        if aliases.get(challenger_alias) != version:
            _set_alias(client, name, challenger_alias, version)
        _record_decision(client, name, version, decision, reasons, parsed, champion, by)
        if not passed:
            return GateResult(
                name, version, decision, champion, champion, reasons, champion_alias, challenger_alias
            )
        moved = _move(
            client,
            name,
            seq=_next_seq(getattr(model, "tags", None) or {}),
            alias=champion_alias,
            from_version=champion,
            to_version=version,
            action=AliasAction.PROMOTE,
            reason="; ".join(r for r in reasons if r.endswith("pass")) or "passed the gate",
            by=by,
        )
        if moved is None:  # another task moved the champion meanwhile: judge again against the new one
            _backoff(attempt)
            continue
        return GateResult(
            name, version, decision, version, champion, reasons, champion_alias, challenger_alias
        )
    raise _moving_error(name, champion_alias, max(1, max_attempts))


def _record_decision(
    client: Any,
    name: str,
    version: str,
    decision: GateDecision,
    reasons: list[str],
    rules: Sequence[GateRule],
    champion: str | None,
    by: str,
) -> None:
    tags = {
        TAG_GATE_DECISION: decision.value,
        TAG_GATE_REASONS: json.dumps(reasons),
        TAG_GATE_RULES: json.dumps([r.to_dict() for r in rules], sort_keys=True),
        TAG_GATE_CHAMPION: champion or "",
        TAG_GATE_AT: _now(),
        TAG_GATE_BY: by,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _already_champion(
    client: Any,
    name: str,
    version: str,
    model: Any,
    events: Sequence[AliasEvent],
    champion_alias: str,
    challenger_alias: str,
    by: str,
) -> GateResult:
    previous = previous_version(events, champion_alias, version)
    recorded = any(e.alias == champion_alias and e.to_version == version for e in events)
    if not recorded:  # set outside airflow-mlops before any move was recorded: record it once
        _move(
            client,
            name,
            seq=_next_seq(getattr(model, "tags", None) or {}),
            alias=champion_alias,
            from_version=None,
            to_version=version,
            action=AliasAction.PROMOTE,
            reason="already the champion when the gate ran",
            by=by,
        )
    if get_alias_version(client, name, challenger_alias) != version:
        _set_alias(client, name, challenger_alias, version)
    reasons = [f"v{version} is already the {champion_alias!r} version: nothing to move"]
    mv = client.get_model_version(name, version)
    if (getattr(mv, "tags", None) or {}).get(TAG_GATE_DECISION) != GateDecision.PROMOTED.value:
        client.set_model_version_tag(name, version, TAG_GATE_DECISION, GateDecision.PROMOTED.value)
        client.set_model_version_tag(name, version, TAG_GATE_REASONS, json.dumps(reasons))
    return GateResult(
        name, version, GateDecision.PROMOTED, version, previous, reasons, champion_alias, challenger_alias
    )
