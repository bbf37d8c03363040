"""Read the XCom of finished DAG runs from the metadata DB.

The one query lives in :func:`airflow_mlops.demo.task_xcom` (``./dev demo`` reads its results with it, and
tests/ is not installed); this module adds the DagRun-shaped conveniences the tests use.
"""

from __future__ import annotations

from typing import Any

from airflow_mlops.demo import task_xcom

__all__ = ["run_xcoms", "task_xcom", "xcom"]


def xcom(
    dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1, *, raw: bool = False
) -> Any:
    """One XCom value of a task of ``dag_run`` (None when there is none); see :func:`task_xcom` for ``raw``."""
    return task_xcom(dag_run.dag_id, dag_run.run_id, task_id, key, map_index, raw=raw)


def run_xcoms(dag_run: Any) -> list[tuple[str, str, Any]]:
    """Every XCom row of ``dag_run`` as stored: ``(task_id, key, value)``, for checks that scan them all."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id
            )
        ).all()
    return [(task_id, key, value) for task_id, key, value in rows]
