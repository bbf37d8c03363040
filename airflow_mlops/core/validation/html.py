"""The HTML report: :func:`render_html` and its CSS (a self-contained page, no scripts, no external assets)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from airflow_mlops.core.validation.values import short_value

if TYPE_CHECKING:
    from airflow_mlops.core.validation.results import ValidationResult

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2328;max-width:1200px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:6px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}
table.facts td:first-child{color:#57606a;width:180px}code{font-size:12px;background:#f6f8fa;padding:1px 4px;
border-radius:4px;word-break:break-all}tr.failed td:first-child{border-left:4px solid #cf222e}
tr.passed td:first-child{border-left:4px solid #1a7f37}.muted{color:#57606a}.err{color:#cf222e}
"""


def render_html(result: ValidationResult) -> str:
    """A compact self-contained page (no scripts, no external assets): works offline and in any viewer."""
    e = html.escape
    status = "passed" if result.success else "failed"
    badge = f'<span class="badge {"pass" if result.success else "fail"}">{status.upper()}</span>'
    facts = [
        ("Dataset", f"<code>{e(result.dataset_uri)}</code> ({e(result.dataset_format)})"),
        ("Suite", f"{e(result.suite_name)} <span class='muted'>({e(result.suite_source)})</span>"),
        ("Rows", f"{result.rows:,}"),
        ("Fingerprint", f"<code>{e(result.fingerprint)}</code>"),
        ("Columns read", e(", ".join(result.columns_read)) or "<span class='muted'>none</span>"),
        (
            "Expectations",
            f"{result.successful} of {result.evaluated} passed ({result.success_percent:g}%), "
            f"{result.unsuccessful} failed",
        ),
        (
            "Validated at",
            f"{e(result.validated_at)} in {result.elapsed_s:.2f} s, Great Expectations "
            f"{e(result.gx_version)}",
        ),
        *((e(k), e(str(v))) for k, v in result.labels.items()),
    ]
    rows = []
    ordered = sorted(result.outcomes, key=lambda o: (o.success, o.index))
    for o in ordered:
        cls = "passed" if o.success else "failed"
        unexpected = "" if o.unexpected_count is None else f"{o.unexpected_count:,}"
        if o.unexpected_percent is not None:
            unexpected += f" ({o.unexpected_percent:.3g}%)"
        details = []
        if o.exception:
            details.append(f"<span class='err'>error: {e(o.exception)}</span>")
        if o.observed_value is not None:
            details.append(f"observed: <code>{e(short_value(o.observed_value, 300))}</code>")
        if o.examples:
            details.append(
                "examples: " + ", ".join(f"<code>{e(short_value(x, 80))}</code>" for x in o.examples)
            )
        rows.append(
            f"<tr class='{cls}'><td>{'&#10003;' if o.success else '&#10007;'} {cls}</td>"
            f"<td><code>{e(o.type)}</code><br>{e(o.description)}</td>"
            f"<td>{e(o.column or '')}</td><td class='num'>{unexpected}</td><td>{'<br>'.join(details)}</td></tr>"
        )
    facts_html = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts)
    title = f"Validation {status}: {result.suite_name} on {result.dataset_uri}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{badge} {e(result.suite_name)}</h1><div class='muted'>{e(result.dataset_uri)}</div>"
        f"<h2>Summary</h2><table class='facts'>{facts_html}</table>"
        "<h2>Expectations</h2><table><tr><th>Status</th><th>Expectation</th><th>Column</th>"
        f"<th>Unexpected</th><th>Details</th></tr>{''.join(rows)}</table>"
        "</body></html>\n"
    )
