"""Idempotent registration of a model version: one version per (name, caller key, model source), retry-safe.

Each version created by :func:`register_model_version` carries the tag ``mlops.registry.key`` = hash(name,
caller key, model source). A retry finds it and returns the same version; two concurrent attempts both create,
both re-read by tag and the higher version deletes itself (lowest wins). :func:`resolve_model_source` finds the
model a caller names (a run, a logged model, a ``runs:/`` or ``models:/m-`` URI, MLflow 2's run-artifact
layout). Framework-free; the lookups are :mod:`airflow_mlops.core.registry`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.registry import (
    check_model_name,
    check_version,
    error_code,
    get_model_version,
    get_run,
    is_not_found,
    listed,
    mlflow_exception,
    require_alias_version,
)
from airflow_mlops.core.tags import (
    LINEAGE_RUN_TAGS,
    TAG_DAG_ID,
    TAG_REGISTRY_KEY,
    TAG_RUN_ID,
    TAG_TRAINING_LAST,
    TAG_TRAINING_RUN,
)
from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound, ModelRegistryError

if TYPE_CHECKING:
    from collections.abc import Mapping

_LOGGED_MODEL_URI = re.compile(r"^models:/m-[0-9a-f]+$")

logger = logging.getLogger(__name__)


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

    def to_summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "created": self.created,
        }

    to_xcom = to_summary  # the name before 0.2: kept for callers' code


def _logged_models_of(client: Any, run: Any) -> list[Any]:
    outputs = getattr(run, "outputs", None)
    found = []
    for output in getattr(outputs, "model_outputs", None) or []:
        model_id = getattr(output, "model_id", None)
        if model_id:
            try:
                found.append((getattr(output, "step", 0) or 0, client.get_logged_model(model_id)))
            except mlflow_exception() as err:
                if not is_not_found(err):
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
    run = get_run(client, run_id)
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
        except Exception:  # noqa: BLE001 - a run without listable artifacts simply has no MLflow 2 model there
            files = set()
        if "MLmodel" in files:
            return ModelSource(source=f"{run.info.artifact_uri.rstrip('/')}/{artifact_name}", run_id=run_id)
        raise ModelNotFound(
            f"MLflow run {run_id!r} has no logged model named {artifact_name!r}. "
            f"Models it logged: {listed(m.name for m in models)}."
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


def resolve_model_source(  # noqa: C901 - one branch per way a caller names a model (run, logged model, URI, MLflow 2 layout)
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
        except mlflow_exception() as err:
            if is_not_found(err):
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
        get_run(client, run_id)
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
    except mlflow_exception() as err:
        if not is_not_found(err):
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
            except mlflow_exception() as err:
                if is_not_found(err):
                    continue
                raise
        _delete_quietly(client, name, number)
    return winner


def _ensure_registered_model(client: Any, name: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except mlflow_exception() as err:
        if not is_not_found(err):
            raise ModelRegistryError(f"Could not read registered model {name!r}: {err}") from err
    try:
        client.create_registered_model(name)
    except mlflow_exception() as err:
        if error_code(err) in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            return
        if error_code(err) == "INVALID_PARAMETER_VALUE":
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


def _record_summary(client: Any, name: str, mv: Any, tags: Mapping[str, str]) -> None:
    """
    The registered model's summary tags: its owner DAG (``mlops.airflow.dag_id``) and newest training.

    Only a version at least as new as the recorded one writes them, so a late retry of an older registration
    never makes the summary go back. The Models view reads these, one registry call for many models.
    """
    model = client.get_registered_model(name)
    recorded = (getattr(model, "tags", None) or {}).get(TAG_TRAINING_LAST)
    try:
        if recorded and int(json.loads(recorded).get("version", 0)) > int(mv.version):
            return
    except (ValueError, TypeError, AttributeError):
        pass  # a hand-edited tag: overwrite it
    summary = {
        "version": str(mv.version),
        "run_id": mv.run_id or "",
        "dag_id": tags.get(TAG_DAG_ID, ""),
        "airflow_run_id": tags.get(TAG_RUN_ID, ""),
        "at": int(getattr(mv, "creation_timestamp", 0) or 0),
    }
    client.set_registered_model_tag(name, TAG_TRAINING_LAST, json.dumps(summary, sort_keys=True))
    if summary["dag_id"]:
        client.set_registered_model_tag(name, TAG_DAG_ID, summary["dag_id"])


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
        wanted.update(lineage_tags(get_run(client, source.run_id)))
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
        except mlflow_exception() as err:
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
    _record_summary(client, name, mv, wanted)
    return RegisteredVersion(
        name=name, version=version, run_id=mv.run_id or source.run_id, source=mv.source, created=created
    )
