"""Suites as plain data: :class:`ExpectationSpec`, :class:`SuiteSpec` and :func:`load_suite` with its loaders.

A suite is a GX suite JSON file, a list of ``{"type": ..., "kwargs": ...}`` dicts, a suite dict, a
``gx.ExpectationSuite`` or a callable returning one; every form becomes a :class:`SuiteSpec` without touching
data, and every bad form raises one :class:`~airflow_mlops.exceptions.SuiteError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from airflow_mlops.core import storage
from airflow_mlops.core.validation.gx_context import ensure_gx_context
from airflow_mlops.core.validation.values import short_value
from airflow_mlops.exceptions import MlopsError, SuiteError, first_line

SuiteLike = Union[str, "os.PathLike[str]", Sequence[Mapping[str, Any]], Mapping[str, Any], Callable[[], Any]]

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
        inner = ", ".join(f"{k}={short_value(self.kwargs[k])}" for k in keys)
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
        ensure_gx_context(quiet)  # ExpectationSuite.add_expectation needs an active context
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
