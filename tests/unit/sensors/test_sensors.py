"""MlflowModelAliasSensor and DriftSensor (sensors/) poking a real SQLite MLflow store, in non-deferrable mode.

The drift history the DriftSensor reads is written by the retraining policy itself
(:class:`~airflow_mlops.core.policy.MlflowPolicyStore`), as the drift operator does after each check.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_mlops.core.policy import DriftCheck, MlflowPolicyStore, RetrainingPolicy
from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound
from airflow_mlops.links.mlflow import MlflowModelVersionLink
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.sensors.drift import DriftSensor
from airflow_mlops.sensors.mlflow import MlflowModelAliasSensor
from tests.unit.operators._support import UI_URL


# ---------------------------------------------------------------------------------------------- alias sensor
@pytest.fixture
def two_versions(mlflow_conn, name):
    run = mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9})
    return mlflow_conn.register(name, run), mlflow_conn.register(name, run)


def alias_sensor(name: str, **kwargs) -> MlflowModelAliasSensor:
    return MlflowModelAliasSensor(task_id="wait", name=name, deferrable=False, **kwargs)


def test_alias_sensor_waits_until_the_alias_exists(mlflow_conn, two_versions, name, runtime):
    v1, _ = two_versions
    sensor = alias_sensor(name)
    ctx = runtime.context("wait")

    before = sensor.poke(ctx)
    mlflow_conn.client.set_registered_model_alias(name, "champion", v1)
    after = sensor.poke(ctx)

    assert before.is_done is False and before.xcom_value is None
    assert after.is_done is True and after.xcom_value == v1
    assert ctx["ti"].pushed(MlflowModelVersionLink.xcom_url_key) == f"{UI_URL}/#/models/{name}/versions/{v1}"


def test_alias_sensor_with_not_version_waits_for_a_move(mlflow_conn, two_versions, name, runtime):
    v1, v2 = two_versions
    mlflow_conn.client.set_registered_model_alias(name, "serving", v1)
    sensor = alias_sensor(name, alias="serving", not_version=v1)

    assert sensor.poke(runtime.context("wait")).is_done is False
    mlflow_conn.client.set_registered_model_alias(name, "serving", v2)
    moved = sensor.poke(runtime.context("wait"))

    assert moved.is_done is True and moved.xcom_value == v2


def test_alias_sensor_execute_returns_the_version_or_times_out(mlflow_conn, two_versions, name, runtime):
    v1, _ = two_versions
    waiting = alias_sensor(name, poke_interval=0.05, timeout=0.2)
    with pytest.raises(AirflowSensorTimeout, match="Sensor has timed out"):
        waiting.execute(runtime.context("wait"))

    mlflow_conn.client.set_registered_model_alias(name, "champion", v1)
    assert alias_sensor(name).execute(runtime.context("wait", try_number=2)) == v1


def test_alias_sensor_on_an_unknown_model_fails_at_once(mlflow_conn, two_versions, name, runtime):
    sensor = alias_sensor(f"{name}-typo", timeout=60)

    with pytest.raises(MlopsPermanentFailure) as info:
        sensor.execute(runtime.context("wait"))

    assert isinstance(info.value.error, ModelNotFound)
    assert f"(did you mean {name!r}?)" in str(info.value)


def test_alias_sensor_refuses_a_reserved_alias(mlflow_conn, name, runtime):
    with pytest.raises(MlopsConfigError, match="'latest' is reserved by MLflow"):
        alias_sensor(name, alias="latest").poke(runtime.context("wait"))


# ---------------------------------------------------------------------------------------------- drift sensor
def record_check(store, name: str, key: str, *, drifted: bool, policy: RetrainingPolicy | None = None):
    """One drift check recorded by the retraining policy on registered model ``name``."""
    check = DriftCheck(
        key=key, version="1", drifted=drifted, share=1.0 if drifted else 0.0, report_uri=f"/r/{key}"
    )
    return MlflowPolicyStore(store.client, name, settle=0).apply(policy or RetrainingPolicy(), check)[1]


@pytest.fixture
def model(mlflow_conn, name):
    mlflow_conn.client.create_registered_model(name)
    return name


def drift_sensor(name: str, **kwargs) -> DriftSensor:
    return DriftSensor(task_id="wait_for_drift", model_name=name, deferrable=False, **kwargs)


def test_drift_sensor_waits_for_confirmed_drift_after_the_run_started(mlflow_conn, model, runtime):
    sensor = drift_sensor(model)
    ctx = runtime.context("wait_for_drift")

    assert sensor.poke(ctx).is_done is False  # no check yet
    record_check(mlflow_conn, model, "dag/run/check/-1", drifted=False)
    assert sensor.poke(ctx).is_done is False  # a check without drift
    record_check(mlflow_conn, model, "dag/run2/check/-1", drifted=True)
    found = sensor.poke(ctx)

    assert found.is_done is True
    assert found.xcom_value["model_name"] == model and found.xcom_value["key"] == "dag/run2/check/-1"
    assert found.xcom_value["emitted"] is True and found.xcom_value["report_uri"] == "/r/dag/run2/check/-1"
    assert found.xcom_value["at"] >= runtime.run_after.timestamp()


def test_drift_sensor_ignores_confirmations_before_since(mlflow_conn, model, runtime):
    record_check(mlflow_conn, model, "dag/run/check/-1", drifted=True)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    assert drift_sensor(model, since=later).poke(runtime.context("w")).is_done is False
    assert drift_sensor(model, since=time.time() - 60).poke(runtime.context("w")).is_done is True


def test_drift_sensor_can_require_an_emitted_retraining_event(mlflow_conn, model, runtime):
    policy = RetrainingPolicy(cooldown="1d")
    assert record_check(mlflow_conn, model, "dag/a/check/-1", drifted=True, policy=policy).emit is True
    muted = record_check(mlflow_conn, model, "dag/b/check/-1", drifted=True, policy=policy)
    assert muted.confirmed is True and muted.emit is False  # inside the cool-down

    assert drift_sensor(model).poke(runtime.context("w")).xcom_value["key"] == "dag/b/check/-1"
    assert drift_sensor(model, require_emitted=True).poke(runtime.context("w")).is_done is False


def test_drift_sensor_execute_returns_the_confirmed_check(mlflow_conn, model, runtime):
    record_check(mlflow_conn, model, "dag/run/check/-1", drifted=True)

    out = drift_sensor(model).execute(runtime.context("wait_for_drift"))

    assert out["key"] == "dag/run/check/-1" and out["version"] == "1" and out["share"] == 1.0


def test_drift_sensor_on_an_unregistered_model_fails_at_once(mlflow_conn, name, runtime):
    with pytest.raises(MlopsPermanentFailure, match=f"registered model {name!r} does not exist"):
        drift_sensor(name, timeout=60).execute(runtime.context("w"))


def test_drift_sensor_refuses_a_since_it_cannot_read(mlflow_conn, model, runtime):
    with pytest.raises(MlopsConfigError, match="since='yesterday' is not an ISO-8601 timestamp"):
        drift_sensor(model, since="yesterday").poke(runtime.context("w"))
