"""Helpers every airflow-mlops operator shares: task identity, retry semantics, rendered optional values.

The MLflow hook of a task is :class:`airflow_mlops.operators.base.MlflowBaseOperator`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops.core.lineage import AirflowIdentity

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


def identity_from_context(context: Context) -> AirflowIdentity:
    """The AirflowIdentity of the running task instance."""
    ti: Any = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return AirflowIdentity(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=int(getattr(ti, "try_number", 1) or 1),
        map_index=-1 if map_index is None else int(map_index),
    )


def optional_text(value: Any) -> str | None:
    """A rendered template of 'no value' (``''``, ``'None'``, ``'null'``) is None; anything else its stripped text."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in {"", "None", "none", "null"} else text


class OnFailure(StrEnum):
    """
    What a task does when its check fails: a validation suite fails, or the gate rejects the candidate.

    The outcome is recorded either way (the report, the gate decision on the version); this only decides the
    task's state. ``succeed``, the gate's word before 0.2, is read as ``warn``.
    """

    FAIL = "fail"  # the task fails for good (never retried: the same input fails the same way)
    WARN = "warn"  # the task succeeds and logs a warning; its summary says what failed
    SKIP = "skip"  # AirflowSkipException, so downstream tasks skip

    @classmethod
    def _missing_(cls, value: object) -> OnFailure | None:
        if isinstance(value, str) and value.strip().lower() in {"succeed", "warn", "fail", "skip"}:
            return cls("warn" if value.strip().lower() == "succeed" else value.strip().lower())
        return None


_F = TypeVar("_F", bound=Callable[..., Any])


class MlopsPermanentFailure(AirflowFailException):
    """
    An AirflowFailException (Airflow does not retry it) that carries the provider's error as ``.error`` (and
    ``__cause__``), so failure callbacks can still branch on ``ModelGateRejected``, ``SchemaMismatch``...
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{error} (not retried: a retry with the same input fails the same way)")
        self.error = error


def permanent_failure(err: BaseException) -> BaseException | None:
    """
    The ``AirflowFailException`` to raise instead of ``err`` when no retry can fix it, else None.

    The one place where the provider's error classes (their ``retryable`` flag, see
    :mod:`airflow_mlops.exceptions`) become Airflow retry semantics: a bad spec, bad data, a schema mismatch,
    a failed suite, a gate rejection or a config error fails the task for good; an unreachable service or a
    training process/pod that died keeps Airflow's retries.
    """
    from airflow_mlops.exceptions import MlopsError

    if isinstance(err, MlopsError) and not err.retryable:
        return MlopsPermanentFailure(err)
    return None


def fail_fast(method: _F) -> _F:
    """Decorate ``execute`` / ``execute_complete`` / ``trigger_reentry``: see :func:`permanent_failure`."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as err:
            failure = permanent_failure(err)
            if failure is None:
                raise
            raise failure from err

    return wrapper  # type: ignore[return-value]


def emitted_before(context: Context, alias: Any, key: str, value: str, log: Any) -> bool:
    """
    True when an earlier try of this task instance already emitted an event through ``alias`` whose extra has
    ``key == value`` (a cleared or retried task after a successful try): emitting again would trigger the
    consumers twice. The alias must be among the task's inlets. Best effort: when the events cannot be read
    back the caller emits (consumers see a duplicate rather than nothing).
    """
    try:
        events = context["inlet_events"][alias]
        run_after = getattr(context.get("dag_run"), "run_after", None)
        if run_after is not None:  # this task instance's events are all newer than its run
            events = events.after(run_after.isoformat())
        recent = list(events.ascending(False).limit(1000))
    except Exception as err:  # noqa: BLE001 - reading past events is best effort: emitting again is the safe default
        log.warning(
            "Could not read back past events of %s (%s); emitting", getattr(alias, "name", alias), err
        )
        return False
    return any((getattr(e, "extra", None) or {}).get(key) == value for e in recent)
