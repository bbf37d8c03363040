"""The validation run: :func:`validate_dataset` and :func:`write_reports`, with the GX batch plumbing they use.

:func:`validate_dataset` loads the suite, builds the GX expectations (bad types and kwargs fail before any
data is read), checks the columns against the dataset's schema, reads only the needed columns, runs each column
group in an ephemeral GX context and writes the reports only after a successful run.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_io
from airflow_mlops.core import storage
from airflow_mlops.core.lineage import fingerprint as dataset_fingerprint
from airflow_mlops.core.validation.columns import (
    ALL_COLUMNS,
    SCHEMA_GROUP,
    check_numeric_columns,
    column_groups,
    columns_to_read,
    read,
)
from airflow_mlops.core.validation.gx_context import ephemeral_context, import_gx
from airflow_mlops.core.validation.html import render_html
from airflow_mlops.core.validation.results import DEFAULT_EXAMPLES, ExpectationOutcome, ValidationResult
from airflow_mlops.core.validation.suites import ExpectationSpec, SuiteLike, SuiteSpec, load_suite
from airflow_mlops.core.validation.values import distinct, float_or_none, int_or_none, jsonable, short_value
from airflow_mlops.exceptions import (
    DatasetError,
    EmptyDatasetError,
    MlopsConfigError,
    MlopsError,
    SuiteError,
    first_line,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

REPORT_JSON_NAME = "validation.json"
REPORT_HTML_NAME = "validation.html"
EXPECTATIONS_GALLERY = "https://greatexpectations.io/expectations/"


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

    gx = import_gx(quiet)
    expectations = _build_expectations(gx, spec, dataset_uri)  # unknown types and bad kwargs, before any data

    with _naming_suite(spec):
        ref = data_io.resolve_dataset(dataset_uri)
        arrow_schema = data_io.schema(ref)
        have = list(arrow_schema.names)
        needed = columns_to_read(spec, have, ref.uri)
        rows_hint = data_io.count_rows(ref)
        if rows_hint == 0 and not allow_empty:
            raise _empty_error(ref.uri, spec)
        frame, rows = read(ref, needed)
        if rows == 0 and not allow_empty:
            raise _empty_error(ref.uri, spec)
        check_numeric_columns(spec, arrow_schema, frame, ref.uri)
        fp = dataset_fingerprint(ref)

    # BASIC: counts plus the first unexpected values (no index lists); extra values so examples can be distinct.
    result_format = {"result_format": "BASIC", "partial_unexpected_count": max(20, 4 * examples)}
    context = ephemeral_context(gx, quiet)
    batch_def = (
        context.data_sources.add_pandas("mlops")
        .add_dataframe_asset(name="dataset")
        .add_batch_definition_whole_dataframe("whole")
    )
    gx_results: dict[int, Any] = {}
    for key, indexes in column_groups(spec, have).items():
        if key == SCHEMA_GROUP:
            part = arrow_schema.empty_table().to_pandas()
        elif key == ALL_COLUMNS:
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
        gx_json = [jsonable(gx_results[i].to_json_dict()) for i in range(len(spec.expectations))]
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
        kwargs=jsonable(spec.kwargs),
        success=bool(gx_result.success),
        description=_describe(spec),
        unexpected_count=int_or_none(result.get("unexpected_count")),
        unexpected_percent=float_or_none(result.get("unexpected_percent")),
        element_count=int_or_none(result.get("element_count")),
        missing_count=int_or_none(result.get("missing_count")),
        observed_value=jsonable(result.get("observed_value")),
        examples=distinct(unexpected, examples) if unexpected and not gx_result.success else [],
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
                        template = template.replace(f"${key}", short_value(params[key]))
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
