"""Which dataset columns a suite reads, the schema checks made before any value is read, and the read.

Column names, types and row counts come from the dataset's schema; only the columns the suite's expectations
read are loaded, and each group of expectations is validated on a frame of just its columns.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_io
from airflow_mlops.core.validation.results import DEFAULT_EXAMPLES
from airflow_mlops.core.validation.suites import SCHEMA_EXPECTATIONS, ExpectationSpec, SuiteSpec
from airflow_mlops.core.validation.values import jsonable
from airflow_mlops.exceptions import SchemaMismatch

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd


def _expectation_columns(item: ExpectationSpec, have: Sequence[str]) -> tuple[str, ...] | None:
    """Dataset columns whose values one expectation reads (its own plus its row_condition's); None: all."""
    columns = item.data_columns()
    if columns is None:
        return None
    condition = item.kwargs.get("row_condition")
    if condition:
        text = condition if isinstance(condition, str) else json.dumps(jsonable(condition), default=str)
        columns = [*columns, *(c for c in have if re.search(rf"(?<![\w]){re.escape(c)}(?![\w])", text))]
    return tuple(dict.fromkeys(columns))


def columns_to_read(spec: SuiteSpec, have: Sequence[str], uri: str) -> list[str]:
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


def check_numeric_columns(spec: SuiteSpec, arrow_schema: Any, frame: pd.DataFrame, uri: str) -> None:
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


SCHEMA_GROUP = ("\0schema",)  # sentinel keys: no real column is named with a NUL
ALL_COLUMNS = ("\0all",)


def column_groups(spec: SuiteSpec, have: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
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
            key = SCHEMA_GROUP
        else:
            columns = _expectation_columns(item, have)
            key = ALL_COLUMNS if columns is None else tuple(c for c in have if c in columns)
        groups.setdefault(key, []).append(index)
    return groups


def read(ref: data_io.DatasetRef, columns: list[str]) -> tuple[pd.DataFrame, int]:
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
