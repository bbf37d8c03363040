"""What the Models view shows, read from the MLflow registry and runs the provider writes. Framework-free.

* :func:`list_models`: one row per managed model (:class:`ModelRow`) from **one** ``search_registered_models``
  call: aliases, the owner DAG (``mlops.airflow.dag_id``), the newest gate decision (``mlops.gate.last``), the
  newest training (``mlops.training.last``) and the newest drift check (``mlops.drift.state``). Models written
  before those summary tags existed fall back to the alias history, or show nothing for that column.
* :func:`model_detail`: one model (:class:`ModelDetail`): the timeline of alias moves (``mlops.history.*``)
  merged with the gate's rejections (``mlops.gate.*`` version tags), the drift trend (one MLflow run per check,
  ``drift_share`` metric, threshold and policy decision as tags), each version's gate metrics from its training
  run, and the report URIs. A handful of registry and tracking calls whatever the number of versions.

A model is *managed* when the provider wrote any ``mlops.*`` tag on it (history, summaries, drift state) or on
one of its versions' registrations (``mlops.training.last``); other registered models are not listed.
Scoring runs and DAG-run states come from Airflow, not from here (:mod:`airflow_mlops.plugins.models_view`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.aliases import AliasEvent, alias_history_from_tags
from airflow_mlops.core.registry import get_registered_model, list_versions
from airflow_mlops.core.tags import (
    TAG_DAG_ID,
    TAG_DRIFT_DECISION,
    TAG_DRIFT_MODEL,
    TAG_DRIFT_REPORT_URI,
    TAG_DRIFT_STATE,
    TAG_DRIFT_THRESHOLD,
    TAG_DRIFT_VERSION,
    TAG_GATE_AT,
    TAG_GATE_BY,
    TAG_GATE_CHAMPION,
    TAG_GATE_DECISION,
    TAG_GATE_LAST,
    TAG_GATE_REASONS,
    TAG_GATE_RULES,
    TAG_PREFIX,
    TAG_RUN_ID,
    TAG_TI_KEY,
    TAG_TRAINING_LAST,
    TAG_VALIDATION_REPORT,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

#: Most drift checks drawn on a model page (the newest).
MAX_DRIFT_POINTS = 500
_PAGE = 1000  # registry and tracking page size


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch from an ISO text, epoch seconds or epoch milliseconds; None when unknown."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number / 1000.0 if number > 1e11 else number
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        try:
            return to_epoch(float(str(value)))
        except ValueError:
            return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # a hand-edited tag: shown as unknown rather than failing the page


def _float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def is_managed(tags: Mapping[str, str]) -> bool:
    return any(key.startswith(TAG_PREFIX) for key in tags)


# ---------------------------------------------------------------- the list
@dataclass(frozen=True)
class ModelRow:
    """One model on the list page (every field small and JSON-ready)."""

    name: str
    aliases: dict[str, str]
    owner_dag: str | None
    last_gate: dict[str, Any] | None
    last_training: dict[str, Any] | None
    last_drift: dict[str, Any] | None
    updated_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_gate(tags: Mapping[str, str], events: Sequence[AliasEvent]) -> dict[str, Any] | None:
    last = _json(tags.get(TAG_GATE_LAST))
    if isinstance(last, dict):
        return {**last, "at": to_epoch(last.get("at"))}
    promotions = [e for e in events if e.action == "promote"]
    if not promotions:
        return None
    newest = promotions[-1]
    return {"version": newest.to_version, "decision": "promoted", "at": to_epoch(newest.at), "reasons": []}


def _last_drift(tags: Mapping[str, str]) -> dict[str, Any] | None:
    state = _json(tags.get(TAG_DRIFT_STATE))
    history = state.get("history") if isinstance(state, dict) else None
    if not history or not isinstance(history, list) or not isinstance(history[-1], dict):
        return None
    newest = history[-1]
    return {
        "share": _float(newest.get("share")),
        "drifted": bool(newest.get("drifted")),
        "confirmed": bool(newest.get("confirmed")),
        "retrained": bool(newest.get("emit")),
        "version": str(newest.get("version", "")),
        "at": _float(newest.get("at")),
        "report_uri": str(newest.get("report_uri", "")),
    }


def model_row(model: Any) -> ModelRow:
    """The list row of a registered model, from the model object alone (no further calls)."""
    tags: dict[str, str] = dict(getattr(model, "tags", None) or {})
    events = alias_history_from_tags(tags)
    recorded = _json(tags.get(TAG_TRAINING_LAST))
    training = {**recorded, "at": to_epoch(recorded.get("at"))} if isinstance(recorded, dict) else None
    return ModelRow(
        name=str(model.name),
        aliases={str(k): str(v) for k, v in (getattr(model, "aliases", None) or {}).items()},
        owner_dag=tags.get(TAG_DAG_ID) or (training or {}).get("dag_id") or None,
        last_gate=_last_gate(tags, events),
        last_training=training,
        last_drift=_last_drift(tags),
        updated_at=to_epoch(getattr(model, "last_updated_timestamp", None)),
    )


def list_models(client: Any, *, limit: int = 10_000) -> list[ModelRow]:
    """Every managed registered model, by name (registry pages of 1000)."""
    rows: list[ModelRow] = []
    token: str | None = None
    while True:
        page = client.search_registered_models(max_results=_PAGE, page_token=token, order_by=["name ASC"])
        for model in page:
            if is_managed(dict(getattr(model, "tags", None) or {})):
                rows.append(model_row(model))
        token = getattr(page, "token", None)
        if not token or len(rows) >= limit:
            return rows[:limit]


# ---------------------------------------------------------------- one model
@dataclass(frozen=True)
class TimelineEvent:
    """One entry of a model's timeline: an alias move or a gate rejection, newest first on the page."""

    at: float | None
    action: str  # promote | rollback | set | rejected
    alias: str
    version: str
    from_version: str | None
    reason: str
    by: str
    seq: int | None = None


