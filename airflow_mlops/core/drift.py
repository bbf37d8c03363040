"""Drift detection with Evidently 0.7: compare current data with reference data, write the reports, decide.

Framework-free (no Airflow). :func:`detect_drift` reads only the columns it compares, samples each side
deterministically (seeded, so a retry gives identical scores) when it is larger than ``sample_size``, pins
each column's statistical test to the one Evidently would pick on the *full* data, runs a ``Report`` with
``DataDriftPreset`` (plus a ``ValueDrift`` on the prediction column when one is given), writes the HTML and
JSON reports atomically under a report URI, and returns a typed :class:`DriftResult`.

Why sampling keeps the decision: on more than 1000 reference rows Evidently scores numerical columns with
the normed Wasserstein distance and categorical ones with the Jensen-Shannon distance. Both are effect sizes
(they do not grow with the row count, unlike p-values), so a 50k-row sample estimates them to about +-0.01
against a drift threshold of 0.1. ``bench/drift.py`` measures the agreement with full-data results.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.data import DatasetRef, column_names, count_rows, read_table, resolve_dataset, schema
from airflow_mlops.core.storage import atomic_local_path, check_uri, join_uri, write_json
from airflow_mlops.exceptions import (
    DatasetError,
    DriftDetectionError,
    EmptyDatasetError,
    MlopsConfigError,
    SchemaMismatch,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

DEFAULT_DRIFT_SHARE = 0.5
DEFAULT_SAMPLE_SIZE = 50_000
MIN_SAMPLE_SIZE = 5_000
DEFAULT_SEED = 20_251_122
# Evidently switches from p-value tests to distance tests above this many reference rows.
EVIDENTLY_LARGE_REFERENCE = 1000
NUMERICAL = "numerical"
CATEGORICAL = "categorical"
HTML_NAME = "drift.html"
JSON_NAME = "drift.json"
RESULT_NAME = "result.json"
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


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column: the test Evidently ran, its score and threshold, and the verdict."""

    column: str
    kind: str  # "numerical" | "categorical"
    method: str
    score: float
    threshold: float
    drifted: bool
    unseen_categories: tuple[str, ...] = ()  # current values absent from the reference (first few)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unseen_categories"] = list(self.unseen_categories)
        return data


