"""The retraining policy: when a confirmed drift becomes a retraining event, decided in one place.

:class:`RetrainingPolicy` holds the rules (persistence over N consecutive checks, a cool-down after a retrain,
at most M retrains per window). :func:`decide` is a pure function from the previous :class:`PolicyState` and
one drift check to the next state and a :class:`PolicyDecision`. :class:`MlflowPolicyStore` keeps the state
with the model in MLflow (a JSON registered-model tag), so it survives worker restarts, and applies a check
with a compare-and-set discipline: read the revision, decide, re-read to make sure nobody moved it, write
with a unique writer token, read back to confirm, and start over on any conflict.

Idempotency: every check carries a key (the Airflow ``ti_key``, stable across tries). The state remembers
the outcome of recent keys, so a retried check replays its recorded decision instead of advancing the
policy again.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_mlops.core.tags import TAG_DRIFT_STATE
from airflow_mlops.exceptions import DriftDetectionError, MlopsConfigError, ModelNotFound

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

STATE_SCHEMA = 1
MAX_HISTORY = 20  # recent checks kept in the state (and replayable by key)
CAS_ATTEMPTS = 6

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any, *, what: str) -> float:
    """Seconds from a number, a ``timedelta`` or a string like ``"90m"``, ``"12h"``, ``"7d"``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise MlopsConfigError(f"{what}={value!r} is not a duration; give seconds or a string like '12h'.")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise MlopsConfigError(
            f"{what}={value!r} is not a duration; give seconds, a timedelta or a string like '30m', '12h', '7d'."
        )
    if seconds < 0:
        raise MlopsConfigError(f"{what}={value!r} is negative; give a duration >= 0.")
    return seconds


@dataclass(frozen=True)
class RetrainingPolicy:
    """
    When a drifted check may start a retraining.

    :param persistence: Drift must be detected on this many consecutive checks of the same model version
        before it counts as confirmed (1 = the first drifted check confirms).
    :param cooldown: No new retraining event for this long after the last one (seconds, timedelta or "12h").
    :param max_retrains: At most this many retraining events per ``window``; 0 means no budget limit.
    :param window: The sliding window of the budget (seconds, timedelta or "7d").

    .. code-block:: python

        RetrainingPolicy(persistence=2, cooldown="1d", max_retrains=3, window="7d")
    """

    persistence: int = 1
    cooldown: float = 0.0
    max_retrains: int = 0
    window: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.persistence, bool)
            or not isinstance(self.persistence, int)
            or self.persistence < 1
        ):
            raise MlopsConfigError(
                f"RetrainingPolicy.persistence={self.persistence!r} must be an integer >= 1 (consecutive checks)."
            )
        if (
            isinstance(self.max_retrains, bool)
            or not isinstance(self.max_retrains, int)
            or self.max_retrains < 0
        ):
            raise MlopsConfigError(
                f"RetrainingPolicy.max_retrains={self.max_retrains!r} must be an integer >= 0 (0 = unlimited)."
            )
        object.__setattr__(self, "cooldown", parse_duration(self.cooldown, what="RetrainingPolicy.cooldown"))
        object.__setattr__(self, "window", parse_duration(self.window, what="RetrainingPolicy.window"))
        if self.max_retrains and self.window <= 0:
            raise MlopsConfigError("RetrainingPolicy.window must be > 0 when max_retrains is set.")

    @classmethod
    def from_obj(cls, obj: RetrainingPolicy | Mapping[str, Any] | str | None) -> RetrainingPolicy:
        """A policy from itself, a dict, a JSON string, or None (the defaults)."""
        if obj is None:
            return cls()
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise MlopsConfigError(f"retraining policy is not valid JSON: {err}") from None
        if not isinstance(obj, Mapping):
            raise MlopsConfigError(
                f"retraining policy must be a RetrainingPolicy, a dict or JSON, not {type(obj).__name__}."
            )
        allowed = {"persistence", "cooldown", "max_retrains", "window"}
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise MlopsConfigError(
                f"unknown retraining policy field(s) {unknown}; allowed: {sorted(allowed)}."
            )
        return cls(**dict(obj))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckRecord:
    """One drift check as the state remembers it."""

    key: str
    at: float
    version: str
    drifted: bool
    share: float
    confirmed: bool
    emit: bool
    reason: str
    report_uri: str = ""


