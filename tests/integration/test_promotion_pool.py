"""The alias-moving operators run in ``[mlops] promotion_pool`` by default, and the plugin creates that pool."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def _pool(name: str):
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        pool = session.scalar(select(Pool).where(Pool.pool == name))
        return None if pool is None else (pool.slots, pool.include_deferred)


def _drop_pool(name: str) -> None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Pool).where(Pool.pool == name))


def test_alias_moving_operators_default_to_the_promotion_pool():
    from airflow_mlops.operators.mlflow import (
        MlflowPromoteModelOperator,
        MlflowRegisterModelOperator,
        MlflowRollbackModelOperator,
        MlflowSetModelAliasOperator,
    )

    gate = MlflowPromoteModelOperator(task_id="gate", name="m", version=1, rules=[])
    rollback = MlflowRollbackModelOperator(task_id="rollback", name="m")
    pin = MlflowSetModelAliasOperator(task_id="pin", name="m", alias="champion", version=1)
    assert {gate.pool, rollback.pool, pin.pool} == {"mlops_promotion"}
    assert MlflowPromoteModelOperator(task_id="g2", name="m", version=1, rules=[], pool="mine").pool == "mine"
    assert MlflowRegisterModelOperator(task_id="register", name="m", run_id="r").pool == "default_pool"


def test_an_empty_promotion_pool_setting_turns_the_default_off(monkeypatch):
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator
    from airflow_mlops.settings import get_settings

    monkeypatch.setenv("AIRFLOW__MLOPS__PROMOTION_POOL", "")
    get_settings.cache_clear()
    try:
        assert (
            MlflowPromoteModelOperator(task_id="gate", name="m", version=1, rules=[]).pool == "default_pool"
        )
    finally:
        monkeypatch.delenv("AIRFLOW__MLOPS__PROMOTION_POOL")
        get_settings.cache_clear()


def test_a_starting_scheduler_job_creates_the_pool_once(airflow_db):
    """A real ``Job`` start goes through Airflow's listener manager to the plugin's listener."""
    from airflow.jobs.job import Job
    from airflow.models.pool import Pool

    from airflow_mlops.plugins.listeners import ensure_promotion_pool

    _drop_pool("mlops_promotion")
    Job(job_type="SchedulerJob")
    assert _pool("mlops_promotion") == (1, False)
    Pool.create_or_update_pool("mlops_promotion", slots=3, description="ours", include_deferred=False)
    Job(job_type="TriggererJob")
    assert _pool("mlops_promotion") == (3, False)  # an existing pool keeps the deployment's slots
    assert ensure_promotion_pool() is False
    _drop_pool("mlops_promotion")
    assert ensure_promotion_pool() is True and _pool("mlops_promotion") == (1, False)
