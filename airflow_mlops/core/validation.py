"""Great Expectations 1.x validation of a dataset by URI, with a JSON result and a readable HTML report.

Framework-free: no Airflow here. :func:`validate_dataset` loads a suite (a GX suite JSON file, a list of
``{"type": ..., "kwargs": ...}`` dicts, or a callable returning a ``gx.ExpectationSuite``), checks it against
the dataset's schema before reading any data, reads only the columns the suite needs, runs the expectations in
an ephemeral GX context and returns a :class:`ValidationResult`. Reports are written atomically, and only
after a successful run: every bad input raises one :class:`~airflow_mlops.exceptions.MlopsError` and writes
nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import html
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Union

from airflow_mlops.core import data as data_io
from airflow_mlops.core import storage
from airflow_mlops.core.lineage import fingerprint as dataset_fingerprint
from airflow_mlops.exceptions import (
    DatasetError,
    EmptyDatasetError,
    MlopsConfigError,
    MlopsError,
    SchemaMismatch,
    SuiteError,
    first_line,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SuiteLike = Union[str, "os.PathLike[str]", Sequence[Mapping[str, Any]], Mapping[str, Any], Callable[[], Any]]

REPORT_JSON_NAME = "validation.json"
REPORT_HTML_NAME = "validation.html"
DEFAULT_EXAMPLES = 5
EXPECTATIONS_GALLERY = "https://greatexpectations.io/expectations/"

# Expectations that look only at the column names: evaluated on a zero-row frame with the full schema, so a
# schema check never forces every column to be read.
SCHEMA_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_columns_to_match_set",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
# Expectations that need the number of rows and no column values.
ROW_COUNT_EXPECTATIONS = frozenset(
    {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
)
_COLUMN_KEYS = ("column", "column_A", "column_B")
_COLUMN_LIST_KEYS = ("column_list",)


# ---------------------------------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite as plain data: GX type name, kwargs and meta."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        for key in _COLUMN_KEYS:
            value = self.kwargs.get(key)
            if isinstance(value, str):
                return value
        return None

    def label(self) -> str:
        """Short human label, e.g. ``expect_column_values_to_be_between(column=age)``."""
        keys = [k for k in (*_COLUMN_KEYS, *_COLUMN_LIST_KEYS) if k in self.kwargs]
        inner = ", ".join(f"{k}={_short_value(self.kwargs[k])}" for k in keys)
        return f"{self.type}({inner})"

    def data_columns(self) -> list[str] | None:
        """Columns whose values this expectation reads; [] for none; None when unknown (read everything)."""
        if self.type in SCHEMA_EXPECTATIONS or self.type in ROW_COUNT_EXPECTATIONS:
            return []
        columns: list[str] = []
        for key in _COLUMN_KEYS:
            value = self.kwargs.get(key)
            if isinstance(value, str):
                columns.append(value)
        for key in _COLUMN_LIST_KEYS:
            value = self.kwargs.get(key)
            if isinstance(value, (list, tuple)):
                columns.extend(str(v) for v in value)
        return columns or None


@dataclass(frozen=True)
class SuiteSpec:
    """A loaded suite: its name, where it came from (for messages) and its expectations."""

    name: str
    source: str
    expectations: tuple[ExpectationSpec, ...]

    def describe(self) -> str:
        return f"suite '{self.name}' ({self.source})"


def load_suite(
    suite: SuiteLike, *, name: str | None = None, dataset_uri: str = "", quiet: bool = True
) -> SuiteSpec:
    """
    Turn any accepted suite form into a :class:`SuiteSpec` without touching data.

    :param suite: path or URI of a GX suite JSON file; a list of ``{"type", "kwargs"}`` dicts; a suite dict
        (``{"name", "expectations"}``, as GX writes it); a ``gx.ExpectationSuite``; or a callable returning one.
    :param name: overrides the suite's own name (inline lists are otherwise called ``inline``).
    :param dataset_uri: only used in error messages.
    :param quiet: silence GX's logging when a suite callable makes this import GX.
    """
    about = f" (validating dataset {dataset_uri})" if dataset_uri else ""
    if isinstance(suite, (str, os.PathLike)):
        return _load_suite_file(os.fspath(suite), name=name, about=about)
    if isinstance(suite, Mapping):
        return _suite_from_dict(suite, name=name, source="suite dict", about=about)
    if hasattr(suite, "expectations") and callable(getattr(suite, "to_json_dict", None)):
        return _suite_from_gx(suite, name=name, source="gx.ExpectationSuite", about=about)
    if isinstance(suite, (list, tuple)):
        specs = _specs_from_list(suite, suite_name=name or "inline", source="inline list", about=about)
        return SuiteSpec(name or "inline", "inline list", specs)
    if callable(suite):
        who = getattr(suite, "__qualname__", None) or repr(suite)
        _ensure_gx_context(quiet)  # ExpectationSuite.add_expectation needs an active context
        try:
            made = suite()
        except MlopsError:
            raise
        except Exception as err:
            raise SuiteError(
                f"suite callable {who} raised {type(err).__name__}: {first_line(err)}{about}; "
                "fix the function that builds the suite."
            ) from err
        return _suite_from_gx(made, name=name, source=f"callable {who}", about=about)
    raise SuiteError(
        f"unsupported suite {type(suite).__name__}{about}; give a path to a GX suite JSON file, a list of "
        '{"type": "expect_...", "kwargs": {...}} dicts, or a callable returning a gx.ExpectationSuite.'
    )


def _load_suite_file(path: str, *, name: str | None, about: str) -> SuiteSpec:
    try:
        storage.check_uri(path, what="suite path")
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        raise SuiteError(
            f"suite file {path} does not exist{about}; check the path (relative paths are resolved against "
            "the DAG file's folder by the operator) or commit the suite JSON to the DAG repository."
        ) from None
    except IsADirectoryError:
        raise SuiteError(
            f"suite path {path} is a folder{about}; give the path of one suite JSON file."
        ) from None
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f" at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise SuiteError(
            f"suite file {path} is not valid JSON{where} ({first_line(err)}){about}; fix the file, for example "
            "with `python -m json.tool` on it, or re-export the suite from GX."
        ) from None
    source = f"file {path}"
    default_name = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
    if isinstance(payload, list):
        specs = _specs_from_list(payload, suite_name=name or default_name, source=source, about=about)
        return SuiteSpec(name or default_name, source, specs)
    if not isinstance(payload, Mapping):
        raise SuiteError(
            f"suite file {path} holds a JSON {type(payload).__name__}{about}; it must be a GX suite object "
            '({"name": ..., "expectations": [...]}) or a list of expectations.'
        )
    return _suite_from_dict(payload, name=name, source=source, about=about, default_name=default_name)


def _suite_from_dict(
    payload: Mapping[str, Any], *, name: str | None, source: str, about: str, default_name: str = "suite"
) -> SuiteSpec:
    suite_name = name or payload.get("name") or payload.get("expectation_suite_name") or default_name
    expectations = payload.get("expectations")
    if not isinstance(expectations, list):
        raise SuiteError(
            f"suite '{suite_name}' ({source}) has no 'expectations' list{about}; a GX suite looks like "
            '{"name": "orders", "expectations": [{"type": "expect_...", "kwargs": {...}}]}.'
        )
    specs = _specs_from_list(expectations, suite_name=str(suite_name), source=source, about=about)
    return SuiteSpec(str(suite_name), source, specs)


def _suite_from_gx(made: Any, *, name: str | None, source: str, about: str) -> SuiteSpec:
    to_json = getattr(made, "to_json_dict", None)
    if not callable(to_json) or not hasattr(made, "expectations"):
        raise SuiteError(
            f"suite {source} returned {type(made).__name__}{about}; it must return a gx.ExpectationSuite."
        )
    return _suite_from_dict(to_json(), name=name, source=source, about=about)


def _specs_from_list(
    items: Iterable[Any], *, suite_name: str, source: str, about: str
) -> tuple[ExpectationSpec, ...]:
    specs = []
    for index, item in enumerate(items):
        where = f"expectation #{index} of suite '{suite_name}' ({source})"
        if not isinstance(item, Mapping):
            raise SuiteError(
                f"{where} is a {type(item).__name__}{about}; each expectation is a dict like "
                '{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}.'
            )
        kind = item.get("type") or item.get("expectation_type")
        if not isinstance(kind, str) or not kind:
            raise SuiteError(
                f"{where} has no 'type'{about}; add the GX expectation type name, e.g. 'type': ..."
            )
        kwargs = item.get("kwargs", {}) or {}
        meta = item.get("meta", {}) or {}
        if not isinstance(kwargs, Mapping) or not isinstance(meta, Mapping):
            raise SuiteError(f"{where} ({kind}): 'kwargs' and 'meta' must be JSON objects{about}.")
        kwargs = {k: v for k, v in kwargs.items() if k != "batch_id"}
        specs.append(ExpectationSpec(kind, dict(kwargs), dict(meta)))
    if not specs:
        raise SuiteError(f"suite '{suite_name}' ({source}) has no expectations{about}; add at least one.")
    return tuple(specs)


# ---------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ExpectationOutcome:
    """The outcome of one expectation, JSON-safe, in suite order."""

    index: int
    type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    description: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    element_count: int | None = None
    missing_count: int | None = None
    observed_value: Any = None
    examples: list[Any] = field(default_factory=list)
    exception: str | None = None

    def label(self) -> str:
        return ExpectationSpec(self.type, self.kwargs).label()

    def brief(self) -> str:
        """One line for logs and summaries."""
        text = self.label()
        if self.exception:
            return f"{text}: error {self.exception[:120]}"
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.3g}%)" if self.unexpected_percent is not None else ""
            return f"{text}: {self.unexpected_count} unexpected{pct}"
        if self.observed_value is not None:
            return f"{text}: observed {_short_value(self.observed_value)}"
        return text


@dataclass(frozen=True)
class ValidationResult:
    """What a validation found, and where its reports are."""

    success: bool
    dataset_uri: str
    dataset_format: str
    suite_name: str
    suite_source: str
    rows: int
    fingerprint: str
    evaluated: int
    successful: int
    outcomes: tuple[ExpectationOutcome, ...]
    columns_read: tuple[str, ...]
    elapsed_s: float
    validated_at: str
    gx_version: str
    report_uri: str | None = None
    report_json_uri: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    @property
    def unsuccessful(self) -> int:
        return self.evaluated - self.successful

    @property
    def success_percent(self) -> float:
        return 100.0 if not self.evaluated else round(100.0 * self.successful / self.evaluated, 3)

    def to_summary(self, max_failed: int = 10) -> dict[str, Any]:
        """A small JSON-safe dict for XCom, Asset event extras and MLflow tags (``success`` routes branches)."""
        failed = self.failed
        return {
            "success": self.success,
            "status": "passed" if self.success else "failed",
            "dataset_uri": self.dataset_uri,
            "fingerprint": self.fingerprint,
            "suite": self.suite_name,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "successful": self.successful,
            "unsuccessful": self.unsuccessful,
            "success_percent": self.success_percent,
            "failed_expectations": [o.brief() for o in failed[:max_failed]],
            "report_uri": self.report_uri,
            "report_json_uri": self.report_json_uri,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    summary = to_summary  # the name before 0.2: kept for callers' code

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["failed"] = [o.brief() for o in self.failed]
        payload["success_percent"] = self.success_percent
        return payload

    def failure_message(self, max_failed: int = 5) -> str:
        """One paragraph saying what failed and where to read more."""
        failed = self.failed
        head = "; ".join(o.brief() for o in failed[:max_failed])
        more = f"; and {len(failed) - max_failed} more" if len(failed) > max_failed else ""
        where = f" Report: {self.report_uri}" if self.report_uri else ""
        return (
            f"suite '{self.suite_name}' failed on dataset {self.dataset_uri}: {self.unsuccessful} of "
            f"{self.evaluated} expectations failed ({head}{more}).{where}"
        )


# ---------------------------------------------------------------------------------------------------- engine
def validate_dataset(
    dataset_uri: str,
    suite: SuiteLike | SuiteSpec,
    *,
    report_uri: str | None = None,
    suite_name: str | None = None,
    allow_empty: bool = False,
    examples: int = DEFAULT_EXAMPLES,
    labels: Mapping[str, str] | None = None,
    quiet: bool = True,
) -> ValidationResult:
    """
    Validate the dataset at ``dataset_uri`` with ``suite`` and write the reports under ``report_uri``.

    :param dataset_uri: parquet or CSV file, or a folder of parts; local path, ``file://`` or any fsspec URI.
    :param suite: see :func:`load_suite`, or an already loaded :class:`SuiteSpec`.
    :param report_uri: folder (URI) that receives ``validation.json`` and ``validation.html``; None: no reports.
    :param suite_name: overrides the suite's name in results and reports.
    :param allow_empty: validate an empty dataset instead of raising EmptyDatasetError.
    :param examples: how many unexpected values to keep per failed expectation.
    :param labels: extra facts shown in the reports (for example the Airflow dag_id/run_id/task_id).
    :param quiet: silence GX's import-time INFO logging and its progress bars.
    :raises SuiteError: bad suite file/JSON, unknown expectation type, bad expectation arguments.
    :raises DatasetNotFound / DatasetError / EmptyDatasetError: missing, unreadable or empty data.
    :raises SchemaMismatch: an expectation names a column the dataset does not have.
    """
    start = time.perf_counter()
    if examples < 0:
        raise MlopsConfigError(f"examples must be >= 0, not {examples}.")
    dataset_uri = storage.check_uri(dataset_uri, what="dataset URI")
    if report_uri:
        report_uri = storage.check_uri(report_uri, what="report URI")
    spec = (
        suite
        if isinstance(suite, SuiteSpec)
        else load_suite(suite, name=suite_name, dataset_uri=dataset_uri, quiet=quiet)
    )
    if suite_name and spec.name != suite_name:
        spec = SuiteSpec(suite_name, spec.source, spec.expectations)

    gx = _import_gx(quiet)
    expectations = _build_expectations(gx, spec, dataset_uri)  # unknown types and bad kwargs, before any data

    with _naming_suite(spec):
        ref = data_io.resolve_dataset(dataset_uri)
        arrow_schema = data_io.schema(ref)
        have = list(arrow_schema.names)
        needed = _columns_to_read(spec, have, ref.uri)
        rows_hint = data_io.count_rows(ref)
        if rows_hint == 0 and not allow_empty:
            raise _empty_error(ref.uri, spec)
        frame, rows = _read(ref, needed)
        if rows == 0 and not allow_empty:
            raise _empty_error(ref.uri, spec)
        _check_numeric_columns(spec, arrow_schema, frame, ref.uri)
        fp = dataset_fingerprint(ref)

    # BASIC: counts plus the first unexpected values (no index lists); extra values so examples can be distinct.
    result_format = {"result_format": "BASIC", "partial_unexpected_count": max(20, 4 * examples)}
    context = _ephemeral_context(gx, quiet)
    batch_def = (
        context.data_sources.add_pandas("mlops")
        .add_dataframe_asset(name="dataset")
        .add_batch_definition_whole_dataframe("whole")
    )
    gx_results: dict[int, Any] = {}
    for key, indexes in _column_groups(spec, have).items():
        if key == _SCHEMA_GROUP:
            part = arrow_schema.empty_table().to_pandas()
        elif key == _ALL_COLUMNS:
            part = frame
        else:
            part = frame[list(key)] if key else frame.iloc[:, :0]
        gx_results.update(_run(gx, batch_def, part, spec, expectations, indexes, result_format))
    del frame

    outcomes = tuple(
        _outcome(i, spec.expectations[i], gx_results[i], examples) for i in range(len(spec.expectations))
    )
    successful = sum(1 for o in outcomes if o.success)
    json_uri = storage.join_uri(report_uri, REPORT_JSON_NAME) if report_uri else None
    html_uri = storage.join_uri(report_uri, REPORT_HTML_NAME) if report_uri else None
    result = ValidationResult(
        success=successful == len(outcomes),
        dataset_uri=ref.uri,
        dataset_format=ref.format,
        suite_name=spec.name,
        suite_source=spec.source,
        rows=rows,
        fingerprint=fp,
        evaluated=len(outcomes),
        successful=successful,
        outcomes=outcomes,
        columns_read=tuple(needed),
        elapsed_s=time.perf_counter() - start,
        validated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gx_version=str(getattr(gx, "__version__", "")),
        report_uri=html_uri,
        report_json_uri=json_uri,
        labels=dict(labels or {}),
    )
    if json_uri and html_uri:
        gx_json = [_jsonable(gx_results[i].to_json_dict()) for i in range(len(spec.expectations))]
        write_reports(result, gx_json, json_uri=json_uri, html_uri=html_uri)
    return result


def write_reports(
    result: ValidationResult, gx_results: list[Any] | None, *, json_uri: str, html_uri: str
) -> None:
    """Write the JSON result and the HTML page, each atomically; if the second write fails the first goes too."""
    payload = {**result.to_dict(), "gx_results": gx_results or []}
    storage.write_json(json_uri, payload)
    try:
        storage.write_text(html_uri, render_html(result))
    except BaseException:
        storage.remove(json_uri)
        raise


def _import_gx(quiet: bool) -> Any:
    if quiet:
        # GX logs ~200 INFO lines on import once Airflow's logging is configured.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    if quiet:
        # GX pins this module's logger to INFO on import (one line per context about a temporary docs site).
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


def _ensure_gx_context(quiet: bool) -> None:
    """Make sure GX has a current context (suite code calling ``add_expectation`` needs one); never replace one."""
    gx = _import_gx(quiet)
    from great_expectations.data_context.data_context.context_factory import project_manager

    try:
        project_manager.get_current_project()
    except Exception:  # noqa: BLE001 - no GX project of any kind: use an ephemeral context
        _ephemeral_context(gx, quiet)


def _ephemeral_context(gx: Any, quiet: bool) -> Any:
    context = gx.get_context(mode="ephemeral")
    if quiet:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _build_expectations(gx: Any, spec: SuiteSpec, dataset_uri: str) -> list[Any]:
    """GX Expectation objects for every spec; SuiteError naming the expectation on unknown types or bad kwargs."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    built = []
    for index, item in enumerate(spec.expectations):
        where = f"expectation #{index} ({item.type}) of {spec.describe()} for dataset {dataset_uri}"
        try:
            config = ExpectationConfiguration(type=item.type, kwargs=item.kwargs, meta=item.meta or None)
            built.append(config.to_domain_obj())
        except ExpectationNotFoundError:
            known = list_registered_expectation_implementations()
            close = difflib.get_close_matches(item.type, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise SuiteError(
                f"unknown expectation type '{item.type}' in {where}; {hint}"
                f"see {EXPECTATIONS_GALLERY} for the names GX {gx.__version__} knows."
            ) from None
        except Exception as err:  # noqa: BLE001 - GX raises many types for bad kwargs; all become one SuiteError naming the expectation
            raise SuiteError(
                f"invalid arguments for {where}: {_pydantic_errors(err)}; fix its kwargs."
            ) from None
    return built


def _expectation_columns(item: ExpectationSpec, have: Sequence[str]) -> tuple[str, ...] | None:
    """Dataset columns whose values one expectation reads (its own plus its row_condition's); None: all."""
    columns = item.data_columns()
    if columns is None:
        return None
    condition = item.kwargs.get("row_condition")
    if condition:
        text = condition if isinstance(condition, str) else json.dumps(_jsonable(condition), default=str)
        columns = [*columns, *(c for c in have if re.search(rf"(?<![\w]){re.escape(c)}(?![\w])", text))]
    return tuple(dict.fromkeys(columns))


def _columns_to_read(spec: SuiteSpec, have: Sequence[str], uri: str) -> list[str]:
    """The dataset columns the suite reads (in dataset order); SchemaMismatch for columns it lacks."""
    wanted: set[str] = set()
    missing: list[str] = []
    read_all = False
    for index, item in enumerate(spec.expectations):
        columns = _expectation_columns(item, have)
        if columns is None:
            read_all = True
            continue
        for column in columns:
            if column in have:
                wanted.add(column)
            else:
                missing.append(f"'{column}' (expectation #{index} {item.label()})")
    if missing:
        raise SchemaMismatch(
            f"{spec.describe()} expects column(s) {', '.join(missing)} that dataset {uri} does not have; "
            f"the dataset has columns {list(have)}. Fix the column names in the suite or the data."
        )
    if read_all:
        return list(have)
    return [c for c in have if c in wanted]


# Expectations that compute on numbers: on a text column GX fails them with an internal error instead
# ("'>=' not supported between instances of 'str' and 'float'", "could not convert string to float").
NUMERIC_EXPECTATIONS = frozenset(
    {
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_stdev_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_quantile_values_to_be_between",
    }
)
# ... and those that compare with their bounds, which need numbers when a bound is a number.
BOUNDED_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
    }
)