@dataclass(frozen=True)
class PolicyState:
    """The policy's memory for one registered model (serialised into a registered-model tag)."""

    rev: int = 0
    writer: str = ""
    consecutive: int = 0
    version: str = ""  # model version of the last check
    retrains: tuple[float, ...] = ()  # times of emitted retraining events inside the window
    last_retrain: float | None = None
    last_confirmed: dict[str, Any] | None = None  # the newest confirmed drift (for DriftSensor)
    history: tuple[CheckRecord, ...] = ()

    def find(self, key: str) -> CheckRecord | None:
        for record in self.history:
            if record.key == key:
                return record
        return None

    def to_json(self) -> str:
        data = asdict(self)
        data["schema"] = STATE_SCHEMA
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> PolicyState:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            history = tuple(CheckRecord(**h) for h in data.get("history", []))
            return cls(
                rev=int(data.get("rev", 0)),
                writer=str(data.get("writer", "")),
                consecutive=int(data.get("consecutive", 0)),
                version=str(data.get("version", "")),
                retrains=tuple(float(t) for t in data.get("retrains", [])),
                last_retrain=data.get("last_retrain"),
                last_confirmed=data.get("last_confirmed"),
                history=history,
            )
        except (ValueError, TypeError, AttributeError) as err:
            raise DriftDetectionError(
                f"the drift policy state (registered-model tag {TAG_DRIFT_STATE!r}) is not valid: {err}. "
                "Delete the tag to start the policy afresh."
            ) from None


