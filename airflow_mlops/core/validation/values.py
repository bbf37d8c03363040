"""JSON-value helpers: GX results hold numpy/pandas scalars, NaN and dates; reports and XCom need plain JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any


def jsonable(value: Any) -> Any:  # noqa: C901 - one branch per value type GX results hold
    """Plain JSON types: numpy/pandas scalars unwrapped, NaN/NaT to None, dates to ISO strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return jsonable(item())
        except (ValueError, TypeError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    if value.__class__.__name__ in {"NaTType", "NAType"}:
        return None
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    to_json = getattr(value, "to_json_dict", None)
    if callable(to_json):
        return jsonable(to_json())
    return str(value)


def distinct(values: Iterable[Any], limit: int) -> list[Any]:
    """The first ``limit`` distinct values, JSON-safe (GX lists the first unexpected values, duplicates and all)."""
    seen: dict[str, Any] = {}
    if limit <= 0:
        return []
    for value in values:
        plain = jsonable(value)
        seen.setdefault(json.dumps(plain, sort_keys=True, default=str), plain)
        if len(seen) >= limit:
            break
    return list(seen.values())


def short_value(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def float_or_none(value: Any) -> float | None:
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return None if number is None or math.isnan(number) else round(number, 6)
