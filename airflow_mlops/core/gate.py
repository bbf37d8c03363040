"""The champion/challenger gate: rules, their evaluation, and :func:`promote_if_better`.

A gate rule compares one metric of the candidate's training run with the champion's (``min_delta``) or with a
floor/ceiling (``min``/``max``). The gate points the challenger alias at the candidate, moves the champion alias
only when every rule passes (through :mod:`airflow_mlops.core.aliases`, so the move is recorded and safe under
concurrency), and records the decision on the version in ``mlops.gate.*`` tags. Framework-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from airflow_mlops.core.aliases import (
    MAX_MOVE_ATTEMPTS,
    AliasAction,
    AliasEvent,
    backoff,
    claim_move,
    moving_error,
    next_seq,
    point_alias,
    previous_version,
    settle,
)
from airflow_mlops.core.registry import (
    aliases_of,
    check_alias,
    check_model_name,
    check_version,
    get_alias_version,
    get_model_version,
    get_registered_model,
    get_run,
    listed,
    now_iso,
)
from airflow_mlops.core.tags import (
    TAG_GATE_APPROVAL,
    TAG_GATE_AT,
    TAG_GATE_BY,
    TAG_GATE_CHAMPION,
    TAG_GATE_DECISION,
    TAG_GATE_LAST,
    TAG_GATE_REASONS,
    TAG_GATE_RULES,
)
from airflow_mlops.exceptions import GateRuleError, MlopsConfigError, ModelRegistryError

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


# ---------------------------------------------------------------- the gate
class GateDecision(StrEnum):
    PROMOTED = "promoted"
    REJECTED = "rejected"
    #: The rules passed and the gate requires a human approval before the champion moves.
    AWAITING_APPROVAL = "awaiting_approval"


@dataclass(frozen=True)
class Approval:
    """
    A human's answer to an approval gate. ``approver`` is empty when nobody answered in time (a rejection).

    The champion moves on an approval only if the candidate still passes the rules against the champion of the
    moment: the champion may have changed while the request waited.
    """

    approved: bool
    approver: str = ""
    reason: str = ""
    at: str = ""  # when it was answered (ISO); empty: now

    def describe(self) -> str:
        why = self.reason.strip() or "no reason given"
        if not self.approver:
            return f"no answer before the approval timed out: rejected ({why})"
        return f"{'approved' if self.approved else 'rejected'} by {self.approver}: {why}"

    def same_answer(self, other: Approval) -> bool:
        return (self.approved, self.approver, self.reason) == (other.approved, other.approver, other.reason)

    def to_json(self, by: str) -> str:
        return json.dumps(
            {
                "approved": self.approved,
                "approver": self.approver,
                "reason": self.reason,
                "at": self.at or now_iso(),
                "by": by,
            },
            sort_keys=True,
        )

    @classmethod
    def recorded(cls, tags: Mapping[str, str], by: str) -> Approval | None:
        """The answer an earlier try of the task ``by`` recorded on the version (a retry replays it)."""
        try:
            data = json.loads(tags.get(TAG_GATE_APPROVAL) or "null")
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("by") != by:
            return None
        return cls(
            bool(data.get("approved")),
            str(data.get("approver") or ""),
            str(data.get("reason") or ""),
            str(data.get("at") or ""),
        )


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

    def to_summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "decision": self.decision.value,
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "previous_champion_version": self.previous_champion_version,
            "reasons": list(self.reasons),
        }

    to_xcom = to_summary  # the name before 0.2: kept for callers' code


def _run_metrics(client: Any, name: str, mv: Any) -> dict[str, float]:
    if not mv.run_id:
        raise ModelRegistryError(
            f"Version {mv.version} of model {name!r} has no source run, so the gate has no metrics to read. "
            "Register versions from a training run."
        )
    return dict(get_run(client, mv.run_id).data.metrics)


def _run_task(client: Any, name: str, mv: Any) -> str:
    """The task (classification/regression) the trainer recorded on the version's run."""
    from airflow_mlops.core.tags import TAG_TASK

    task = (get_run(client, mv.run_id).data.tags or {}).get(TAG_TASK) if mv.run_id else None
    if task not in _DEFAULT_GATES:
        raise GateRuleError(
            f"{name!r} v{mv.version}: the default gate needs the model's task, but its run records none "
            f"(tag {TAG_TASK!r}); give the gate rules explicitly."
        )
    return str(task)


