"""EvidentlyDetectDriftOperator (operators/drift.py): Evidently in-process on small parquet files, SQLite MLflow.

The reference is the model version's recorded training dataset (its ``mlops.data.uri`` tag); the compared
columns come from its signature (``a``, ``b``). Datasets are 300 rows so Evidently takes about a second.
"""

from __future__ import annotations

import json

import pytest

from airflow_mlops.assets import drift_asset, drift_asset_alias
from airflow_mlops.core.model_drift import METRIC_DRIFT_SHARE
from airflow_mlops.core.policy import MlflowPolicyStore
from airflow_mlops.core.report_owner import OWNER_NAME
from airflow_mlops.core.tags import TAG_DATASET_URI, TAG_DRIFT_LAST, TAG_DRIFT_MODEL
from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound
from airflow_mlops.links.drift import DriftReportLink
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator
from tests.unit.operators._support import feature_frame

ROWS = 300


@pytest.fixture
def data(tmp_path):
    """Reference data, current data like it, and current data with both features shifted by 3 sigma."""
    paths = {}
    for key, seed, shift in (("reference", 1, 0.0), ("same", 2, 0.0), ("shifted", 3, 3.0)):
        paths[key] = tmp_path / f"{key}.parquet"
        feature_frame(rows=ROWS, seed=seed, shift=shift).to_parquet(paths[key], index=False)
    return paths


@pytest.fixture
def model(mlflow_conn, name, data):
    """``name`` v1, trained (by its lineage tag) on the reference data, is the champion."""
    run = mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9})
    version = mlflow_conn.register(name, run, **{TAG_DATASET_URI: str(data["reference"])})
    mlflow_conn.client.set_registered_model_alias(name, "champion", version)
    return name


def check(name: str, current, report_dir, task_id: str = "drift", **kwargs) -> EvidentlyDetectDriftOperator:
    return EvidentlyDetectDriftOperator(
        task_id=task_id, model_name=name, current_uri=str(current), report_uri=str(report_dir), **kwargs
    )


def test_drift_is_reported_recorded_and_emitted(mlflow_conn, model, data, tmp_path, runtime):
    reports = tmp_path / "reports"
    ctx = runtime.context("drift")

    out = check(model, data["shifted"], reports).execute(ctx)

    assert out["model_name"] == model and out["model_version"] == "1"
    assert out["drift_detected"] is True and out["drifted_columns"] == ["a", "b"] and out["n_columns"] == 2
    assert out["confirmed"] is True and out["emitted"] is True and out["replayed"] is False
    assert out["policy_reason"] == "confirmed drift: retraining event emitted"
    assert out["reference_uri"].endswith("reference.parquet") and out["reference_rows"] == ROWS
    assert {"drift.html", "drift.json", "result.json", OWNER_NAME} <= {p.name for p in reports.iterdir()}
    owner = json.loads((reports / OWNER_NAME).read_text())
    assert (owner["dag_id"], owner["task_id"]) == ("unit_dag", "drift")
    assert ctx["ti"].pushed(DriftReportLink.xcom_url_key).endswith("drift.html")
    [event] = runtime.added(drift_asset_alias())
    assert event.asset == drift_asset(model)
    assert (
        event.extra["check_key"] == "unit_dag/manual__unit/drift/-1" and event.extra["model_version"] == "1"
    )
    assert event.extra["drifted_columns"] == ["a", "b"]
    # the drift share is an MLflow metric of a history run; the latest check is tagged on the version
    history = mlflow_conn.client.get_run(out["mlflow_run_id"])
    assert history.data.tags[TAG_DRIFT_MODEL] == model
    assert history.data.metrics[METRIC_DRIFT_SHARE] == pytest.approx(1.0)
    last = json.loads(mlflow_conn.client.get_model_version(model, "1").tags[TAG_DRIFT_LAST])
    assert last["drift_detected"] is True and last["run_id"] == out["mlflow_run_id"]
    state = MlflowPolicyStore(mlflow_conn.client, model).load()
    assert state.last_confirmed["key"] == "unit_dag/manual__unit/drift/-1" and state.last_confirmed["emitted"]


def test_no_drift_emits_nothing(mlflow_conn, model, data, tmp_path, runtime):
    out = check(model, data["same"], tmp_path / "reports").execute(runtime.context("drift"))

    assert out["drift_detected"] is False and out["drifted_columns"] == []
    assert out["confirmed"] is False and out["emitted"] is False
    assert out["policy_reason"] == "no drift"
    assert runtime.events == []
    assert MlflowPolicyStore(mlflow_conn.client, model).load().last_confirmed is None


def test_a_retry_replays_the_recorded_decision_and_does_not_emit_twice(
    mlflow_conn, model, data, tmp_path, runtime
):
    op = check(model, data["shifted"], tmp_path / "reports")
    first = op.execute(runtime.context("drift"))

    again = op.execute(runtime.context("drift"))  # the same try cleared and run again

    assert first["emitted"] is True and again["replayed"] is True
    assert again["confirmed"] is True and again["emitted"] is False
    assert again["mlflow_run_id"] == first["mlflow_run_id"]  # the check's MLflow run is reused
    assert len(runtime.added(drift_asset_alias())) == 1
    state = MlflowPolicyStore(mlflow_conn.client, model).load()
    assert [r.key for r in state.history] == ["unit_dag/manual__unit/drift/-1"]  # the policy advanced once

    # when the past events cannot be read back the operator emits (a duplicate rather than nothing)
    blind = runtime.context("drift")
    del blind["inlet_events"]
    assert op.execute(blind)["emitted"] is True
    assert len(runtime.added(drift_asset_alias())) == 2


def test_persistence_needs_consecutive_drifted_checks(model, data, tmp_path, runtime):
    policy = {"persistence": 2}

    first = check(model, data["shifted"], tmp_path / "r1", policy=policy).execute(runtime.context("drift"))
    second = check(model, data["shifted"], tmp_path / "r2", task_id="drift2", policy=policy).execute(
        runtime.context("drift2")
    )

    assert first["drift_detected"] is True and first["confirmed"] is False and first["emitted"] is False
    assert first["policy_reason"] == "drift on 1 of 2 consecutive check(s) needed"
    assert second["confirmed"] is True and second["emitted"] is True
    assert [e.extra["check_key"] for e in runtime.added(drift_asset_alias())] == [
        "unit_dag/manual__unit/drift2/-1"
    ]


def test_an_unknown_model_fails_for_good(mlflow_conn, name, data, tmp_path, runtime):
    with pytest.raises(MlopsPermanentFailure) as info:
        check(name, data["same"], tmp_path / "reports").execute(runtime.context("drift"))

    assert isinstance(info.value.error, ModelNotFound)
    assert f"registered model {name!r} does not exist" in str(info.value)
    assert not (tmp_path / "reports").exists()


def test_arguments_are_checked_at_parse_time():
    with pytest.raises(MlopsConfigError, match=r"drift_share=1.5 must be in \(0, 1\]"):
        EvidentlyDetectDriftOperator(task_id="d", model_name="m", current_uri="c", drift_share=1.5)
    with pytest.raises(MlopsConfigError, match=r"unknown retraining policy field\(s\) \['persist'\]"):
        EvidentlyDetectDriftOperator(task_id="d", model_name="m", current_uri="c", policy={"persist": 2})
