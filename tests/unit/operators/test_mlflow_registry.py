"""The MLflow registry operators (operators/mlflow.py) on a real SQLite MLflow store: register, gate, rollback, set.

Each test has its own registered model and experiment; the task context is the minimal fake of _support.py.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops.core.aliases import alias_history
from airflow_mlops.core.tags import (
    TAG_DAG_ID,
    TAG_GATE_DECISION,
    TAG_GATE_REASONS,
    TAG_REGISTRY_KEY,
    TAG_TASK_ID,
    TAG_TRAINING_RUN,
    TAG_TRY_NUMBER,
)
from airflow_mlops.exceptions import (
    GateRuleError,
    MlopsConfigError,
    ModelGateRejected,
    ModelNotFound,
    ModelRegistryError,
)
from airflow_mlops.links.mlflow import MlflowModelVersionLink, MlflowRunLink
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.mlflow import (
    MlflowPromoteModelOperator,
    MlflowRegisterModelOperator,
    MlflowRollbackModelOperator,
    MlflowSetModelAliasOperator,
)
from tests.unit.operators._support import UI_URL

RULES = [{"metric": "val_auc", "min_delta": 0.0}, {"metric": "val_auc", "min": 0.7}]


def version_url(name: str, version: str) -> str:
    return f"{UI_URL}/#/models/{name}/versions/{version}"


def gate(name: str, version: str, **kwargs) -> MlflowPromoteModelOperator:
    return MlflowPromoteModelOperator(task_id="gate", name=name, version=version, rules=RULES, **kwargs)


@pytest.fixture
def two_versions(mlflow_conn, name):
    """v1 (val_auc 0.9) is the champion through the gate; v2 (val_auc 0.85) is registered, not judged."""
    v1 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    v2 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.85}))
    return v1, v2


# ---------------------------------------------------------------------------------------------- register
def test_register_creates_a_ready_version_with_lineage_tags_and_links(mlflow_conn, name, runtime):
    run = mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9})
    ctx = runtime.context("register")
    op = MlflowRegisterModelOperator(task_id="register", name=name, run_id=run.run_id, tags={"team": "risk"})

    out = op.execute(ctx)

    assert out == {
        "name": name,
        "version": "1",
        "run_id": run.run_id,
        "model_uri": f"models:/{name}/1",
        "created": True,
    }
    mv = mlflow_conn.client.get_model_version(name, "1")
    assert str(mv.status) == "READY" and mv.run_id == run.run_id
    assert mv.tags[TAG_TRAINING_RUN] == run.run_id
    assert mv.tags[TAG_DAG_ID] == "unit_dag" and mv.tags[TAG_TASK_ID] == "register"
    assert mv.tags["team"] == "risk" and mv.tags[TAG_REGISTRY_KEY].startswith("sha256:")
    assert TAG_TRY_NUMBER not in mv.tags  # a retry must find the same version: the try is not part of it
    ti = ctx["ti"]
    assert ti.pushed(MlflowModelVersionLink.xcom_url_key) == version_url(name, "1")
    assert (
        ti.pushed(MlflowRunLink.xcom_url_key)
        == f"{UI_URL}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    )


def test_a_retry_of_the_same_task_returns_the_same_version(mlflow_conn, name, runtime):
    run = mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9})
    op = MlflowRegisterModelOperator(task_id="register", name=name, run_id=run.run_id)
    first = op.execute(runtime.context("register", try_number=1))

    again = op.execute(runtime.context("register", try_number=2))

    assert first["created"] is True and again["created"] is False
    assert again["version"] == first["version"] == "1"
    assert mlflow_conn.versions(name) == ["1"]
    # another task instance registering the same run is another registration
    other = MlflowRegisterModelOperator(task_id="register_again", name=name, run_id=run.run_id)
    assert other.execute(runtime.context("register_again"))["version"] == "2"


def test_register_of_an_unknown_run_fails_for_good_and_creates_nothing(mlflow_conn, name, runtime):
    op = MlflowRegisterModelOperator(task_id="register", name=name, run_id="0" * 32)

    with pytest.raises(MlopsPermanentFailure) as info:
        op.execute(runtime.context("register"))

    assert isinstance(info.value.error, ModelNotFound)
    assert f"MLflow run {'0' * 32!r} does not exist" in str(info.value)
    assert name not in {m.name for m in mlflow_conn.client.search_registered_models()}


def test_register_needs_a_run_or_a_model_uri():
    with pytest.raises(MlopsConfigError, match="pass run_id"):
        MlflowRegisterModelOperator(task_id="register", name="m")


# ---------------------------------------------------------------------------------------------- the gate
def test_the_first_candidate_passing_the_floors_becomes_champion(mlflow_conn, name, runtime):
    version = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    ctx = runtime.context("gate")

    out = gate(name, version).execute(ctx)

    assert out["decision"] == "promoted" and out["promoted"] is True
    assert out["champion_version"] == "1" and out["previous_champion_version"] is None
    assert "no current champion: comparison rules skipped, floors decide" in out["reasons"]
    assert mlflow_conn.aliases(name) == {"champion": "1", "challenger": "1"}
    mv = mlflow_conn.client.get_model_version(name, "1")
    assert mv.tags[TAG_GATE_DECISION] == "promoted"
    assert json.loads(mv.tags[TAG_GATE_REASONS]) == out["reasons"]
    [event] = alias_history(mlflow_conn.client, name, "champion")
    assert (event.from_version, event.to_version, event.action) == (None, "1", "promote")
    assert ctx["ti"].pushed(MlflowModelVersionLink.xcom_url_key) == version_url(name, "1")


def test_a_better_candidate_replaces_the_champion(mlflow_conn, name, runtime):
    v1 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.8}))
    v2 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.95}))
    gate(name, v1).execute(runtime.context("gate"))

    out = gate(name, v2).execute(runtime.context("gate2"))

    assert out["promoted"] is True and out["previous_champion_version"] == v1
    assert mlflow_conn.aliases(name) == {"champion": v2, "challenger": v2}


def test_rejection_fails_the_task_for_good_and_pushes_the_decision(two_versions, mlflow_conn, name, runtime):
    v1, v2 = two_versions
    gate(name, v1).execute(runtime.context("gate"))
    ctx = runtime.context("gate2")

    with pytest.raises(MlopsPermanentFailure) as info:
        gate(name, v2, on_reject="fail").execute(ctx)

    assert isinstance(info.value.error, ModelGateRejected)
    assert f"Model {name!r} v{v2} was rejected by the gate; 'champion' stays v{v1}" in str(info.value)
    assert "val_auc: v2 0.85 vs champion v1 0.9" in str(info.value)
    decision = ctx["ti"].pushed("return_value")
    assert decision["decision"] == "rejected" and decision["promoted"] is False
    assert decision["champion_version"] == v1
    assert mlflow_conn.aliases(name) == {"champion": v1, "challenger": v2}
    assert mlflow_conn.client.get_model_version(name, v2).tags[TAG_GATE_DECISION] == "rejected"


def test_rejection_with_skip_skips_and_pushes_the_decision(two_versions, mlflow_conn, name, runtime):
    v1, v2 = two_versions
    gate(name, v1).execute(runtime.context("gate"))
    ctx = runtime.context("gate2")

    with pytest.raises(AirflowSkipException, match=f"{name} v{v2} rejected by the gate"):
        gate(name, v2, on_reject="skip").execute(ctx)

    assert ctx["ti"].pushed("return_value")["decision"] == "rejected"
    assert mlflow_conn.aliases(name)["champion"] == v1


@pytest.mark.parametrize("on_reject", ["warn", "succeed"])  # "succeed" is the word before 0.2
def test_rejection_with_warn_succeeds_and_returns_the_decision(
    two_versions, mlflow_conn, name, runtime, on_reject
):
    v1, v2 = two_versions
    gate(name, v1).execute(runtime.context("gate"))
    ctx = runtime.context("gate2")

    out = gate(name, v2, on_reject=on_reject).execute(ctx)

    assert out["decision"] == "rejected" and out["promoted"] is False and out["champion_version"] == v1
    assert any(r.endswith("fail") for r in out["reasons"])
    # returned, not pushed: Airflow stores the return value itself
    assert "return_value" not in dict(ctx["ti"].pushes)
    assert mlflow_conn.aliases(name) == {"champion": v1, "challenger": v2}


def test_a_gate_on_a_metric_the_run_lacks_fails_before_moving_anything(mlflow_conn, name, runtime):
    version = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    op = MlflowPromoteModelOperator(
        task_id="gate", name=name, version=version, rules=[{"metric": "f1", "min": 0.5}]
    )

    with pytest.raises(MlopsPermanentFailure, match=r"needs metrics \['f1'\]"):
        op.execute(runtime.context("gate"))

    assert mlflow_conn.aliases(name) == {}


def test_gate_arguments_are_checked_when_the_dag_is_parsed():
    with pytest.raises(MlopsConfigError, match="on_reject='later'"):
        MlflowPromoteModelOperator(task_id="gate", name="m", version=1, rules=[], on_reject="later")
    with pytest.raises(GateRuleError, match="gate rule #1 has unknown keys"):
        MlflowPromoteModelOperator(task_id="gate", name="m", version=1, rules=[{"metric": "auc", "mni": 1}])


# ---------------------------------------------------------------------------------------------- rollback and set
def test_rollback_moves_the_champion_back_once_per_task_instance(mlflow_conn, name, runtime):
    v1 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.8}))
    v2 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.95}))
    gate(name, v1).execute(runtime.context("gate"))
    gate(name, v2).execute(runtime.context("gate2"))
    op = MlflowRollbackModelOperator(task_id="rollback", name=name, reason="bad release")
    ctx = runtime.context("rollback")

    out = op.execute(ctx)
    retry = op.execute(runtime.context("rollback", try_number=2))

    assert out == {
        "name": name,
        "alias": "champion",
        "version": v1,
        "previous_version": v2,
        "action": "rollback",
        "moved": True,
        "reason": "bad release",
    }
    assert retry["moved"] is False and retry["version"] == v1  # not rolled back twice
    assert mlflow_conn.aliases(name)["champion"] == v1
    last = alias_history(mlflow_conn.client, name, "champion")[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == (
        "rollback",
        v2,
        v1,
        "bad release",
    )
    assert len(alias_history(mlflow_conn.client, name, "champion")) == 3  # promote, promote, one rollback
    assert ctx["ti"].pushed(MlflowModelVersionLink.xcom_url_key) == version_url(name, v1)


def test_rollback_without_an_earlier_champion_fails_with_the_fix(mlflow_conn, name, runtime):
    version = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    gate(name, version).execute(runtime.context("gate"))

    with pytest.raises(ModelRegistryError, match="nothing to roll back to. Pass version=<N>"):
        MlflowRollbackModelOperator(task_id="rollback", name=name).execute(runtime.context("rollback"))

    assert mlflow_conn.aliases(name)["champion"] == version


def test_set_alias_moves_it_and_records_the_move(two_versions, mlflow_conn, name, runtime):
    v1, v2 = two_versions
    op = MlflowSetModelAliasOperator(task_id="pin", name=name, alias="staging", version=v2, reason="canary")
    ctx = runtime.context("pin")

    out = op.execute(ctx)
    again = op.execute(runtime.context("pin", try_number=2))

    assert out == {
        "name": name,
        "alias": "staging",
        "version": v2,
        "previous_version": None,
        "action": "set",
        "moved": True,
        "reason": "canary",
    }
    assert again["moved"] is False and again["previous_version"] == v2
    assert mlflow_conn.aliases(name) == {"staging": v2}
    [event] = alias_history(mlflow_conn.client, name, "staging")
    assert (event.action, event.to_version, event.by) == ("set", v2, "unit_dag/manual__unit/pin/-1")
    assert ctx["ti"].pushed(MlflowModelVersionLink.xcom_url_key) == version_url(name, v2)

    moved = MlflowSetModelAliasOperator(task_id="pin2", name=name, alias="staging", version=v1).execute(
        runtime.context("pin2")
    )
    assert (moved["previous_version"], moved["version"], moved["moved"]) == (v2, v1, True)


def test_set_alias_to_a_missing_version_names_the_versions_that_exist(two_versions, name, runtime):
    op = MlflowSetModelAliasOperator(task_id="pin", name=name, alias="staging", version=9)

    with pytest.raises(MlopsPermanentFailure, match=r"has no version 9 \(versions: \[1, 2\]"):
        op.execute(runtime.context("pin"))
