"""Helpers every airflow-mlops operator shares: task identity and the MLflow hook of a task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.core.lineage import AirflowIdentity

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


def identity_from_context(context: Context) -> AirflowIdentity:
    """The AirflowIdentity of the running task instance."""
    ti: Any = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return AirflowIdentity(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=int(getattr(ti, "try_number", 1) or 1),
        map_index=-1 if map_index is None else int(map_index),
    )


def resolve_mlflow_conn_id(conn_id: str | None) -> str:
    """An explicit connection id, else the ``[mlops] mlflow_conn_id`` option."""
    if conn_id:
        return conn_id
    from airflow_mlops.settings import get_settings

    return get_settings().mlflow_conn_id