def promote_if_better(  # noqa: C901 - the gate's checks then its compare-and-move loop; splitting hides the retry contract
    client: Any,
    name: str,
    version: Any,
    rules: Any,
    *,
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
    by: str = "",
    max_attempts: int = MAX_MOVE_ATTEMPTS,
    require_approval: bool = False,
    approval: Approval | None = None,
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

    ``require_approval``: a candidate that passes the rules is not promoted but recorded as
    ``awaiting_approval``; call again with the human's ``approval`` to decide. An approval re-judges the rules
    against the champion of that moment and moves it (the history names the approver and the reason); a
    rejection (or a timeout) records the reason and keeps the champion.
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
                f"{listed(metrics)} (a classifier without predict_proba logs no roc_auc). Give the gate rules "
                "explicitly, e.g. [{'metric': 'val_accuracy', 'min_delta': 0.0}, {'metric': 'val_accuracy', "
                "'min': 0.7}]."
            )
    missing = missing_metrics(parsed, metrics)
    if missing:
        raise GateRuleError(
            f"The gate needs metrics {missing} but the run {mv.run_id} of {name!r} v{version} has "
            f"{listed(metrics)}. Fix the rule's metric name or log the metric in training."
        )

    if approval is not None and not approval.approved:
        return _record_rejection(
            client, name, version, parsed, approval, champion_alias, challenger_alias, by
        )
    for attempt in range(max(1, max_attempts)):
        model, events = settle(client, name, champion_alias)
        aliases = aliases_of(model)
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
        if passed and require_approval and approval is None:
            decision = GateDecision.AWAITING_APPROVAL
            reasons.append(f"the rules passed: waiting for a human approval before {champion_alias!r} moves")
            if TAG_GATE_APPROVAL in (
                getattr(mv, "tags", None) or {}
            ):  # the gate asks anew: forget an old answer
                client.delete_model_version_tag(name, version, TAG_GATE_APPROVAL)
        if approval is not None:
            reasons.insert(0, approval.describe())
        if aliases.get(challenger_alias) != version:
            point_alias(client, name, challenger_alias, version)
        _record_decision(client, name, version, decision, reasons, parsed, champion, by, approval)
        if decision is not GateDecision.PROMOTED:
            return GateResult(
                name, version, decision, champion, champion, reasons, champion_alias, challenger_alias
            )
        passed_reason = "; ".join(r for r in reasons if r.endswith("pass")) or "passed the gate"
        if approval is not None:
            passed_reason = f"{approval.describe()}; {passed_reason}"
        moved = _promote(client, name, model, champion_alias, champion, version, passed_reason, by)
        if moved is None:  # another task moved the champion meanwhile: judge again against the new one
            backoff(attempt)
            continue
        return GateResult(
            name, version, decision, version, champion, reasons, champion_alias, challenger_alias
        )
    raise moving_error(name, champion_alias, max(1, max_attempts))


def _promote(
    client: Any,
    name: str,
    model: Any,
    alias: str,
    from_version: str | None,
    version: str,
    reason: str,
    by: str,
) -> AliasEvent | None:
    """Claim the next history slot for moving ``alias`` to ``version``; None when another mover took it."""
    seq = next_seq(getattr(model, "tags", None) or {})
    return claim_move(
        client,
        name,
        seq=seq,
        alias=alias,
        from_version=from_version,
        to_version=version,
        action=AliasAction.PROMOTE,
        reason=reason,
        by=by,
    )