@dataclass(frozen=True)
class DriftCheck:
    """The input of one policy step: what a drift check found, and its idempotency key."""

    key: str
    version: str
    drifted: bool
    share: float
    report_uri: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy decided for one check."""

    emit: bool
    confirmed: bool
    reason: str
    consecutive: int
    replayed: bool = False  # True when the check key was already recorded (a retry)
    retrains_in_window: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    policy: RetrainingPolicy, state: PolicyState, check: DriftCheck, now: float
) -> tuple[PolicyState, PolicyDecision]:
    """The next state and the decision for ``check`` (a recorded key replays its decision unchanged)."""
    recorded = state.find(check.key)
    if recorded is not None:
        return state, PolicyDecision(
            emit=recorded.emit,
            confirmed=recorded.confirmed,
            reason=recorded.reason,
            consecutive=state.consecutive,
            replayed=True,
            retrains_in_window=len(state.retrains),
        )
    consecutive = state.consecutive if check.version == state.version else 0
    consecutive = consecutive + 1 if check.drifted else 0
    retrains = tuple(t for t in state.retrains if now - t < policy.window)
    confirmed = check.drifted and consecutive >= policy.persistence
    emit = False
    if not check.drifted:
        reason = "no drift"
    elif not confirmed:
        reason = f"drift on {consecutive} of {policy.persistence} consecutive check(s) needed"
    elif state.last_retrain is not None and now - state.last_retrain < policy.cooldown:
        remaining = policy.cooldown - (now - state.last_retrain)
        reason = f"confirmed drift inside the cool-down ({remaining:.0f} s left)"
    elif policy.max_retrains and len(retrains) >= policy.max_retrains:
        reason = f"confirmed drift but the budget of {policy.max_retrains} retrain(s) per {policy.window:.0f} s is spent"
    else:
        emit = True
        reason = "confirmed drift: retraining event emitted"
    record = CheckRecord(
        key=check.key,
        at=now,
        version=check.version,
        drifted=check.drifted,
        share=round(float(check.share), 6),
        confirmed=confirmed,
        emit=emit,
        reason=reason,
        report_uri=check.report_uri,
    )
    last_confirmed = state.last_confirmed
    if confirmed:
        last_confirmed = {
            "key": check.key,
            "at": now,
            "version": check.version,
            "share": record.share,
            "report_uri": check.report_uri,
            "emitted": emit,
            **{k: v for k, v in check.extra.items() if k not in {"key", "at", "version", "share", "emitted"}},
        }
    new_state = PolicyState(
        rev=state.rev + 1,
        writer=state.writer,
        consecutive=0 if emit else consecutive,
        version=check.version,
        retrains=(*retrains, now) if emit else retrains,
        last_retrain=now if emit else state.last_retrain,
        last_confirmed=last_confirmed,
        history=(*state.history, record)[-MAX_HISTORY:],
    )
    decision = PolicyDecision(
        emit=emit,
        confirmed=confirmed,
        reason=reason,
        consecutive=consecutive,
        retrains_in_window=len(new_state.retrains),
    )
    return new_state, decision


class PolicyConflict(DriftDetectionError):
    """Another writer changed the policy state between our read and our write."""

    retryable: ClassVar[bool] = True  # a later try reads the new state


class MlflowPolicyStore:
    """
    The policy state of one registered model, kept as the JSON tag ``mlops.drift.state`` on that model.

    MLflow tags are last-writer-wins and MLflow has no conditional write, so :meth:`apply` follows a
    compare-and-set discipline: it writes only when the revision it decided from is still current, waits
    ``settle`` seconds, reads back its unique writer token and starts over from a fresh read on any conflict
    (a writer that lost re-applies its check on top of the winner's state). A lost update remains possible
    only when a writer stalls for longer than ``settle`` between its revision check and its write; serialise
    drift checks of one model (``max_active_runs=1`` or a one-slot pool) to rule that out entirely.
    """

    def __init__(
        self, client: MlflowClient, model_name: str, *, sleep: float = 0.05, settle: float = 0.2
    ) -> None:
        self.client = client
        self.model_name = model_name
        self.sleep = sleep
        self.settle = settle

    def load(self) -> PolicyState:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException as err:
            if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFound(
                    f"registered model {self.model_name!r} does not exist; register it before checking drift."
                ) from None
            raise
        return PolicyState.from_json((model.tags or {}).get(TAG_DRIFT_STATE))

    def _write(self, state: PolicyState) -> None:
        self.client.set_registered_model_tag(self.model_name, TAG_DRIFT_STATE, state.to_json())

    def apply(
        self, policy: RetrainingPolicy, check: DriftCheck, now: float | None = None
    ) -> tuple[PolicyState, PolicyDecision]:
        """Record ``check`` and return the stored state and the decision (replayed for a known key)."""
        when = time.time() if now is None else now
        token = f"{check.key}#{uuid.uuid4().hex[:12]}"
        for attempt in range(CAS_ATTEMPTS):
            base = self.load()
            new_state, decision = decide(policy, base, check, when)
            if decision.replayed:
                return base, decision
            new_state = replace(new_state, writer=token)
            if self.load().rev != base.rev:  # moved since we decided: decide again
                self._backoff(attempt)
                continue
            self._write(new_state)
            if self.settle:
                time.sleep(self.settle)  # let a racing writer land before we read back
            stored = self.load()
            if stored.writer == token and stored.rev == new_state.rev:
                return stored, decision
            log.warning(
                "Drift policy state of %s was changed concurrently (attempt %d); retrying",
                self.model_name,
                attempt + 1,
            )
            self._backoff(attempt)
        raise PolicyConflict(
            f"could not update the drift policy state of model {self.model_name!r} after {CAS_ATTEMPTS} "
            "attempts because other writers kept changing it; serialise drift checks of one model "
            "(max_active_runs=1 or a one-slot pool) and retry."
        )

    def _backoff(self, attempt: int) -> None:
        time.sleep(self.sleep * (attempt + 1))


def confirmed_drift_since(
    client: Any, model_name: str, since: float, *, require_emitted: bool = False
) -> dict[str, Any] | None:
    """The newest confirmed drift of ``model_name`` recorded at or after ``since`` (epoch seconds), else None.

    What the drift sensor pokes and its trigger polls.
    """
    confirmed = MlflowPolicyStore(client, model_name).load().last_confirmed
    if not confirmed or float(confirmed.get("at", 0)) < since:
        return None
    if require_emitted and not confirmed.get("emitted"):
        return None
    return {"model_name": model_name, **confirmed}
