"""The drift check: :func:`detect_drift`, the Evidently run, the default tests and the report's HTML defusing.

:func:`detect_drift` plans the columns, samples both sides, pins each column's test to the one Evidently
would pick on the *full* data (:func:`default_method`), runs the ``Report``, writes the reports atomically
and decides.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.data import DatasetRef, column_names, resolve_dataset
from airflow_mlops.core.drift.columns import kind_of, plan_columns
from airflow_mlops.core.drift.results import (
    CATEGORICAL,
    DEFAULT_DRIFT_SHARE,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    EVIDENTLY_LARGE_REFERENCE,
    HTML_NAME,
    JSON_NAME,
    MIN_SAMPLE_SIZE,
    NUMERICAL,
    RESULT_NAME,
    ColumnDrift,
    DriftResult,
)
from airflow_mlops.core.drift.sampling import check_finite, check_not_all_null, load_sample, to_frame
from airflow_mlops.core.storage import atomic_local_path, check_uri, join_uri, write_json
from airflow_mlops.exceptions import (
    DriftDetectionError,
    EmptyDatasetError,
    MlopsConfigError,
    SchemaMismatch,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

log = logging.getLogger(__name__)

_P_VALUE_METHODS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "anderson",
        "cramer_von_mises",
        "mannw",
        "t_test",
        "fisher_exact",
        "g_test",
        "epps_singleton",
        "empirical_mmd",
    }
)
_MAX_UNSEEN_LISTED = 10


def default_method(kind: str, reference_rows: int, n_unique: int) -> str:
    """The test Evidently 0.7 picks by default for a column, given the *full* reference row count."""
    large = reference_rows > EVIDENTLY_LARGE_REFERENCE
    if kind == NUMERICAL:
        if n_unique <= 5:
            if large:
                return "jensenshannon"
            return "chisquare" if n_unique > 2 else "z"
        return "wasserstein" if large else "ks"
    if large:
        return "jensenshannon"
    return "chisquare" if n_unique > 2 else "z"


def _unseen(ref: pd.Series, cur: pd.Series) -> tuple[str, ...]:
    seen = set(ref.dropna().unique())
    new = [v for v in cur.dropna().unique() if v not in seen]
    return tuple(sorted(str(v) for v in new)[:_MAX_UNSEEN_LISTED])


# ---------------------------------------------------------------------------------------------- main
_EMBEDDED_JSON = re.compile(r"\bvar\s+[A-Za-z_$][\w$]*\s*=\s*(?=[\[{])")


def _defuse_embedded_json(path: str) -> None:
    """
    Make data values inert in Evidently's HTML report.

    Evidently 0.7 embeds the report data as raw JSON inside ``<script>`` (``var <id> = {...};``), so a value
    such as ``</script><script>...`` in the data would close the script element and run as markup. Inside
    each embedded JSON value ``<``, ``>`` and ``&`` become ``\\u003c``/``\\u003e``/``\\u0026``: the same
    strings to JavaScript, nothing an HTML parser can act on. The JSON spans are found by decoding them, so
    the page's own tags are untouched.
    """
    import json

    with open(path, encoding="utf-8") as handle:
        html = handle.read()
    decoder = json.JSONDecoder()
    out, pos = [], 0
    for match in _EMBEDDED_JSON.finditer(html):
        start = match.end()
        if start < pos:
            continue
        try:
            _, end = decoder.raw_decode(html, start)
        except ValueError:
            continue
        span = html[start:end].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        out += [html[pos:start], span]
        pos = end
    if not out:
        return
    out.append(html[pos:])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(out))


def detect_drift(  # noqa: C901 - the check's steps in their one retry-safe order (read, sample, pin tests, run, write, decide)
    reference_uri: str,
    current_uri: str,
    *,
    report_uri: str,
    columns: Sequence[str] | None = None,
    categorical_columns: Sequence[str] = (),
    prediction_column: str | None = None,
    reference_predictions_uri: str | None = None,
    current_predictions_uri: str | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    stattest: str | None = None,
    stattest_threshold: float | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SEED,
    fingerprints: bool = True,
    report_metadata: Mapping[str, Any] | None = None,
) -> DriftResult:
    """
    Compare ``current_uri`` with ``reference_uri`` on ``columns`` and write the reports under ``report_uri``.

    :param reference_uri: The data the model was trained on (parquet file/folder or CSV, any fsspec URI).
    :param current_uri: The new data to check.
    :param report_uri: Folder URI that receives ``drift.html``, ``drift.json`` (Evidently's snapshot) and
        ``result.json`` (this result). Written atomically; a retry overwrites them.
    :param columns: The model's input columns; ``None`` compares every column both datasets have.
    :param categorical_columns: Columns to compare as categories even if they hold numbers (codes, ids).
    :param prediction_column: Also measure prediction drift on this column, read from the prediction URIs
        below or, without them, from the datasets themselves. It is reported apart from ``drift_share``.
    :param reference_predictions_uri: Predictions row-aligned with the reference data.
    :param current_predictions_uri: Predictions row-aligned with the current data (e.g. a scoring output).
    :param drift_share: Dataset drift is detected when the share of drifted columns is >= this.
    :param stattest: Evidently test name for every column (e.g. ``"psi"``); default: Evidently's choice.
    :param stattest_threshold: Per-column threshold of that test; default: the test's own.
    :param sample_size: Rows sampled per side when a side is larger; 0 reads everything.
    :param seed: Sampling seed; the same data, size and seed give the same sample and scores.
    :param fingerprints: Also hash both datasets (lineage for the drift event).
    :param report_metadata: Small JSON-safe values stored in ``result.json`` (model name/version, ...).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if not 0 < drift_share <= 1:
        raise MlopsConfigError(f"drift_share={drift_share!r} must be in (0, 1]; 0.5 means half the columns.")
    if sample_size and sample_size < MIN_SAMPLE_SIZE:
        raise MlopsConfigError(
            f"sample_size={sample_size} is too small to keep the full-data decision; use 0 (no sampling) or "
            f">= {MIN_SAMPLE_SIZE}."
        )
    report_uri = check_uri(report_uri, what="drift report URI")
    reference = resolve_dataset(check_uri(reference_uri, what="reference data URI"))
    current = resolve_dataset(check_uri(current_uri, what="current data URI"))

    plan, skipped = plan_columns(
        reference, current, columns, [c for c in categorical_columns if c != prediction_column]
    )
    feature_plan = dict(plan)
    pred_refs: dict[str, DatasetRef] = {}
    if prediction_column:
        if prediction_column in feature_plan:
            feature_plan.pop(prediction_column)
        for side, data_ref, pred_uri in (
            ("reference", reference, reference_predictions_uri),
            ("current", current, current_predictions_uri),
        ):
            pref = resolve_dataset(pred_uri) if pred_uri else data_ref
            if prediction_column not in column_names(pref):
                raise SchemaMismatch(
                    f"prediction column {prediction_column!r} is missing from the {side} "
                    f"{'predictions' if pred_uri else 'data'} {pref.uri} (it has {column_names(pref)}); give "
                    f"{side}_predictions_uri= or fix prediction_column=."
                )
            pred_refs[side] = pref
        if not feature_plan:
            raise SchemaMismatch(
                f"no input columns left to compare besides the prediction column {prediction_column!r}."
            )
    timings["plan_s"] = time.perf_counter() - started

    t0 = time.perf_counter()
    frames: dict[str, pd.DataFrame] = {}
    totals: dict[str, int] = {}
    pred_kind = None
    for stream, (side, data_ref) in enumerate((("reference", reference), ("current", current))):
        same_file = bool(prediction_column) and pred_refs[side] is data_ref
        load_cols = list(feature_plan) + ([prediction_column] if same_file and prediction_column else [])
        table, total = load_sample(data_ref, load_cols, sample_size, seed, stream)
        if total == 0:
            raise EmptyDatasetError(
                f"the {side} data {data_ref.uri} is empty (0 rows); there is nothing to compare, so no drift "
                "was measured and nothing was emitted. Check the upstream task that writes it."
            )
        if prediction_column:
            pref = pred_refs[side]
            ptable = table
            if not same_file:
                ptable, ptotal = load_sample(pref, [prediction_column], sample_size, seed, stream)
                if ptotal != total:
                    raise SchemaMismatch(
                        f"the {side} predictions {pref.uri} have {ptotal} rows but the {side} data "
                        f"{data_ref.uri} has {total}; predictions must be row-aligned with the data they score."
                    )
                table = table.append_column(prediction_column, ptable.column(prediction_column))
            pkind = kind_of(ptable.schema.field(prediction_column).type) or CATEGORICAL
            if prediction_column in categorical_columns:
                pkind = CATEGORICAL
            pred_kind = pred_kind or pkind
        full_plan = dict(feature_plan)
        if prediction_column:
            full_plan[prediction_column] = pred_kind or CATEGORICAL
        frame = to_frame(table, full_plan)
        check_not_all_null(frame, side, data_ref.uri, total)
        check_finite(frame, side, data_ref.uri, total)
        frames[side], totals[side] = frame, total
    timings["read_s"] = time.perf_counter() - t0

    ref_df, cur_df = frames["reference"], frames["current"]
    all_plan = dict(feature_plan)
    if prediction_column:
        all_plan[prediction_column] = pred_kind or CATEGORICAL

    import pandas as pd

    methods: dict[str, str] = {}
    for name, kind in all_plan.items():
        if stattest:
            methods[name] = stattest
        else:
            n_unique = int(pd.concat([ref_df[name], cur_df[name]], ignore_index=True).nunique())
            methods[name] = default_method(kind, totals["reference"], n_unique)

    t0 = time.perf_counter()
    snapshot, parsed = _run_evidently(
        ref_df, cur_df, feature_plan, all_plan, methods, prediction_column, drift_share, stattest_threshold
    )
    timings["evidently_s"] = time.perf_counter() - t0

    column_results: list[ColumnDrift] = []
    prediction: ColumnDrift | None = None
    for name, kind in all_plan.items():
        score, threshold, drifted = parsed["columns"][name]
        unseen = _unseen(ref_df[name], cur_df[name]) if kind == CATEGORICAL else ()
        item = ColumnDrift(name, kind, methods[name], score, threshold, drifted, unseen)
        if name == prediction_column:
            prediction = item
        else:
            column_results.append(item)
    share = float(parsed["share"])
    detected = share >= drift_share

    t0 = time.perf_counter()
    ref_fp = cur_fp = None
    if fingerprints:
        from airflow_mlops.core.lineage import fingerprint

        ref_fp, cur_fp = fingerprint(reference), fingerprint(current)
    timings["fingerprint_s"] = time.perf_counter() - t0

    html_uri = join_uri(report_uri, HTML_NAME)
    json_uri = join_uri(report_uri, JSON_NAME)
    result_uri = join_uri(report_uri, RESULT_NAME)
    t0 = time.perf_counter()
    with atomic_local_path(html_uri, suffix=".html") as path:
        snapshot.save_html(path)
        _defuse_embedded_json(path)
    with atomic_local_path(json_uri, suffix=".json") as path:
        snapshot.save_json(path)
    timings["report_s"] = time.perf_counter() - t0

    result = DriftResult(
        reference_uri=reference.uri,
        current_uri=current.uri,
        columns=tuple(column_results),
        drift_share=share,
        share_threshold=drift_share,
        drift_detected=detected,
        reference_rows=totals["reference"],
        current_rows=totals["current"],
        reference_sample_rows=len(ref_df),
        current_sample_rows=len(cur_df),
        sample_size=sample_size,
        seed=seed,
        report_uri=report_uri,
        html_uri=html_uri,
        json_uri=json_uri,
        result_uri=result_uri,
        elapsed_s=time.perf_counter() - started,
        prediction=prediction,
        reference_fingerprint=ref_fp,
        current_fingerprint=cur_fp,
        skipped_columns=tuple(skipped),
        timings={k: round(v, 4) for k, v in timings.items()},
    )
    write_json(result_uri, {**result.to_dict(), "metadata": dict(report_metadata or {})})
    log.info(
        "Drift share %.3f (threshold %.2f) over %d column(s), drifted: %s; report %s",
        share, drift_share, len(column_results), result.drifted_columns, html_uri,
    )  # fmt: skip
    return result


def _run_evidently(  # noqa: C901 - one branch per Evidently metric kind and result shape; kept beside the call it reads
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    feature_plan: Mapping[str, str],
    all_plan: Mapping[str, str],
    methods: Mapping[str, str],
    prediction_column: str | None,
    drift_share: float,
    stattest_threshold: float | None,
) -> tuple[Any, dict[str, Any]]:
    """Run the Report; return the snapshot and ``{"share", "columns": {name: (score, threshold, drifted)}}``."""
    import json

    import numpy as np
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c, k in all_plan.items() if k == NUMERICAL],
        categorical_columns=[c for c, k in all_plan.items() if k == CATEGORICAL],
    )
    # Evidently rejects an explicitly named categorical-only test (z, chisquare) on a numerical column with few
    # values, though its own default picks exactly that test: leave those columns to its default.
    feature_methods = {
        c: methods[c]
        for c in feature_plan
        if not (all_plan[c] == NUMERICAL and methods[c] in ("z", "chisquare"))
    }
    items: list[Any] = [
        DataDriftPreset(
            columns=list(feature_plan),
            drift_share=drift_share,
            per_column_method=feature_methods,
            threshold=stattest_threshold,
        )
    ]
    if prediction_column:
        items.append(
            ValueDrift(
                column=prediction_column, method=methods[prediction_column], threshold=stattest_threshold
            )
        )
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # unseen categories make chi-square divide by zero: the p-value is 0, i.e. drift, as intended
            warnings.simplefilter("ignore")
            snapshot = Report(items, include_tests=True).run(
                current_data=Dataset.from_pandas(cur_df, data_definition=definition),
                reference_data=Dataset.from_pandas(ref_df, data_definition=definition),
            )
            payload = json.loads(snapshot.json())
    except (ValueError, TypeError, KeyError) as err:
        raise DriftDetectionError(
            f"Evidently could not compare the data on columns {list(all_plan)}: {type(err).__name__}: {err}"
        ) from err

    metric_column: dict[str, str] = {}
    share = None
    scores: dict[str, tuple[float, float]] = {}
    for metric in payload.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift"):
            name = config["column"]
            metric_column[metric["id"]] = name
            scores[name] = (float(metric["value"]), float(config.get("threshold") or 0.0))
    verdicts: dict[str, bool] = {}
    for test in payload.get("tests", []):
        name = metric_column.get(test.get("metric_config", {}).get("metric_id", ""))
        if name is not None:
            verdicts[name] = str(test.get("status", "")).upper().endswith("FAIL")
    columns: dict[str, tuple[float, float, bool]] = {}
    for name in all_plan:
        if name not in scores:
            raise DriftDetectionError(
                f"Evidently returned no drift score for column {name!r}; the report is incomplete."
            )
        score, threshold = scores[name]
        if name in verdicts:
            drifted = verdicts[name]
        elif methods[name] in _P_VALUE_METHODS:
            drifted = score < threshold
        else:
            drifted = score >= threshold
        columns[name] = (score, threshold, drifted)
    if share is None:
        drifted_count = sum(1 for c in feature_plan if columns[c][2])
        share = drifted_count / len(feature_plan)
    return snapshot, {"share": share, "columns": columns}