def _record_decision(
    client: Any,
    name: str,
    version: str,
    decision: GateDecision,
    reasons: list[str],
    rules: Sequence[GateRule],
    champion: str | None,
    by: str,
    approval: Approval | None = None,
) -> None:
    tags: dict[str, str] = {}
    if approval is not None:  # first: a worker that dies after it replays the answer instead of losing it
        tags[TAG_GATE_APPROVAL] = approval.to_json(by)
    tags |= {
        TAG_GATE_DECISION: decision.value,
        TAG_GATE_REASONS: json.dumps(reasons),
        TAG_GATE_RULES: json.dumps([r.to_dict() for r in rules], sort_keys=True),
        TAG_GATE_CHAMPION: champion or "",
        TAG_GATE_AT: now_iso(),
        TAG_GATE_BY: by,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    _record_last(client, name, version, decision, reasons, champion, tags[TAG_GATE_AT])


def _record_last(
    client: Any,
    name: str,
    version: str,
    decision: GateDecision,
    reasons: Sequence[str],
    champion: str | None,
    at: str,
) -> None:
    """The newest decision as a registered-model tag, for the Models view (reasons cut to fit a tag)."""
    last = {
        "version": version,
        "decision": decision.value,
        "at": at,
        "compared_to": champion or "",
        "reasons": [r[:300] for r in reasons[:5]],
    }
    client.set_registered_model_tag(name, TAG_GATE_LAST, json.dumps(last, sort_keys=True))


def _record_rejection(
    client: Any,
    name: str,
    version: str,
    rules: Sequence[GateRule],
    approval: Approval,
    champion_alias: str,
    challenger_alias: str,
    by: str,
) -> GateResult:
    """A human rejected the candidate (or nobody answered): record why, once; the champion stays."""
    champion = get_alias_version(client, name, champion_alias)
    tags = dict(getattr(get_model_version(client, name, version), "tags", None) or {})
    recorded = Approval.recorded(tags, by)
    replayed = recorded is not None and recorded.same_answer(approval)
    if replayed and tags.get(TAG_GATE_DECISION) == GateDecision.REJECTED.value:  # a retry: already recorded
        try:
            reasons = [str(r) for r in json.loads(tags.get(TAG_GATE_REASONS) or "[]")]
        except json.JSONDecodeError:
            reasons = [approval.describe()]
        return GateResult(
            name,
            version,
            GateDecision.REJECTED,
            champion,
            champion,
            reasons,
            champion_alias,
            challenger_alias,
        )
    if champion == version:  # promoted by another path meanwhile: a rejection does not demote
        reasons = [
            approval.describe(),
            f"v{version} is already the {champion_alias!r} version: nothing to move",
        ]
        return GateResult(
            name, version, GateDecision.PROMOTED, version, None, reasons, champion_alias, challenger_alias
        )
    reasons = [approval.describe(), f"{champion_alias!r} stays v{champion}" if champion else "no champion"]
    _record_decision(client, name, version, GateDecision.REJECTED, reasons, rules, champion, by, approval)
    return GateResult(
        name, version, GateDecision.REJECTED, champion, champion, reasons, champion_alias, challenger_alias
    )


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
        _promote(
            client, name, model, champion_alias, None, version, "already the champion when the gate ran", by
        )
    if get_alias_version(client, name, challenger_alias) != version:
        point_alias(client, name, challenger_alias, version)
    reasons = [f"v{version} is already the {champion_alias!r} version: nothing to move"]
    mv = client.get_model_version(name, version)
    if (getattr(mv, "tags", None) or {}).get(TAG_GATE_DECISION) != GateDecision.PROMOTED.value:
        client.set_model_version_tag(name, version, TAG_GATE_DECISION, GateDecision.PROMOTED.value)
        client.set_model_version_tag(name, version, TAG_GATE_REASONS, json.dumps(reasons))
        _record_last(client, name, version, GateDecision.PROMOTED, reasons, version, now_iso())
    return GateResult(
        name, version, GateDecision.PROMOTED, version, previous, reasons, champion_alias, challenger_alias
    )
