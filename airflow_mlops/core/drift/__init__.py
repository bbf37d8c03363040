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

The modules, each importing only those above it, none importing Evidently, pandas, numpy or pyarrow at
module level (the drift operator imports this package while DAG files are parsed):

- :mod:`.results`: :class:`ColumnDrift`, :class:`DriftResult` and the shared constants;
- :mod:`.columns`: :func:`plan_columns`, which columns to compare and as which kind;
- :mod:`.sampling`: :func:`sample_indices`, :func:`load_sample` and the checks on the sampled frames;
- :mod:`.engine`: :func:`default_method`, :func:`detect_drift`, the Evidently run and the HTML defusing.
"""

from __future__ import annotations

from airflow_mlops.core.drift.columns import plan_columns
from airflow_mlops.core.drift.engine import default_method, detect_drift
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
from airflow_mlops.core.drift.sampling import load_sample, sample_indices

__all__ = [
    "CATEGORICAL",
    "DEFAULT_DRIFT_SHARE",
    "DEFAULT_SAMPLE_SIZE",
    "DEFAULT_SEED",
    "EVIDENTLY_LARGE_REFERENCE",
    "HTML_NAME",
    "JSON_NAME",
    "MIN_SAMPLE_SIZE",
    "NUMERICAL",
    "RESULT_NAME",
    "ColumnDrift",
    "DriftResult",
    "default_method",
    "detect_drift",
    "load_sample",
    "plan_columns",
    "sample_indices",
]