@dataclass(frozen=True)
class DriftResult:
    """What a drift check found; :meth:`summary` is the small XCom-sized view."""

    reference_uri: str
    current_uri: str
    columns: tuple[ColumnDrift, ...]
    drift_share: float
    share_threshold: float
    drift_detected: bool
    reference_rows: int
    current_rows: int
    reference_sample_rows: int
    current_sample_rows: int
    sample_size: int
    seed: int
    report_uri: str
    html_uri: str
    json_uri: str
    result_uri: str
    elapsed_s: float
    prediction: ColumnDrift | None = None
    reference_fingerprint: str | None = None
    current_fingerprint: str | None = None
    skipped_columns: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def sampled(self) -> bool:
        return (
            self.reference_sample_rows < self.reference_rows or self.current_sample_rows < self.current_rows
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.to_summary(),
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "skipped_columns": list(self.skipped_columns),
            "sample_size": self.sample_size,
            "seed": self.seed,
            "result_uri": self.result_uri,
            "timings": dict(self.timings),
        }

    def to_summary(self) -> dict[str, Any]:
        """A compact JSON-safe dict (the operator's XCom value builds on it)."""
        return {
            "drift_detected": self.drift_detected,
            "drift_share": round(float(self.drift_share), 6),
            "share_threshold": self.share_threshold,
            "drifted_columns": self.drifted_columns,
            "n_columns": len(self.columns),
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "reference_uri": self.reference_uri,
            "current_uri": self.current_uri,
            "reference_fingerprint": self.reference_fingerprint,
            "current_fingerprint": self.current_fingerprint,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled": self.sampled,
            "report_uri": self.html_uri,
            "report_json_uri": self.json_uri,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    summary = to_summary  # the name before 0.2: kept for callers' code


# ---------------------------------------------------------------------------------------------- columns
def _kind_of(arrow_type: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return CATEGORICAL
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return NUMERICAL
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_dictionary(arrow_type)
    ):
        return CATEGORICAL
    return None  # dates, timestamps, binary, nested: not compared


def plan_columns(  # noqa: C901 - one pass over the columns, one branch per rejection reason, each with its own message
    reference: DatasetRef,
    current: DatasetRef,
    columns: Sequence[str] | None,
    categorical_columns: Sequence[str] = (),
) -> tuple[dict[str, str], list[str]]:
    """
    Decide which columns to compare and how: ``({column: kind}, skipped)``.

    ``columns`` (the model's input columns) must exist on both sides; without it every column the two
    datasets share is compared. Columns of a type Evidently cannot compare (dates, binary, nested) are
    skipped when implied and rejected when asked for.
    """
    ref_schema, cur_schema = schema(reference), schema(current)
    ref_names, cur_names = list(ref_schema.names), list(cur_schema.names)
    if columns:
        wanted = list(dict.fromkeys(columns))
        missing_ref = [c for c in wanted if c not in ref_names]
        missing_cur = [c for c in wanted if c not in cur_names]
        if missing_ref or missing_cur:
            parts = []
            if missing_ref:
                parts.append(
                    f"{missing_ref} missing from the reference data {reference.uri} (it has {ref_names})"
                )
            if missing_cur:
                parts.append(
                    f"{missing_cur} missing from the current data {current.uri} (it has {cur_names})"
                )
            raise SchemaMismatch(
                "drift check column(s) " + "; ".join(parts) + ". Pass columns= that both datasets have, "
                "or fix the data."
            )
    else:
        wanted = [c for c in cur_names if c in ref_names]
        if not wanted:
            raise SchemaMismatch(
                f"the reference data {reference.uri} and the current data {current.uri} have no column in "
                f"common: reference has {ref_names}, current has {cur_names}. Point reference_uri at the data "
                "the model was trained on, or pass columns=."
            )
    forced = set(categorical_columns)
    unknown_forced = sorted(forced - set(wanted))
    if unknown_forced:
        raise MlopsConfigError(
            f"categorical_columns {unknown_forced} are not among the compared columns {wanted}; fix the names."
        )
    plan: dict[str, str] = {}
    skipped: list[str] = []
    for name in wanted:
        ref_type, cur_type = ref_schema.field(name).type, cur_schema.field(name).type
        ref_kind, cur_kind = _kind_of(ref_type), _kind_of(cur_type)
        if name in forced:
            plan[name] = CATEGORICAL
            continue
        if ref_kind is None or cur_kind is None:
            if columns:
                raise SchemaMismatch(
                    f"column {name!r} has type {ref_type} in the reference data {reference.uri} and {cur_type} "
                    f"in the current data {current.uri}; drift can compare numbers, strings and booleans only. "
                    "Drop it from columns=."
                )
            skipped.append(name)
            continue
        if ref_kind != cur_kind:
            raise SchemaMismatch(
                f"column {name!r} is {ref_kind} ({ref_type}) in the reference data {reference.uri} but "
                f"{cur_kind} ({cur_type}) in the current data {current.uri}; make the types agree or list it "
                "in categorical_columns= to compare it as categories."
            )
        plan[name] = ref_kind
    if not plan:
        raise SchemaMismatch(
            f"no comparable columns between {reference.uri} and {current.uri} (skipped {skipped}: dates, "
            "binary or nested types); pass columns= with numerical or categorical columns."
        )
    return plan, skipped


# ---------------------------------------------------------------------------------------------- sampling
def sample_indices(total: int, size: int, seed: int, stream: int) -> Any:
    """Sorted row indices of a seeded sample without replacement (all rows when ``size`` is 0 or enough)."""
    import numpy as np

    if size <= 0 or total <= size:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng([seed, stream])
    picked = rng.choice(total, size=size, replace=False)
    picked.sort()
    return picked


def _take_streaming(ref: DatasetRef, columns: list[str], indices: Any, batch_size: int) -> pa.Table:
    """Take rows at sorted global ``indices`` while streaming record batches (memory: one batch + sample)."""
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.core.data import iter_batches

    parts = []
    offset = 0
    cursor = 0
    for batch in iter_batches(ref, columns, batch_size=batch_size):
        end = offset + batch.num_rows
        stop = int(np.searchsorted(indices, end, side="left"))
        if stop > cursor:
            local = indices[cursor:stop] - offset
            parts.append(batch.take(pa.array(local)))
            cursor = stop
        offset = end
        if cursor >= len(indices):
            break
    if not parts:
        return pa.Table.from_batches(
            [], schema=pa.schema([pa.field(c, schema(ref).field(c).type) for c in columns])
        )
    return pa.Table.from_batches(parts)


def load_sample(
    ref: DatasetRef, columns: list[str], size: int, seed: int, stream: int, batch_size: int = 65_536
) -> tuple[pa.Table, int]:
    """``(sample table of only `columns`, total rows)``; deterministic for the same data, size and seed."""
    total = count_rows(ref)
    if total is not None:
        indices = sample_indices(total, size, seed, stream)
        if len(indices) == total:
            return read_table(ref, columns), total
        return _take_streaming(ref, columns, indices, batch_size), total
    table = read_table(ref, columns)  # CSV: the row count is only known after parsing
    total = table.num_rows
    indices = sample_indices(total, size, seed, stream)
    if len(indices) == total:
        return table, total
    import pyarrow as pa

    return table.take(pa.array(indices)), total


def _to_frame(table: pa.Table, plan: Mapping[str, str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = {}
    for name in plan:
        column = table.column(name)
        if plan[name] == CATEGORICAL:
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if not pa.types.is_string(column.type):
                column = pc.cast(column, pa.string())
        arrays[name] = column
    frame = pa.table(arrays).to_pandas()
    for name, kind in plan.items():
        if kind == CATEGORICAL:
            frame[name] = frame[name].astype(object)
    return frame


def _check_not_all_null(frame: pd.DataFrame, side: str, uri: str, total: int) -> None:
    empty = [c for c in frame.columns if frame[c].notna().sum() == 0]
    if empty:
        raise DriftDetectionError(
            f"column(s) {empty} hold only nulls in the {side} data {uri} ({len(frame)} of {total} rows read); "
            "drift cannot be measured on them. Fix the upstream data or drop them with columns=."
        )


def _check_finite(frame: pd.DataFrame, side: str, uri: str, total: int) -> None:
    """
    DatasetError naming each column with +-inf values: Evidently does not fail on them, it scores nonsense
    (a p-value of 1.0, or a column silently left out of the drift share).
    """
    import numpy as np

    sampled = len(frame) < total
    found = []
    for name in frame.columns:
        values = frame[name]
        if values.dtype.kind != "f":
            continue
        infinite = np.isinf(values.to_numpy())
        count = int(infinite.sum())
        if count:
            where = "" if sampled else f" (first at row {int(np.argmax(infinite))})"
            found.append(f"column {name!r} of the {side} data {uri} holds {count} infinite value(s){where}")
        missing = int(values.isna().sum())
        if missing:
            log.info("%d of %d value(s) of column %r of the %s data are null; Evidently ignores them",
                     missing, len(values), name, side)  # fmt: skip
    if found:
        read = f" in a sample of {len(frame)} of its {total} rows" if sampled else ""
        raise DatasetError(
            f"{'; '.join(found)}{read}; drift cannot be measured on +-inf (rows count from 0). Replace them "
            "upstream (with null, which drift ignores, or a bounded value) or drop the column with columns=."
        )


# ---------------------------------------------------------------------------------------------- methods
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
            pkind = _kind_of(ptable.schema.field(prediction_column).type) or CATEGORICAL
            if prediction_column in categorical_columns:
                pkind = CATEGORICAL
            pred_kind = pred_kind or pkind
        full_plan = dict(feature_plan)
        if prediction_column:
            full_plan[prediction_column] = pred_kind or CATEGORICAL
        frame = _to_frame(table, full_plan)
        _check_not_all_null(frame, side, data_ref.uri, total)
        _check_finite(frame, side, data_ref.uri, total)
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
