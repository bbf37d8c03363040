"""Template macros of the lifecycle templates: storage paths and per-run keys that need no logical date.

Lifecycle DAGs have them as ``mlops_storage``, ``mlops_run_date`` and ``mlops_run_slug``; every DAG has the
last two as ``macros.airflow_mlops.run_date`` / ``run_slug`` through the plugin. Cheap to import.
"""

from __future__ import annotations

from typing import Any

from airflow_mlops.exceptions import MlopsConfigError


def storage_uri(*parts: str) -> str:
    """``[mlops] storage_base_uri`` joined with ``parts``: the template macro ``mlops_storage``."""
    from airflow_mlops.core.storage import join_uri
    from airflow_mlops.settings import get_settings

    return join_uri(get_settings().storage_base_uri, *parts)


def run_date(dag_run: Any) -> str:
    """
    ``YYYY-MM-DD`` of a run's data partition: its logical date, or when it has none (a UI/REST trigger with
    ``logical_date: null``, an Asset-triggered run) the date it was triggered for (``run_after``). The
    template macro ``mlops_run_date(dag_run)``; use it instead of ``ds``, which such runs do not have.
    """
    when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if when is None:
        raise MlopsConfigError("mlops_run_date(dag_run) needs the run's dag_run (it has neither date).")
    return str(when.strftime("%Y-%m-%d"))


def run_slug(run_id: str) -> str:
    """
    ``run_id`` as one safe path segment (``manual__2026-12-02T10:00:00+00:00`` ->
    ``manual__2026-12-02T10_00_00+00_00``): unique per run, the same for every try. The template macro
    ``mlops_run_slug(run_id)``, for per-run output paths.
    """
    from airflow_mlops.core.storage import safe_segment

    return safe_segment(run_id)
