"""Alias history, the move ledger and the alias moves (set, roll back) of the MLflow registry.

Where state lives (all in MLflow, so it survives Airflow and is visible in the MLflow UI): one registered-model
tag per alias move, ``mlops.history.<seq>`` = JSON ``{"alias", "from", "to", "action", "at", "reason", "by"}``;
:func:`alias_history` reads it back. A move takes its slot ``seq`` atomically first (a uniquely named ledger
experiment, see :func:`settle`), so concurrent gates, rollbacks and manual sets of one model never fork the
history or leave the alias on a stale version. Framework-free, like :mod:`airflow_mlops.core.registry`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.registry import (
    MAX_REASON,
    aliases_of,
    check_alias,
    check_version,
    error_code,
    get_alias_version,
    get_model_version,
    get_registered_model,
    mlflow_exception,
    now_iso,
    require_alias_version,
)
from airflow_mlops.core.tags import HISTORY_TAG_PREFIX, TAG_ALIAS_MOVE
from airflow_mlops.exceptions import ModelRegistryError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

logger = logging.getLogger(__name__)


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


def alias_history_from_tags(tags: Mapping[str, str]) -> list[AliasEvent]:
    """The recorded alias moves in a registered model's tags, oldest first (tags not ours are skipped)."""
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
    events = alias_history_from_tags(getattr(model, "tags", None) or {})
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
MAX_MOVE_ATTEMPTS = 12
_MAX_LEDGER_NAME = 400


def _claim_name(name: str, seq: int) -> str:
    key = name if len(name) <= _MAX_LEDGER_NAME else hashlib.sha256(name.encode()).hexdigest()
    return f"{LEDGER_EXPERIMENT_PREFIX}{key}/{seq:06d}"


def next_seq(tags: Mapping[str, str]) -> int:
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
    except mlflow_exception() as err:
        if error_code(err) != "RESOURCE_ALREADY_EXISTS":
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
        except mlflow_exception() as err:
            last = err
        if done():
            return
        time.sleep(0.05 * (attempt + 1))
    raise ModelRegistryError(f"Could not {what}: {last}") from last


def point_alias(client: Any, name: str, alias: str, version: str) -> None:
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
    except mlflow_exception():
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
        seq = next_seq(tags)
        pending = _read_claim(client, name, seq)
        if pending is not None:
            payload, experiment = pending
            _drop_claim(client, experiment)  # first: a crash after it still leaves the claim readable
            _set_model_tag(client, name, _history_tag(seq), json.dumps(payload, sort_keys=True))
            continue
        events = alias_history_from_tags(tags)
        newest = next((e for e in reversed(events) if e.alias == alias), None)
        current = aliases_of(model).get(alias)
        if newest is None or current == newest.to_version:
            return model, events
        if current is not None and all(e.to_version != current for e in events if e.alias == alias):
            logger.warning(
                "Alias %r of model %r points at v%s, which its history never recorded; putting it back to v%s. "
                "Move aliases with MlflowSetModelAliasOperator (or core.aliases.set_alias) so the move is recorded.",
                alias,
                name,
                current,
                newest.to_version,
            )
        point_alias(client, name, alias, newest.to_version)
    raise ModelRegistryError(
        f"Alias {alias!r} of model {name!r} kept moving while it was being settled ({_SETTLE_LIMIT} reads); "
        "the task can be retried."
    )


def claim_move(
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
        at=now_iso(),
        reason=reason[:MAX_REASON],
        by=by,
    )
    payload = {k: v for k, v in event.to_dict().items() if k != "seq"}
    payload["claim"] = uuid.uuid4().hex
    if not _claim(client, name, seq, payload):
        return None
    settle(client, name, alias)
    return event


def backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))


def moving_error(name: str, alias: str, attempts: int) -> ModelRegistryError:
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

    def to_summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "action": self.action,
            "moved": self.moved,
            "reason": self.reason,
        }

    to_xcom = to_summary  # the name before 0.2: kept for callers' code


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
    for attempt in range(MAX_MOVE_ATTEMPTS):
        model, _ = settle(client, name, alias)
        current = aliases_of(model).get(alias)
        if current == version:
            return AliasMove(name, alias, version, current, kind, moved=False, reason=reason)
        seq = next_seq(getattr(model, "tags", None) or {})
        moved = claim_move(
            client, name, seq=seq, alias=alias, from_version=current, to_version=version, action=kind,
            reason=reason, by=by,
        )  # fmt: skip
        if moved is not None:
            return AliasMove(name, alias, version, current, kind, moved=True, reason=reason)
        backoff(attempt)
    raise moving_error(name, alias, MAX_MOVE_ATTEMPTS)


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
    for attempt in range(MAX_MOVE_ATTEMPTS):
        model, events = settle(client, name, alias)
        if alias not in aliases_of(model):
            require_alias_version(client, name, alias)  # raises ModelNotFound listing the aliases
        current = aliases_of(model)[alias]
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
        seq = next_seq(getattr(model, "tags", None) or {})
        moved = claim_move(
            client, name, seq=seq, alias=alias, from_version=current, to_version=target,
            action=AliasAction.ROLLBACK, reason=text, by=by,
        )  # fmt: skip
        if moved is not None:
            return AliasMove(
                name, alias, target, current, AliasAction.ROLLBACK.value, moved=True, reason=text
            )
        backoff(attempt)
    raise moving_error(name, alias, MAX_MOVE_ATTEMPTS)
