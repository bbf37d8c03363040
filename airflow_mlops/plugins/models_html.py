"""The Models view's HTML: rendered on the server, every value escaped, no inline script or style.

Names, reasons and URIs come from users and data: each goes through :func:`html.escape` (text and attributes)
or :func:`urllib.parse.quote` (paths). Links into the Airflow UI open in the top window (the view is framed by
the UI); links to MLflow and to reports open in a new tab. The drift plot is an inline SVG drawn here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_mlops.core.model_view import DriftPoint, ModelDetail, ModelRow

_ACTION_LABELS = {
    "promote": "promoted by the gate",
    "rollback": "rolled back",
    "set": "moved by hand (forced)",
    "rejected": "rejected by the gate",
}


def when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _link(href: str | None, text: str, *, top: bool = False, cls: str = "") -> str:
    if not href:
        return _e(text)
    target = 'target="_top"' if top else 'target="_blank" rel="noopener noreferrer"'
    klass = f' class="{_e(cls)}"' if cls else ""
    return f'<a{klass} href="{_e(href)}" {target}>{_e(text)}</a>'


def model_href(name: str) -> str:
    return f"/mlops/models/{quote(name, safe='')}"


def run_href(prefix: str, dag_id: str | None, run_id: str | None) -> str | None:
    if not dag_id or not run_id:
        return None
    return f"{prefix}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def asset_href(prefix: str, asset_id: Any) -> str:
    return f"{prefix}/assets/{quote(str(asset_id), safe='')}"


def report_href(uri: str | None) -> str | None:
    return f"/mlops/reports/view?{urlencode({'uri': uri})}" if uri else None


def mlflow_model_href(mlflow_ui: str | None, name: str, version: str | None = None) -> str | None:
    if not mlflow_ui:
        return None
    base = f"{mlflow_ui.rstrip('/')}/#/models/{quote(name, safe='')}"
    return f"{base}/versions/{quote(str(version), safe='')}" if version else base


def _page(title: str, body: str, *, user: str, elapsed: float, data: Mapping[str, str] | None = None) -> str:
    attrs = "".join(f' data-{_e(k)}="{_e(v)}"' for k, v in (data or {}).items())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} · airflow-mlops</title>"
        '<link rel="stylesheet" href="/mlops/static/models.css">'
        '<script src="/mlops/static/models.js" defer></script></head>'
        f'<body{attrs}><header><a href="/mlops/models" class="home">Models</a>'
        f'<span class="who">signed in as {_e(user)}</span></header><main>{body}</main>'
        f'<footer>airflow-mlops · rendered in <span id="render-ms">{elapsed * 1000:.0f}</span> ms</footer>'
        "</body></html>"
    )


def _state(states: Mapping[tuple[str, str], str], dag_id: str | None, run_id: str | None) -> str:
    state = states.get((dag_id or "", run_id or ""))
    return f' <span class="state state-{_e(state)}">{_e(state)}</span>' if state else ""


# ---------------------------------------------------------------- the list
def _gate_cell(row: ModelRow) -> str:
    gate = row.last_gate
    if not gate:
        return "—"
    decision = str(gate.get("decision", ""))
    return (
        f'<span class="decision decision-{_e(decision)}">{_e(decision)}</span> v{_e(gate.get("version"))}'
        f'<div class="sub">{_e(when(gate.get("at")))}</div>'
    )


def _drift_cell(row: ModelRow) -> str:
    drift = row.last_drift
    if not drift or drift.get("share") is None:
        return "—"
    flag = "drifted" if drift.get("drifted") else "ok"
    retrain = ' <span class="retrain-flag">retraining</span>' if drift.get("retrained") else ""
    return (
        f'<span class="share share-{flag}">{float(drift["share"]):.3f}</span>{retrain}'
        f'<div class="sub">v{_e(drift.get("version"))} · {_e(when(drift.get("at")))}</div>'
    )


def _training_cell(row: ModelRow, states: Mapping[tuple[str, str], str], prefix: str) -> str:
    training = row.last_training
    if not training:
        return "—"
    dag_id, run_id = training.get("dag_id"), training.get("airflow_run_id")
    text = f"v{training.get('version')}"
    return (
        _link(run_href(prefix, dag_id, run_id), text, top=True)
        + _state(states, dag_id, run_id)
        + f'<div class="sub">{_e(when(training.get("at")))}</div>'
    )


def _scoring_cell(
    events: Sequence[Mapping[str, Any]], states: Mapping[tuple[str, str], str], prefix: str
) -> str:
    if not events:
        return "—"
    newest = events[0]
    return (
        _link(run_href(prefix, newest["dag_id"], newest["run_id"]), f"v{newest['version']}", top=True)
        + _state(states, newest["dag_id"], newest["run_id"])
        + f'<div class="sub">{_e(newest.get("rows"))} rows · {_e(when(newest.get("at")))}</div>'
    )


def list_page(
    rows: Sequence[ModelRow],
    scoring: Mapping[str, Sequence[Mapping[str, Any]]],
    states: Mapping[tuple[str, str], str],
    *,
    ui_prefix: str,
    mlflow_ui: str | None,
    user: str,
    elapsed: float,
) -> str:
    from airflow_mlops.settings import get_settings

    settings = get_settings()
    champion, challenger = settings.champion_alias, settings.challenger_alias
    lines = []
    for row in rows:
        lines.append(
            f'<tr data-model="{_e(row.name)}">'
            f'<td class="name"><a class="model-link" href="{_e(model_href(row.name))}">{_e(row.name)}</a></td>'
            f'<td class="champion">{_e(row.aliases.get(champion, "—"))}</td>'
            f'<td class="challenger">{_e(row.aliases.get(challenger, "—"))}</td>'
            f'<td class="gate">{_gate_cell(row)}</td>'
            f'<td class="drift">{_drift_cell(row)}</td>'
            f'<td class="training">{_training_cell(row, states, ui_prefix)}</td>'
            f'<td class="scoring">{_scoring_cell(scoring.get(row.name) or [], states, ui_prefix)}</td>'
            f'<td class="links">{_link(mlflow_model_href(mlflow_ui, row.name), "MLflow")}'
            f"{' · ' + _e(row.owner_dag) if row.owner_dag else ''}</td></tr>"
        )
    empty = (
        '<p class="empty">No model managed by airflow-mlops is visible to you yet: models appear here once a '
        "DAG you may read registers a version (MlflowRegisterModelOperator).</p>"
    )
    table = (
        '<table id="models"><thead><tr><th>Model</th>'
        f"<th>{_e(champion)}</th><th>{_e(challenger)}</th><th>Last gate decision</th><th>Last drift share</th>"
        "<th>Last training</th><th>Last scoring</th><th>Links</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>"
    )
    body = f'<h1>Models</h1><p class="count">{len(rows)} model(s)</p>' + (table if rows else empty)
    return _page("Models", body, user=user, elapsed=elapsed)


# ---------------------------------------------------------------- the drift plot
_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 720, 240, 48, 16, 16, 36


def _axes(t0: float, t1: float, top: float, y: Any) -> list[str]:
    parts = [
        f'<line class="axis" x1="{_PAD_L}" y1="{_H - _PAD_B}" x2="{_W - _PAD_R}" y2="{_H - _PAD_B}"/>',
        f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_H - _PAD_B}"/>',
    ]
    for tick in (0.0, top / 2, top):
        parts.append(
            f'<text class="tick" x="{_PAD_L - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    parts.append(f'<text class="tick" x="{_PAD_L}" y="{_H - 10}">{_e(when(t0))}</text>')
    if t1 > t0:
        parts.append(
            f'<text class="tick" x="{_W - _PAD_R}" y="{_H - 10}" text-anchor="end">{_e(when(t1))}</text>'
        )
    return parts


def _threshold_line(threshold: float, ty: float) -> str:
    return (
        f'<line class="threshold" x1="{_PAD_L}" y1="{ty:.1f}" x2="{_W - _PAD_R}" y2="{ty:.1f}">'
        f"<title>threshold {threshold:g}</title></line>"
        f'<text class="threshold-label" x="{_W - _PAD_R}" y="{ty - 4:.1f}" text-anchor="end">'
        f"threshold {threshold:g}</text>"
    )


def _markers(points: Sequence[DriftPoint], coords: Sequence[tuple[float, float]]) -> list[str]:
    """Retraining lines first (under the dots), then one dot per check with its details as a tooltip."""
    parts = [
        f'<g class="retrain"><line x1="{cx:.1f}" y1="{_PAD_T}" x2="{cx:.1f}" y2="{_H - _PAD_B}"/>'
        f'<text x="{cx - 3 if cx > _W - 80 else cx + 3:.1f}" y="{_PAD_T + 10}" '
        f'text-anchor="{"end" if cx > _W - 80 else "start"}">retrain</text></g>'
        for point, (cx, _) in zip(points, coords, strict=True)
        if point.retrained
    ]
    for point, (cx, cy) in zip(points, coords, strict=True):
        klass = "check drifted" if point.drifted else "check"
        title = f"{when(point.at)}: share {point.share:.3f} on v{point.version}"
        if point.reason:
            title += f" — {point.reason}"
        parts.append(
            f'<circle class="{klass}" cx="{cx:.1f}" cy="{cy:.1f}" r="4" data-share="{point.share:.6f}">'
            f"<title>{_e(title)}</title></circle>"
        )
    return parts


def drift_plot(points: Sequence[DriftPoint], threshold: float | None) -> str:
    """An SVG of the drift share per check (x: time), the threshold line, retraining events marked."""
    if not points:
        return '<p id="drift-empty" class="empty">No drift check recorded for this model yet.</p>'
    times = [p.at or 0.0 for p in points]
    t0, t1 = min(times), max(times)
    highest = max(p.share for p in points)
    top = max(1.0 if highest > 0.5 else 0.5, highest, (threshold or 0.0) * 1.1)
    inner_w, inner_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x(index: int, at: float) -> float:
        if t1 > t0:
            return _PAD_L + inner_w * (at - t0) / (t1 - t0)
        return _PAD_L + inner_w * (index + 1) / (len(points) + 1)

    def y(share: float) -> float:
        return _PAD_T + inner_h * (1 - share / top)

    parts = [
        f'<svg id="drift-plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        'aria-label="drift share per check" xmlns="http://www.w3.org/2000/svg">',
        *_axes(t0, t1, top, y),
    ]
    if threshold is not None:
        parts.append(_threshold_line(threshold, y(threshold)))
    coords = [(x(i, p.at or 0.0), y(p.share)) for i, p in enumerate(points)]
    parts.append(f'<polyline class="trend" points="{" ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)}"/>')
    parts.extend(_markers(points, coords))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- one model
def _timeline(detail: ModelDetail) -> str:
    if not detail.timeline:
        return '<p class="empty">No alias move or gate decision recorded yet.</p>'
    items = []
    for event in detail.timeline:
        label = _ACTION_LABELS.get(event.action, event.action)
        if event.reason.startswith(("approved by ", "rejected by ", "no answer before the approval")):
            label = {
                "promote": "promoted after a human approval",
                "rejected": "rejected at the approval",
            }.get(event.action, label)
        if event.action == "rejected":
            head = f"v{_e(event.version)} {label}" + (
                f" (champion v{_e(event.from_version)})" if event.from_version else ""
            )
        else:
            origin = f"v{_e(event.from_version)} → " if event.from_version else ""
            head = f"{_e(event.alias)}: {origin}v{_e(event.version)} — {label}"
        by = f'<span class="by">by {_e(event.by)}</span>' if event.by else ""
        items.append(
            f'<li class="event event-{_e(event.action)}" data-action="{_e(event.action)}" '
            f'data-version="{_e(event.version)}" data-alias="{_e(event.alias)}">'
            f'<time>{_e(when(event.at))}</time> <span class="what">{head}</span>'
            f'<div class="reason">{_e(event.reason)}</div>{by}</li>'
        )
    return f'<ol id="timeline">{"".join(items)}</ol>'


def _versions(
    detail: ModelDetail, states: Mapping[tuple[str, str], str], prefix: str, mlflow_ui: str | None
) -> str:
    metrics = detail.gate_metrics
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    lines = []
    for v in detail.versions:
        cells = "".join(
            f'<td class="metric" data-metric="{_e(m)}">{v.metrics[m]:.4g}</td>'
            if m in v.metrics
            else "<td>—</td>"
            for m in metrics
        )
        decision = (
            f'<span class="decision decision-{_e(v.gate_decision)}" title="{_e("; ".join(v.gate_reasons))}">'
            f"{_e(v.gate_decision)}</span>"
            if v.gate_decision
            else "—"
        )
        training = _link(run_href(prefix, v.dag_id, v.airflow_run_id), "Airflow run", top=True) + _state(
            states, v.dag_id, v.airflow_run_id
        )
        lines.append(
            f'<tr data-version="{_e(v.version)}"><td>v{_e(v.version)}</td>'
            f'<td class="aliases">{_e(", ".join(v.aliases))}</td><td>{_e(when(v.created_at))}</td>'
            f"<td>{decision}</td><td>{'v' + _e(v.gate_compared_to) if v.gate_compared_to else '—'}</td>{cells}"
            f"<td>{_link(report_href(v.validation_report_uri), 'validation report') if v.validation_report_uri else '—'}</td>"
            f"<td>{training if v.dag_id else '—'} · {_link(mlflow_model_href(mlflow_ui, detail.name, v.version), 'MLflow')}</td></tr>"
        )
    return (
        '<table id="versions"><thead><tr><th>Version</th><th>Aliases</th><th>Registered</th><th>Gate</th>'
        f"<th>Compared to</th>{head}<th>Data</th><th>Training</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def _drift_table(points: Sequence[DriftPoint]) -> str:
    if not points:
        return ""
    lines = [
        f'<tr data-run="{_e(p.run_id)}"><td>{_e(when(p.at))}</td><td>v{_e(p.version)}</td>'
        f"<td>{p.share:.3f}</td><td>{'' if p.threshold is None else f'{p.threshold:g}'}</td>"
        f"<td>{_e(p.reason)}</td><td>{_link(report_href(p.report_uri), 'drift report') if p.report_uri else '—'}</td></tr>"
        for p in reversed(points)
    ]
    return (
        '<details><summary>Drift checks</summary><table id="drift-checks"><thead><tr><th>At</th><th>Version</th>'
        "<th>Share</th><th>Threshold</th><th>Decision</th><th>Report</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table></details>"
    )


def _scoring(events: Sequence[Mapping[str, Any]], states: Mapping[tuple[str, str], str], prefix: str) -> str:
    if not events:
        return '<p class="empty">No predictions published for this model yet.</p>'
    lines = [
        f"<tr><td>{_e(when(e.get('at')))}</td><td>v{_e(e['version'])}</td><td>{_e(e.get('rows'))}</td>"
        f'<td class="uri">{_link(asset_href(prefix, e["asset_id"]), e["manifest_uri"], top=True)}</td>'
        f"<td>{_link(run_href(prefix, e['dag_id'], e['run_id']), 'Airflow run', top=True)}"
        f"{_state(states, e['dag_id'], e['run_id'])}</td></tr>"
        for e in events[:50]
    ]
    return (
        '<table id="scoring"><thead><tr><th>At</th><th>Version</th><th>Rows</th><th>Predictions manifest</th>'
        f"<th>Run</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def _actions(detail: ModelDetail, can_edit: bool, champion: str) -> str:
    if not can_edit:
        owner = f" on the DAG {_e(detail.owner_dag)}" if detail.owner_dag else ""
        return (
            f'<section id="actions" class="readonly"><p>You may read this model; moving the {_e(champion)} '
            f"alias needs edit rights{owner}.</p></section>"
        )
    options = "".join(f'<option value="{_e(v.version)}">v{_e(v.version)}</option>' for v in detail.versions)
    return (
        f'<section id="actions"><h2>Actions</h2><div class="action"><label>Reason (optional) '
        f'<input id="rollback-reason" maxlength="500" placeholder="why roll back"></label> '
        f'<button id="rollback" type="button">Roll back {_e(champion)} one step</button></div>'
        f'<form id="promote" class="action"><label>Version <select name="version">{options}</select></label> '
        '<label>Reason (required) <input name="reason" required maxlength="500" placeholder="why this version"></label> '
        f'<button type="submit">Promote to {_e(champion)}</button></form>'
        '<div id="action-result" role="status"></div></section>'
    )


def _summary(detail: ModelDetail, champion: str, challenger: str, mlflow_ui: str | None) -> str:
    aliases = ", ".join(f"{a} → v{v}" for a, v in sorted(detail.aliases.items())) or "none"
    return (
        f'<dl class="summary"><dt>{_e(champion)}</dt><dd id="champion">{_e(detail.aliases.get(champion, "—"))}</dd>'
        f'<dt>{_e(challenger)}</dt><dd id="challenger">{_e(detail.aliases.get(challenger, "—"))}</dd>'
        f"<dt>Aliases</dt><dd>{_e(aliases)}</dd><dt>Owner DAG</dt><dd>{_e(detail.owner_dag or '—')}</dd>"
        f"<dt>Versions</dt><dd>{len(detail.versions)}</dd>"
        f"<dt>MLflow</dt><dd>{_link(mlflow_model_href(mlflow_ui, detail.name), 'model page')}</dd></dl>"
    )


def model_page(
    detail: ModelDetail,
    scoring: Sequence[Mapping[str, Any]],
    states: Mapping[tuple[str, str], str],
    *,
    can_edit: bool,
    ui_prefix: str,
    mlflow_ui: str | None,
    user: str,
    elapsed: float,
) -> str:
    from airflow_mlops.settings import get_settings

    settings = get_settings()
    champion = settings.champion_alias
    body = (
        f"<h1>{_e(detail.name)}</h1>"
        + (f'<p class="description">{_e(detail.description)}</p>' if detail.description else "")
        + _summary(detail, champion, settings.challenger_alias, mlflow_ui)
        + _actions(detail, can_edit, champion)
        + "<h2>Timeline</h2>"
        + _timeline(detail)
        + "<h2>Drift share per check</h2>"
        + drift_plot(detail.drift, detail.drift_threshold)
        + _drift_table(detail.drift)
        + "<h2>Versions and gate metrics</h2>"
        + _versions(detail, states, ui_prefix, mlflow_ui)
        + "<h2>Predictions</h2>"
        + _scoring(scoring, states, ui_prefix)
    )
    data = {"model": detail.name, "request-id": uuid.uuid4().hex, "champion-alias": champion}
    return _page(detail.name, body, user=user, elapsed=elapsed, data=data)
