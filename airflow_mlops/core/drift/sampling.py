"""Seeded sampling of each side, conversion to the frames Evidently reads, and the checks on those frames.

The same data, size and seed give the same sample (rows taken while streaming record batches), so a retry
scores the same; the frame checks reject columns drift cannot be measured on (all null, +-inf).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.data import DatasetRef, count_rows, read_table, schema
from airflow_mlops.core.drift.results import CATEGORICAL
from airflow_mlops.exceptions import DatasetError, DriftDetectionError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)


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


def to_frame(table: pa.Table, plan: Mapping[str, str]) -> pd.DataFrame:
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


def check_not_all_null(frame: pd.DataFrame, side: str, uri: str, total: int) -> None:
    empty = [c for c in frame.columns if frame[c].notna().sum() == 0]
    if empty:
        raise DriftDetectionError(
            f"column(s) {empty} hold only nulls in the {side} data {uri} ({len(frame)} of {total} rows read); "
            "drift cannot be measured on them. Fix the upstream data or drop them with columns=."
        )


def check_finite(frame: pd.DataFrame, side: str, uri: str, total: int) -> None:
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
