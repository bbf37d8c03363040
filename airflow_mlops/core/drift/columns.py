"""Column planning: which columns a drift check compares, and as which kind (numerical or categorical)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlops.core.data import DatasetRef, schema
from airflow_mlops.core.drift.results import CATEGORICAL, NUMERICAL
from airflow_mlops.exceptions import MlopsConfigError, SchemaMismatch

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa


def kind_of(arrow_type: pa.DataType) -> str | None:
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
        ref_kind, cur_kind = kind_of(ref_type), kind_of(cur_type)
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