@dataclass(frozen=True)
class DriftPoint:
    at: float | None
    share: float
    version: str
    drifted: bool
    threshold: float | None
    retrained: bool
    confirmed: bool
    reason: str
    report_uri: str
    run_id: str


@dataclass(frozen=True)
class VersionRow:
    version: str
    created_at: float | None
    aliases: list[str]
    run_id: str
    dag_id: str
    airflow_run_id: str
    gate_decision: str
    gate_reasons: list[str]
    gate_compared_to: str
    metrics: dict[str, float]
    validation_report_uri: str


@dataclass(frozen=True)
class ModelDetail:
    name: str
    aliases: dict[str, str]
    owner_dag: str | None
    description: str
    timeline: list[TimelineEvent]
    drift: list[DriftPoint]
    drift_threshold: float | None
    versions: list[VersionRow]  # newest first
    gate_metrics: list[str]  # the metric columns to show side by side
    row: ModelRow = field(repr=False, default=None)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("row", None)
        data["summary"] = self.row.to_dict() if self.row is not None else None
        return data


def _all_versions(client: Any, name: str) -> list[Any]:
    return sorted(list_versions(client, name), key=lambda mv: int(mv.version), reverse=True)


def _experiment_ids(client: Any) -> list[str]:
    """Active experiments (drift history runs live in the training runs' experiments or ``mlops-drift``)."""
    ids: list[str] = []
    token: str | None = None
    while True:
        page = client.search_experiments(max_results=_PAGE, page_token=token)
        ids.extend(str(e.experiment_id) for e in page)
        token = getattr(page, "token", None)
        if not token:
            return ids


def _search_runs(client: Any, experiment_ids: Sequence[str], flt: str, limit: int) -> list[Any]:
    if not experiment_ids:
        return []
    runs: list[Any] = []
    token: str | None = None
    while len(runs) < limit:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=flt,
            max_results=min(_PAGE, limit - len(runs)),
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return runs


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _runs_by_id(client: Any, experiment_ids: Sequence[str], run_ids: Iterable[str]) -> dict[str, Any]:
    wanted = sorted({r for r in run_ids if r})
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), 100):  # keep each filter string short
        chunk = wanted[start : start + 100]
        flt = f"attributes.run_id IN ({', '.join(_quote(r) for r in chunk)})"
        for run in _search_runs(client, experiment_ids, flt, len(chunk)):
            found[str(run.info.run_id)] = run
    return found


def _rejections(versions: Sequence[Any]) -> list[TimelineEvent]:
    out = []
    for mv in versions:
        tags = dict(getattr(mv, "tags", None) or {})
        if tags.get(TAG_GATE_DECISION) != "rejected":
            continue
        reasons = _json(tags.get(TAG_GATE_REASONS))
        failed = [str(r) for r in reasons if str(r).endswith("fail")] if isinstance(reasons, list) else []
        out.append(
            TimelineEvent(
                at=to_epoch(tags.get(TAG_GATE_AT)),
                action="rejected",
                alias="",
                version=str(mv.version),
                from_version=tags.get(TAG_GATE_CHAMPION) or None,
                reason="; ".join(failed or [str(r) for r in reasons or []])[:1000],
                by=tags.get(TAG_GATE_BY, ""),
            )
        )
    return out


def timeline(events: Sequence[AliasEvent], versions: Sequence[Any]) -> list[TimelineEvent]:
    """Alias moves and gate rejections, newest first (moves keep their recorded order among themselves)."""
    moves = [
        TimelineEvent(
            at=to_epoch(e.at),
            action=e.action,
            alias=e.alias,
            version=e.to_version,
            from_version=e.from_version,
            reason=e.reason,
            by=e.by,
            seq=e.seq,
        )  # fmt: skip
        for e in events
    ]
    merged = moves + _rejections(versions)
    # seq breaks ties between moves recorded in the same second; rejections sort after a move at the same time
    merged.sort(key=lambda t: (t.at or 0.0, t.seq if t.seq is not None else -1), reverse=True)
    return merged