def _needs_numbers(item: ExpectationSpec) -> bool:
    if item.type in NUMERIC_EXPECTATIONS:
        return True
    if item.type in BOUNDED_EXPECTATIONS:
        bounds = (item.kwargs.get("min_value"), item.kwargs.get("max_value"))
        return any(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    return False


def _check_numeric_columns(spec: SuiteSpec, arrow_schema: Any, frame: pd.DataFrame, uri: str) -> None:
    """SchemaMismatch for a numeric expectation on a text column, with the values that are not numbers."""
    import pandas as pd
    import pyarrow as pa

    for index, item in enumerate(spec.expectations):
        column = item.column
        if column is None or not _needs_numbers(item) or column not in arrow_schema.names:
            continue
        arrow_type = arrow_schema.field(column).type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
            continue
        found = ""
        if column in frame.columns:
            values = frame[column]
            bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
            shown = [f"{v!r} (row {i})" for i, v in values[bad].head(DEFAULT_EXAMPLES).items()]
            if shown:
                more = f" and {int(bad.sum()) - len(shown)} more" if int(bad.sum()) > len(shown) else ""
                found = f"; values that are not numbers: {', '.join(shown)}{more} (rows counted from 0)"
            elif len(values):
                found = "; every value is a number written as text"
        raise SchemaMismatch(
            f"column {column!r} of dataset {uri} is {arrow_type}, but expectation #{index} {item.label()} of "
            f"{spec.describe()} compares numbers{found}. Fix or drop those values upstream (a CSV column with "
            "one non-numeric value is read as text), cast the column to a number, or fix the expectation."
        )


_SCHEMA_GROUP = ("\0schema",)  # sentinel keys: no real column is named with a NUL
_ALL_COLUMNS = ("\0all",)


def _column_groups(spec: SuiteSpec, have: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
    """
    Expectations grouped by the columns they read; each group is validated on a frame of just those columns.

    GX filters the whole batch frame for every column-map expectation (``df[mask]``), so on a wide dataset
    one batch per column group is much cheaper than one batch of every column; results are the same because a
    column expectation never sees other columns. Schema expectations get a zero-row frame with the full schema.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, item in enumerate(spec.expectations):
        key: tuple[str, ...]
        if item.type in SCHEMA_EXPECTATIONS:
            key = _SCHEMA_GROUP
        else:
            columns = _expectation_columns(item, have)
            key = _ALL_COLUMNS if columns is None else tuple(c for c in have if c in columns)
        groups.setdefault(key, []).append(index)
    return groups


def _read(ref: data_io.DatasetRef, columns: list[str]) -> tuple[pd.DataFrame, int]:
    import pandas as pd

    if not columns:
        rows = data_io.count_rows(ref)
        if rows is None:  # CSV: count through the narrowest read, one column
            rows = data_io.read_table(ref, data_io.column_names(ref)[:1]).num_rows
        return pd.DataFrame(index=pd.RangeIndex(rows)), rows
    table = data_io.read_table(ref, columns)
    rows = table.num_rows
    # Consolidated blocks (no split_blocks): GX filters whole frames per expectation, and a frame of one block
    # per column makes every filter re-consolidate. self_destruct releases Arrow buffers once converted.
    frame = table.to_pandas(self_destruct=True)
    del table
    return frame, rows


def _run(
    gx: Any,
    batch_def: Any,
    frame: pd.DataFrame,
    spec: SuiteSpec,
    expectations: list[Any],
    indexes: list[int],
    result_format: dict[str, Any],
) -> dict[int, Any]:
    """Run the expectations ``indexes`` on ``frame``; map each suite position to its GX result."""
    suite = gx.ExpectationSuite(
        name=spec.name, expectations=[expectations[i].copy(deep=True) for i in indexes]
    )
    # Positional ids: GX returns results grouped by domain, not in suite order.
    for i, expectation in zip(indexes, suite.expectations, strict=True):
        expectation.id = f"mlops-{i}"
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    validation = batch.validate(suite, result_format=result_format)
    by_id = {r.expectation_config.id: r for r in validation.results}
    results: dict[int, Any] = {}
    for i in indexes:
        found = by_id.get(f"mlops-{i}")
        if found is None:
            raise MlopsError(f"GX returned no result for expectation #{i} of {spec.describe()}.")
        results[i] = found
    return results


def _outcome(index: int, spec: ExpectationSpec, gx_result: Any, examples: int) -> ExpectationOutcome:
    result = gx_result.result or {}
    info = gx_result.exception_info or {}
    if isinstance(info, Mapping) and "raised_exception" not in info:  # one entry per metric
        raised = [v for v in info.values() if isinstance(v, Mapping) and v.get("raised_exception")]
        info = raised[0] if raised else {}
    exception = (
        info.get("exception_message") if isinstance(info, Mapping) and info.get("raised_exception") else None
    )
    unexpected = result.get("partial_unexpected_list")
    return ExpectationOutcome(
        index=index,
        type=spec.type,
        column=spec.column,
        kwargs=_jsonable(spec.kwargs),
        success=bool(gx_result.success),
        description=_describe(spec),
        unexpected_count=_int_or_none(result.get("unexpected_count")),
        unexpected_percent=_float_or_none(result.get("unexpected_percent")),
        element_count=_int_or_none(result.get("element_count")),
        missing_count=_int_or_none(result.get("missing_count")),
        observed_value=_jsonable(result.get("observed_value")),
        examples=_distinct(unexpected, examples) if unexpected and not gx_result.success else [],
        exception=str(exception) if exception else None,
    )


def _describe(spec: ExpectationSpec) -> str:
    """GX's own prescriptive sentence for an expectation ("age values must be ..."), or its label.

    Uses GX's string-template renderer: its atomic renderer builds pydantic models per parameter and costs
    ~70 ms per expectation, which would be seconds for a large suite.
    """
    try:
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
        from great_expectations.expectations.registry import get_renderer_impl
        from great_expectations.render import LegacyRendererType

        impl = get_renderer_impl(object_name=spec.type, renderer_type=LegacyRendererType.PRESCRIPTIVE)
        if impl:
            rendered = impl[1](configuration=ExpectationConfiguration(type=spec.type, kwargs=spec.kwargs))
            for content in rendered if isinstance(rendered, list) else [rendered]:
                block = getattr(content, "string_template", None)
                if not isinstance(block, Mapping) or not block.get("template"):
                    continue
                template = str(block["template"])
                params = block.get("params") or {}
                for key in sorted(params, key=len, reverse=True):  # $column_list_10 before $column_list_1
                    if f"${key}" in template:
                        template = template.replace(f"${key}", _short_value(params[key]))
                return template
    except Exception:  # rendering is cosmetic; never let it fail a validation
        log.debug("GX could not render %s", spec.type, exc_info=True)
    return spec.label()


def _empty_error(uri: str, spec: SuiteSpec) -> EmptyDatasetError:
    return EmptyDatasetError(
        f"dataset {uri} is empty (0 rows); {spec.describe()} was not run and no report was written. "
        "Produce the data first, or pass allow_empty=True to validate empty data."
    )


@contextlib.contextmanager
def _naming_suite(spec: SuiteSpec) -> Iterator[None]:
    """Re-raise dataset errors with the suite in the message (same class), so the message names both."""
    try:
        yield
    except EmptyDatasetError:
        raise
    except DatasetError as err:
        raise type(err)(f"{err} ({spec.describe()} was not run; no report was written.)") from None


# ---------------------------------------------------------------------------------------------------- HTML
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
            details.append(f"observed: <code>{e(_short_value(o.observed_value, 300))}</code>")
        if o.examples:
            details.append(
                "examples: " + ", ".join(f"<code>{e(_short_value(x, 80))}</code>" for x in o.examples)
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


# ---------------------------------------------------------------------------------------------------- helpers
def _jsonable(value: Any) -> Any:  # noqa: C901 - one branch per value type GX results hold
    """Plain JSON types: numpy/pandas scalars unwrapped, NaN/NaT to None, dates to ISO strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return _jsonable(item())
        except (ValueError, TypeError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _jsonable(tolist())
    if value.__class__.__name__ in {"NaTType", "NAType"}:
        return None
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    to_json = getattr(value, "to_json_dict", None)
    if callable(to_json):
        return _jsonable(to_json())
    return str(value)


def _distinct(values: Iterable[Any], limit: int) -> list[Any]:
    """The first ``limit`` distinct values, JSON-safe (GX lists the first unexpected values, duplicates and all)."""
    seen: dict[str, Any] = {}
    if limit <= 0:
        return []
    for value in values:
        plain = _jsonable(value)
        seen.setdefault(json.dumps(plain, sort_keys=True, default=str), plain)
        if len(seen) >= limit:
            break
    return list(seen.values())


def _short_value(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(_jsonable(value), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return None if number is None or math.isnan(number) else round(number, 6)


def _pydantic_errors(err: BaseException) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        try:
            first: dict[str, str] = {}  # one message per field: unions report one error per member type
            for item in errors():
                loc = ".".join(str(x) for x in item.get("loc", ())) or "kwargs"
                first.setdefault(loc.replace("__root__", "kwargs"), str(item.get("msg")))
            return "; ".join(f"{k}: {v}" for k, v in list(first.items())[:6])
        except Exception:  # noqa: BLE001 - the pydantic detail is a courtesy: fall back to the first line
            pass
    return first_line(err)
