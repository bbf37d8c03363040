"""Great Expectations 1.x validation of a dataset by URI, with a JSON result and a readable HTML report.

Framework-free: no Airflow here, and no GX until a validation runs. :func:`validate_dataset` loads a suite
(a GX suite JSON file, a list of ``{"type": ..., "kwargs": ...}`` dicts, or a callable returning a
``gx.ExpectationSuite``), checks it against the dataset's schema before reading any data, reads only the
columns the suite needs, runs the expectations in an ephemeral GX context and returns a
:class:`ValidationResult`. Reports are written atomically, and only after a successful run: every bad input
raises one :class:`~airflow_mlops.exceptions.MlopsError` and writes nothing.

The modules, each importing only those above it:

- :mod:`.values`: JSON-value helpers (numpy/pandas scalars, NaN, dates to plain JSON);
- :mod:`.gx_context`: the quiet GX import and the ephemeral data context;
- :mod:`.suites`: :class:`ExpectationSpec`, :class:`SuiteSpec` and :func:`load_suite` with its loaders;
- :mod:`.results`: :class:`ExpectationOutcome` and :class:`ValidationResult`;
- :mod:`.columns`: the columns a suite reads, the schema checks before any data, and the read;
- :mod:`.html`: :func:`render_html`, the self-contained HTML report;
- :mod:`.engine`: :func:`validate_dataset` and :func:`write_reports`, with the GX batch plumbing.
"""

from __future__ import annotations

from airflow_mlops.core.validation.columns import BOUNDED_EXPECTATIONS, NUMERIC_EXPECTATIONS
from airflow_mlops.core.validation.engine import (
    EXPECTATIONS_GALLERY,
    REPORT_HTML_NAME,
    REPORT_JSON_NAME,
    validate_dataset,
    write_reports,
)
from airflow_mlops.core.validation.html import render_html
from airflow_mlops.core.validation.results import DEFAULT_EXAMPLES, ExpectationOutcome, ValidationResult
from airflow_mlops.core.validation.suites import (
    ROW_COUNT_EXPECTATIONS,
    SCHEMA_EXPECTATIONS,
    ExpectationSpec,
    SuiteLike,
    SuiteSpec,
    load_suite,
)

__all__ = [
    "BOUNDED_EXPECTATIONS",
    "DEFAULT_EXAMPLES",
    "EXPECTATIONS_GALLERY",
    "NUMERIC_EXPECTATIONS",
    "REPORT_HTML_NAME",
    "REPORT_JSON_NAME",
    "ROW_COUNT_EXPECTATIONS",
    "SCHEMA_EXPECTATIONS",
    "ExpectationOutcome",
    "ExpectationSpec",
    "SuiteLike",
    "SuiteSpec",
    "ValidationResult",
    "load_suite",
    "render_html",
    "validate_dataset",
    "write_reports",
]
