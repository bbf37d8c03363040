"""Lifecycle listener of the airflow-mlops plugin: create the one-slot ``[mlops] promotion_pool`` if it is missing.

The alias-moving operators run in that pool by default, and Airflow never schedules a task whose pool does not
exist (it only logs a warning), so the pool is created when a scheduler, triggerer or dag-processor job starts.
An existing pool is left as it is (its slots are the deployment's choice); ``[mlops] promotion_pool = ""``
turns the default pool off. Task processes (workers) have no database access and are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

POOL_DESCRIPTION = "airflow-mlops: one champion alias move at a time ([mlops] promotion_pool)"


def ensure_promotion_pool() -> bool:
    """Create ``[mlops] promotion_pool`` with one slot if it does not exist; True when this call created it."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from airflow_mlops.settings import get_settings

    name = get_settings().promotion_pool
    if not name:
        return False
    try:
        with create_session() as session:
            if session.scalar(select(Pool.id).where(Pool.pool == name)) is not None:
                return False
            session.add(Pool(pool=name, slots=1, description=POOL_DESCRIPTION, include_deferred=False))
    except IntegrityError:  # another component created it at the same moment
        return False
    log.info("Created the one-slot Airflow pool %r for champion alias moves ([mlops] promotion_pool)", name)
    return True


@hookimpl
def on_starting(component: Any) -> None:
    if type(component).__name__ != "Job":  # task runners (no database access) start through here too
        return
    try:
        ensure_promotion_pool()
    except Exception:  # never stop a scheduler from starting; the DAG warning names the missing pool
        log.exception("Could not create the airflow-mlops promotion pool")
