"""The input schema check, run on every input file before anything is written, and the bad-values diagnosis.

A dataset that does not fit the model's signature fails here with every missing or mistyped column named; a
batch the model then fails on is searched for missing and infinite values, so the error names columns and rows.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from airflow_mlops.core.storage import is_local, local_path
from airflow_mlops.exceptions import DatasetError, SchemaMismatch, first_line

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import pyarrow as pa

    from airflow_mlops.core.scoring.model import LoadedModel, ModelInputs


# MLflow column type -> predicate over the Arrow type of a column that may feed it without loss.
def _accepts(mlflow_type: str, arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    t = pa.types
    small_int = t.is_int8(arrow_type) or t.is_int16(arrow_type) or t.is_uint8(arrow_type)
    int32ish = small_int or t.is_int32(arrow_type) or t.is_uint16(arrow_type)
    if mlflow_type == "double":
        return bool(t.is_floating(arrow_type) or int32ish or t.is_uint32(arrow_type))
    if mlflow_type == "float":
        return bool(t.is_float16(arrow_type) or t.is_float32(arrow_type) or small_int)
    if mlflow_type == "long":
        return bool(t.is_integer(arrow_type) and not t.is_uint64(arrow_type))
    if mlflow_type == "integer":
        return bool(int32ish)
    if mlflow_type == "boolean":
        return bool(t.is_boolean(arrow_type))
    if mlflow_type == "string":
        return bool(t.is_string(arrow_type) or t.is_large_string(arrow_type))
    if mlflow_type == "binary":
        return bool(t.is_binary(arrow_type) or t.is_large_binary(arrow_type))
    if mlflow_type == "datetime":
        return bool(t.is_timestamp(arrow_type) or t.is_date(arrow_type))
    if mlflow_type == "numeric":  # tensor signatures: any number
        return bool(t.is_floating(arrow_type) or t.is_integer(arrow_type) or t.is_boolean(arrow_type))
    return True  # types we do not check (arrays, objects, any): the model itself validates them


_NUMERIC_TYPES = frozenset({"double", "float", "long", "integer", "numeric"})


def _is_text(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def check_input_schema(
    model: LoadedModel | ModelInputs,
    arrow_schema: pa.Schema,
    *,
    dataset: str,
    passthrough: Sequence[str] = (),
) -> None:
    """Raise SchemaMismatch naming every missing or mistyped column, the model name and version, and the fix."""
    have = {f.name: f.type for f in arrow_schema}
    missing = [f.name for f in model.features if f.required and f.name not in have]
    bad = [
        f"{f.name} ({have[f.name]}, signature wants {f.type})"
        for f in model.features
        if f.name in have and not _accepts(f.type, have[f.name])
    ]
    missing_pass = [c for c in passthrough if c not in have]
    text_for_numbers = [
        f.name
        for f in model.features
        if f.name in have and f.type in _NUMERIC_TYPES and _is_text(have[f.name])
    ]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if bad:
        problems.append(f"column(s) with types the signature rejects: {', '.join(bad)}")
    if text_for_numbers:
        problems.append(
            f"{text_for_numbers} hold text where the model needs numbers: one non-numeric value (e.g. "
            "'unknown' in a CSV) makes the whole column text, so clean or drop such values, or cast the column"
        )
    if missing_pass:
        problems.append(f"missing passthrough column(s) {missing_pass}")
    if problems:
        raise SchemaMismatch(
            f"dataset {dataset} does not fit model {model.ref.name} v{model.ref.version}: {'; '.join(problems)}. "
            f"The dataset has {sorted(have)}; fix the data (or cast the columns) or score with a model whose "
            "signature matches."
        )


def bad_values_error(
    model: LoadedModel, batch: pa.RecordBatch, *, dataset: str, first_row: int, cause: BaseException
) -> DatasetError | None:
    """
    After the model failed on ``batch``: a DatasetError naming the feature columns with missing (null, NaN)
    or infinite values, their counts and first rows, and the fix; None when the batch has none.

    Only on failure, because many models score missing values themselves (histogram gradient boosting, an
    imputer in the pipeline); sklearn's own message ("Input X contains NaN") names neither column nor row.
    Rows count from 0 over the whole input, in file order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    found, kinds = [], set()
    for name in model.feature_names:
        if name not in batch.schema.names:
            continue
        column = batch.column(name)
        checks = [("missing (null or NaN)", pc.is_null(column, nan_is_null=True))]
        if pa.types.is_floating(column.type):
            checks.append(("infinite", pc.fill_null(pc.is_inf(column), False)))
        for what, mask in checks:
            count = int(pc.sum(mask).as_py() or 0)
            if count:
                first = first_row + int(pc.index(mask, True).as_py())
                found.append(f"{count} {what} value(s) in column {name!r} (first at row {first})")
                kinds.add(what.split()[0])
    if not found:
        return None
    fixes = []
    if "missing" in kinds:
        fixes.append(
            "fill or drop the missing values before scoring, or add an imputer to the model pipeline"
        )
    if "infinite" in kinds:
        fixes.append("replace the infinite values (with null and impute, or clip them) before scoring")
    end = first_row + batch.num_rows - 1
    fix = "; ".join(fixes)
    return DatasetError(
        f"dataset {dataset} holds values model {model.ref.name} v{model.ref.version} cannot score: "
        f"{'; '.join(found)}, counted in rows {first_row}-{end}, the batch it failed on "
        f"({first_line(cause).rstrip('.')}). "
        f"{fix[0].upper()}{fix[1:]}. No predictions were written."
    )


@contextlib.contextmanager
def removing_new_folders_on_error(output_uri: str) -> Iterator[None]:
    """
    On an exception, remove the (local) folders above ``output_uri`` that did not exist on entry and are still
    empty, so that a job failing on bad data leaves no empty output folder behind. Object stores have no real
    folders: nothing to do there. ``os.rmdir`` removes empty folders only, never another writer's files.
    """
    created: list[str] = []
    if is_local(output_uri):
        folder = os.path.dirname(os.path.abspath(local_path(output_uri)))
        while not os.path.exists(folder):
            created.append(folder)  # deepest first
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    try:
        yield
    except BaseException:
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or already gone): leave it and everything above it
                break
        raise