def _decision_of(run: Any, state_records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    tags = run.data.tags
    decision = _json(tags.get(TAG_DRIFT_DECISION))
    if isinstance(decision, dict):
        return decision
    record = state_records.get(tags.get(TAG_TI_KEY, ""))  # checks logged before the decision tag existed
    if record:
        return {key: record.get(key) for key in ("drifted", "emit", "confirmed", "reason")}
    return {}


def _over(share: float, threshold: float | None) -> bool:
    """The drift engine's rule (drifted share at or over the threshold), for checks with no verdict tag."""
    return threshold is not None and share >= threshold


def drift_trend(
    client: Any, experiment_ids: Sequence[str], name: str, state: Mapping[str, Any] | None
) -> list[DriftPoint]:
    """The drift share of each check of ``name``, oldest first (the newest :data:`MAX_DRIFT_POINTS`)."""
    runs = _search_runs(
        client, experiment_ids, f"tags.`{TAG_DRIFT_MODEL}` = {_quote(name)}", MAX_DRIFT_POINTS
    )
    history = (state or {}).get("history") or []
    records = {str(h.get("key")): h for h in history if isinstance(h, dict)}
    points = []
    for run in runs:
        share = _float(run.data.metrics.get("drift_share"))
        if share is None:
            continue  # a check that failed before logging its share
        tags = run.data.tags
        decision = _decision_of(run, records)
        threshold = _float(tags.get(TAG_DRIFT_THRESHOLD))
        points.append(
            DriftPoint(
                at=to_epoch(run.info.start_time),
                share=share,
                version=str(tags.get(TAG_DRIFT_VERSION, "")),
                drifted=bool(decision["drifted"]) if "drifted" in decision else _over(share, threshold),
                threshold=threshold,
                retrained=bool(decision.get("emit")),
                confirmed=bool(decision.get("confirmed")),
                reason=str(decision.get("reason") or ""),
                report_uri=str(tags.get(TAG_DRIFT_REPORT_URI, "")),
                run_id=str(run.info.run_id),
            )
        )
    points.sort(key=lambda p: p.at or 0.0)
    return points


def _gate_metric_names(versions: Sequence[Any]) -> list[str]:
    """The metrics the newest gate decision compared (its rules), else none."""
    for mv in versions:
        rules = _json((getattr(mv, "tags", None) or {}).get(TAG_GATE_RULES))
        if isinstance(rules, list) and rules:
            names = [str(r["metric"]) for r in rules if isinstance(r, dict) and r.get("metric")]
            return list(dict.fromkeys(names))  # a metric under two rules (min_delta and min) is one column
    return []


def _version_row(mv: Any, aliases: Mapping[str, str], run: Any) -> VersionRow:
    tags = dict(getattr(mv, "tags", None) or {})
    reasons = _json(tags.get(TAG_GATE_REASONS))
    metrics = {str(k): float(v) for k, v in (run.data.metrics.items() if run is not None else ())}
    return VersionRow(
        version=str(mv.version),
        created_at=to_epoch(getattr(mv, "creation_timestamp", None)),
        aliases=sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        run_id=str(mv.run_id or ""),
        dag_id=tags.get(TAG_DAG_ID, ""),
        airflow_run_id=tags.get(TAG_RUN_ID, ""),
        gate_decision=tags.get(TAG_GATE_DECISION, ""),
        gate_reasons=[str(r) for r in reasons] if isinstance(reasons, list) else [],
        gate_compared_to=tags.get(TAG_GATE_CHAMPION, ""),
        metrics=metrics,
        validation_report_uri=tags.get(TAG_VALIDATION_REPORT, ""),
    )


def model_detail(client: Any, name: str) -> ModelDetail:
    """Everything the model page shows; ModelNotFound (naming similar models) for an unknown name."""
    model = get_registered_model(client, name)
    row = model_row(model)
    tags = dict(getattr(model, "tags", None) or {})
    versions = _all_versions(client, name)
    experiments = _experiment_ids(client)
    runs = _runs_by_id(client, experiments, (mv.run_id for mv in versions))
    state = _json(tags.get(TAG_DRIFT_STATE))
    drift = drift_trend(client, experiments, name, state if isinstance(state, dict) else None)
    thresholds = [p.threshold for p in drift if p.threshold is not None]
    names = _gate_metric_names(versions)
    rows = [_version_row(mv, row.aliases, runs.get(str(mv.run_id))) for mv in versions]
    if not names:  # no gate ran yet: the validation metrics the trainer logged
        names = sorted({m for r in rows for m in r.metrics if m.startswith("val_")})[:6]
    return ModelDetail(
        name=row.name,
        aliases=row.aliases,
        owner_dag=row.owner_dag or next((r.dag_id for r in rows if r.dag_id), None),
        description=str(getattr(model, "description", "") or ""),
        timeline=timeline(alias_history_from_tags(tags), versions),
        drift=drift,
        drift_threshold=thresholds[-1] if thresholds else None,
        versions=rows,
        gate_metrics=names,
        row=row,
    )
