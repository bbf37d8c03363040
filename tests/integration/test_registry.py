"""The registry against a real MLflow server: registration, the gate, history, rollback, the alias sensor.

Models are tiny scikit-learn classifiers logged by the tests with the lineage tags training would set.
Every test uses its own registered-model name, so tests share the session's server without interfering.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest

from airflow_mlops.core.aliases import alias_history, rollback_alias, set_alias
from airflow_mlops.core.gate import promote_if_better
from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.core.registration import (
    register_model_version,
    registration_key,
    resolve_model_source,
    settle_duplicates,
)
from airflow_mlops.core.registry import get_alias_version
from airflow_mlops.core.tags import (
    TAG_DAG_ID,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_GATE_DECISION,
    TAG_GATE_REASONS,
    TAG_REGISTRY_KEY,
    TAG_TASK_ID,
    TAG_TRAINING_RUN,
    TAG_VALIDATION,
)
from airflow_mlops.exceptions import GateRuleError, MlopsConfigError, ModelNotFound, ModelRegistryError
from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.airflow import run_dag, task_states, xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = [
    {"metric": "val_auc", "min_delta": 0.01, "greater_is_better": True},
    {"metric": "val_auc", "min": 0.7},
]
START = datetime(2026, 1, 1)


def _xcom_str(dag_run, task_id: str, key: str = "return_value") -> str | None:
    """A string XCom (tests.helpers.airflow.xcom would JSON-decode "2" into 2)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        )
    return value


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture(scope="module")
def tiny_model():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


@pytest.fixture(scope="module")
def log_run(mlflow_server, tiny_model):
    """Log a training-like run (lineage tags, val_* metrics, optionally a model); return its run id."""
    import mlflow
    import mlflow.sklearn

    def log(metrics: dict[str, float], *, with_model: bool = True) -> str:
        identity = AirflowIdentity(dag_id="train_dag", run_id="r1", task_id="train")
        tags = {
            **identity.to_tags(),
            TAG_DATASET_URI: "file:///data/train.parquet",
            TAG_DATASET_FINGERPRINT: "sha256:abc",
            TAG_VALIDATION: json.dumps({"success": True, "evaluated": 3}),
        }
        with MlflowHook().session():
            mlflow.set_experiment("registry-tests")
            with mlflow.start_run(tags=tags) as run:
                if with_model:
                    mlflow.sklearn.log_model(tiny_model, name="model", pip_requirements=["scikit-learn"])
                mlflow.log_metrics(metrics)
        return run.info.run_id

    return log


@pytest.fixture(scope="module")
def runs(log_run) -> dict[str, str]:
    """Runs shared by the tests (each registers them under its own model name): base, worse, better."""
    return {
        "base": log_run({"val_auc": 0.80, "val_f1": 0.7}),
        "worse": log_run({"val_auc": 0.805, "val_f1": 0.7}),
        "better": log_run({"val_auc": 0.85, "val_f1": 0.7}),
    }


# ---------------------------------------------------------------- registration
def test_registration_is_idempotent_per_key_and_carries_lineage(client, runs):
    name = _name("reg")
    run_id = runs["base"]
    first = register_model_version(
        client, name=name, run_id=run_id, key="dag/run/register/-1", tags={"team": "ml"}
    )
    assert first.created and first.version == "1" and first.model_uri == f"models:/{name}/1"
    assert first.to_summary() == {
        "name": name, "version": "1", "run_id": run_id, "model_uri": f"models:/{name}/1", "created": True,
    }  # fmt: skip
    retry = register_model_version(
        client, name=name, run_id=run_id, key="dag/run/register/-1", tags={"team": "ml"}
    )
    assert (retry.version, retry.created) == ("1", False)
    tags = client.get_model_version(name, "1").tags
    assert tags[TAG_TRAINING_RUN] == run_id
    assert tags[TAG_DATASET_URI] == "file:///data/train.parquet"
    assert tags[TAG_DATASET_FINGERPRINT] == "sha256:abc"
    assert json.loads(tags[TAG_VALIDATION]) == {"success": True, "evaluated": 3}
    assert tags["team"] == "ml" and tags[TAG_REGISTRY_KEY].startswith("sha256:")
    # another task instance (or no key) registers a new version
    other = register_model_version(
        client, name=name, model_uri=f"runs:/{run_id}/model", key="dag/run2/register/-1"
    )
    assert (other.version, other.created) == ("2", True)
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_bad_sources_fail_clearly_and_create_nothing(client, log_run):
    name = _name("bad")
    with pytest.raises(ModelNotFound, match="run 'no-such-run' does not exist"):
        register_model_version(client, name=name, run_id="no-such-run", key="k")
    no_model = log_run({"val_auc": 0.9}, with_model=False)
    with pytest.raises(ModelNotFound, match=f"run '{no_model}' has no logged model"):
        register_model_version(client, name=name, run_id=no_model, key="k")
    with pytest.raises(ModelNotFound, match="no logged model named 'weights'"):
        register_model_version(client, name=name, model_uri=f"runs:/{no_model}/weights")
    with pytest.raises(ModelNotFound, match="Logged model 'models:/m-0000' does not exist"):
        register_model_version(client, name=name, model_uri="models:/m-0000")
    with pytest.raises(MlopsConfigError, match="Nothing to register"):
        register_model_version(client, name=name)
    assert client.search_registered_models(f"name = '{name}'") == []


def test_concurrent_registrations_with_one_key_end_with_one_version(client, runs, mlflow_server):
    """Eight threads, each with its own client (as separate workers would), register with the same key at once."""
    from mlflow import MlflowClient

    name = _name("race")
    run_id = runs["base"]
    register_model_version(client, name=name, run_id=run_id, key="warm-up")  # the registered model exists
    for round_no in range(2):
        key = f"dag/run/register/{round_no}"
        barrier = threading.Barrier(8)
        results, errors = [], []

        def attempt(key=key, barrier=barrier, results=results, errors=errors):
            own = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
            barrier.wait()
            try:
                results.append(register_model_version(own, name=name, run_id=run_id, key=key))
            except Exception as err:  # surfaced below with its message
                errors.append(err)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert len({r.version for r in results}) == 1, [r.version for r in results]
        assert sum(r.created for r in results) == 1
        key_value = registration_key(name, key, results[0].source)
        kept = client.search_model_versions(f"tags.`{TAG_REGISTRY_KEY}` = '{key_value}'")
        assert [str(mv.version) for mv in kept] == [results[0].version]


def test_duplicates_left_by_a_race_are_settled_lowest_wins(client, runs):
    """Two versions with one key (what two racers leave before they re-check): the lowest stays."""
    name = _name("settle")
    run_id = runs["base"]
    register_model_version(client, name=name, run_id=run_id)
    src = resolve_model_source(client, run_id=run_id)
    value = registration_key(name, "k", src.source)
    a, b = (
        client.create_model_version(
            name,
            src.source,
            run_id,
            tags={TAG_REGISTRY_KEY: value},
            await_creation_for=0,
            model_id=src.model_id,
        )
        for _ in range(2)
    )
    winner = settle_duplicates(client, name, value, mine=str(b.version))
    assert str(winner.version) == str(a.version)
    left = client.search_model_versions(f"tags.`{TAG_REGISTRY_KEY}` = '{value}'")
    assert [str(mv.version) for mv in left] == [str(a.version)]
    # a later registration with that key returns the survivor
    again = register_model_version(client, name=name, run_id=run_id, key="k")
    assert (again.version, again.created) == (str(a.version), False)


# ---------------------------------------------------------------- the gate, history and rollback
def test_champion_story_gate_history_and_rollback(client, runs):
    name = _name("story")
    v1 = register_model_version(client, name=name, run_id=runs["base"], key="k1").version
    v2 = register_model_version(client, name=name, run_id=runs["worse"], key="k2").version
    v3 = register_model_version(client, name=name, run_id=runs["better"], key="k3").version

    first = promote_if_better(client, name, v1, RULES, by="dag/a/gate/-1")
    assert first.promoted and first.champion_version == v1 and first.previous_champion_version is None
    assert get_alias_version(client, name, "champion") == v1

    worse = promote_if_better(client, name, v2, RULES, by="dag/b/gate/-1")
    assert worse.to_summary()["decision"] == "rejected" and not worse.promoted
    assert worse.champion_version == v1 and get_alias_version(client, name, "champion") == v1
    assert get_alias_version(client, name, "challenger") == v2  # the challenger always moves
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_GATE_DECISION] == "rejected"
    recorded = json.loads(tags[TAG_GATE_REASONS])
    assert any("min_delta 0.01: fail" in r and f"champion v{v1}" in r for r in recorded)

    better = promote_if_better(client, name, v3, RULES, by="dag/c/gate/-1")
    assert better.to_summary() == {
        "name": name, "version": v3, "decision": "promoted", "promoted": True, "champion_version": v3,
        "previous_champion_version": v1, "reasons": better.reasons,
    }  # fmt: skip
    history = alias_history(client, name, "champion")
    assert [(e.action, e.from_version, e.to_version, e.by) for e in history] == [
        ("promote", None, v1, "dag/a/gate/-1"),
        ("promote", v1, v3, "dag/c/gate/-1"),
    ]
    assert "min_delta" in history[-1].reason and history[-1].at

    again = promote_if_better(client, name, v3, RULES, by="dag/c/gate/-1")  # a retried gate task
    assert again.promoted and again.previous_champion_version == v1
    assert len(alias_history(client, name, "champion")) == 2

    back = rollback_alias(client, name, "champion", reason="bad latency", by="dag/d/rollback/-1")
    assert (back.version, back.previous_version, back.moved) == (v1, v3, True)
    assert get_alias_version(client, name, "champion") == v1
    retried = rollback_alias(client, name, "champion", by="dag/d/rollback/-1")  # the same task retried
    assert not retried.moved and get_alias_version(client, name, "champion") == v1
    last = alias_history(client, name, "champion")[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == (
        "rollback",
        v3,
        v1,
        "bad latency",
    )
    with pytest.raises(ModelRegistryError, match="nothing to roll back to"):
        rollback_alias(client, name, "champion", by="dag/e/rollback/-1")
    assert rollback_alias(client, name, "champion", version=v3, by="dag/f/rollback/-1").version == v3
    copied = register_model_version(
        client, name=f"{name}-prod", model_uri=f"models:/{name}@champion", key="c"
    )
    assert (copied.version, copied.run_id) == ("1", runs["better"])


def test_gate_bad_input_moves_nothing(client, runs):
    name = _name("gatebad")
    v1 = register_model_version(client, name=name, run_id=runs["base"], key="k").version
    with pytest.raises(GateRuleError) as info:
        promote_if_better(client, name, v1, [{"metric": "val_acc", "min": 0.5}])
    assert (
        "['val_acc']" in str(info.value) and "'val_auc'" in str(info.value) and "'val_f1'" in str(info.value)
    )
    with pytest.raises(GateRuleError, match="unknown keys"):
        promote_if_better(client, name, v1, [{"metric": "val_auc", "minimum": 0.5}])
    with pytest.raises(ModelNotFound, match=r"has no version 7 \(versions: \[1\]; aliases: "):
        promote_if_better(client, name, 7, RULES)
    with pytest.raises(ModelNotFound, match=f"registered model '{name}-x' does not exist"):
        promote_if_better(client, f"{name}-x", 1, RULES)
    assert client.get_registered_model(name).aliases == {}
    assert TAG_GATE_DECISION not in client.get_model_version(name, v1).tags
    set_alias(client, name, "staging", v1, by="me")
    with pytest.raises(ModelNotFound, match=r"has no alias 'champion' \(aliases: staging -> v1\)"):
        rollback_alias(client, name, "champion")


# ---------------------------------------------------------------- operators in real DAG runs
def test_register_and_gate_operators_in_dag_runs(airflow_db, client, runs):
    from airflow.sdk import DAG

    from airflow_mlops.operators.mlflow import (
        MlflowPromoteModelOperator,
        MlflowRegisterModelOperator,
        MlflowRollbackModelOperator,
    )

    class CrashAfterRegistering(MlflowRegisterModelOperator):
        """Registers, then dies on the first try, as a worker lost after the MLflow call would."""

        def execute(self, context):
            result = super().execute(context)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost after registering")
            return result

    name = _name("dag")
    with DAG("registry_ops", schedule=None, start_date=START, catchup=False) as dag:
        register = CrashAfterRegistering(
            task_id="register", name=name, run_id="{{ params.run_id }}", retries=1, retry_delay=timedelta(0)
        )
        gate = MlflowPromoteModelOperator(
            task_id="gate", name=name, version=register.output["version"], rules=RULES, on_reject="fail"
        )
        register >> gate

    good = runs["base"]
    first = run_dag(dag, conf={"run_id": good})
    # try 1 registered then crashed; try 2 found that version instead of creating another
    assert xcom(first, "register") == {
        "name": name,
        "version": "1",
        "run_id": good,
        "model_uri": f"models:/{name}/1",
        "created": False,
    }
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    tags = client.get_model_version(name, "1").tags
    assert tags[TAG_DAG_ID] == "registry_ops" and tags[TAG_TASK_ID] == "register"
    gate_result = xcom(first, "gate")
    assert gate_result["decision"] == "promoted" and gate_result["champion_version"] == "1"
    assert _xcom_str(first, "register", key="mlflow_model_version_url").endswith(
        f"/#/models/{name}/versions/1"
    )
    assert "/#/experiments/" in _xcom_str(first, "register", key="mlflow_run_url")

    worse = run_dag(dag, conf={"run_id": runs["worse"]}, expect="failed")
    assert task_states(worse)["gate"] == "failed"
    assert "rejected by the gate" in worse.task_errors["gate"] and "min_delta" in worse.task_errors["gate"]
    assert xcom(worse, "gate")["decision"] == "rejected"
    assert get_alias_version(client, name, "champion") == "1"
    assert get_alias_version(client, name, "challenger") == "2"

    better = run_dag(dag, conf={"run_id": runs["better"]})
    assert xcom(better, "gate")["previous_champion_version"] == "1"
    assert get_alias_version(client, name, "champion") == "3"

    with DAG("registry_rollback", schedule=None, start_date=START, catchup=False) as undo:
        MlflowRollbackModelOperator(task_id="rollback", name=name, reason="{{ params.why }}")
    rolled = run_dag(undo, conf={"why": "incident 42"})
    assert xcom(rolled, "rollback") == {
        "name": name, "alias": "champion", "version": "1", "previous_version": "3", "action": "rollback",
        "moved": True, "reason": "incident 42",
    }  # fmt: skip
    assert get_alias_version(client, name, "champion") == "1"


def test_operator_arguments_fail_at_parse_time():
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator, MlflowRegisterModelOperator

    with pytest.raises(GateRuleError, match="checks nothing"):
        MlflowPromoteModelOperator(task_id="g", name="m", version="1", rules=[{"metric": "val_auc"}])
    with pytest.raises(MlopsConfigError, match="on_reject='maybe'"):
        MlflowPromoteModelOperator(task_id="g", name="m", version="1", rules=RULES, on_reject="maybe")
    with pytest.raises(MlopsConfigError, match="rules is required"):
        MlflowPromoteModelOperator(task_id="g", name="m", version="1", rules=None)
    with pytest.raises(MlopsConfigError, match="pass run_id"):
        MlflowRegisterModelOperator(task_id="r", name="m")
    templated = MlflowPromoteModelOperator(task_id="g", name="m", version="1", rules="{{ params.rules }}")
    assert templated.rules == "{{ params.rules }}"


def test_deferrable_sensor_fires_when_another_task_moves_the_alias(airflow_db, client, runs, mlflow_server):
    """
    ``arm_mover`` (upstream of the sensor) starts a mover that waits until the sensor has deferred, then moves
    ``champion`` from v1 to v2 with MlflowSetModelAliasOperator's core call. The sensor's pre-check saw v1 (else it
    would not have deferred), so only the trigger, run inline by dag.test, can have seen v2.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk import DAG, task
    from airflow.utils.session import create_session
    from mlflow import MlflowClient
    from sqlalchemy import select

    from airflow_mlops.sensors.mlflow import MlflowModelAliasSensor

    name = _name("sensor")
    run_id = runs["base"]
    v1 = register_model_version(client, name=name, run_id=run_id, key="a").version
    v2 = register_model_version(client, name=name, run_id=run_id, key="b").version
    set_alias(client, name, "champion", v1)
    seen: dict[str, bool] = {}
    dag_id = f"registry_sensor_{uuid.uuid4().hex[:6]}"

    def move_once_deferred() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen.get("deferred"):
            with create_session() as session:
                seen["deferred"] = bool(
                    session.scalar(
                        select(TaskInstance.next_method).where(
                            TaskInstance.dag_id == dag_id, TaskInstance.task_id == "wait"
                        )
                    )
                )
            time.sleep(0.2)
        own = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        set_alias(own, name, "champion", v2, reason="moved by arm_mover", by=f"{dag_id}/arm_mover")

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:

        @task
        def arm_mover() -> None:
            threading.Thread(target=move_once_deferred, daemon=True).start()

        wait = MlflowModelAliasSensor(
            task_id="wait", name=name, alias="champion", not_version=v1, deferrable=True,
            poke_interval=0.2, timeout=120,
        )  # fmt: skip
        arm_mover() >> wait

    dag_run = run_dag(dag)
    assert seen.get("deferred"), "the sensor never deferred"
    assert _xcom_str(dag_run, "wait") == v2
    assert _xcom_str(dag_run, "wait", key="mlflow_model_version_url").endswith(f"/versions/{v2}")


def test_sensor_returns_at_once_when_alias_already_moved(airflow_db, client, runs):
    from airflow.sdk import DAG

    from airflow_mlops.operators.mlflow import MlflowSetModelAliasOperator
    from airflow_mlops.sensors.mlflow import MlflowModelAliasSensor

    name = _name("poke")
    run_id = runs["base"]
    v1 = register_model_version(client, name=name, run_id=run_id, key="a").version
    with DAG(f"registry_poke_{uuid.uuid4().hex[:6]}", schedule=None, start_date=START, catchup=False) as dag:
        move = MlflowSetModelAliasOperator(
            task_id="move", name=name, alias="champion", version=v1, reason="manual"
        )
        wait = MlflowModelAliasSensor(task_id="wait", name=name, poke_interval=0.2, timeout=30)
        missing = MlflowModelAliasSensor(
            task_id="missing", name=f"{name}-nope", poke_interval=0.2, timeout=30, deferrable=True
        )
        move >> [wait, missing]
    dag_run = run_dag(dag, expect="failed")
    assert task_states(dag_run) == {"move": "success", "wait": "success", "missing": "failed"}
    assert xcom(dag_run, "move")["moved"] is True and _xcom_str(dag_run, "wait") == v1
    assert f"registered model '{name}-nope' does not exist" in dag_run.task_errors["missing"]
    assert alias_history(client, name, "champion")[-1].reason == "manual"


def _documented_block(doc: str, until: str) -> str:
    """The first ```python block of ``docs/<doc>`` up to the line starting with ``until``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / doc).read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    return block.split(until, 1)[0]


def test_documented_wiring_train_output_run_id_works(airflow_db, mlflow_server, tmp_path):
    """docs/registry.md wires ``run_id=train.output["run_id"]``: the snippet, run as written after a real training."""
    import pandas as pd
    from airflow.models.pool import Pool
    from airflow.sdk import DAG
    from sklearn.datasets import make_classification

    from airflow_mlops.operators.training import LocalTrainModelOperator

    features, labels = make_classification(n_samples=600, n_features=5, n_informative=3, random_state=3)
    data = pd.DataFrame(features, columns=[f"f{i}" for i in range(5)]).assign(label=labels)
    data.to_parquet(tmp_path / "train.parquet", index=False)
    Pool.create_or_update_pool(
        "mlops_promotion", slots=1, description="champion moves", include_deferred=False
    )
    name = f"churn-doc-{uuid.uuid4().hex[:6]}"
    snippet = _documented_block("registry.md", "# in another DAG").replace('"churn"', repr(name))
    with DAG(f"doc_wiring_{uuid.uuid4().hex[:6]}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        train = LocalTrainModelOperator(
            task_id="train",
            training={
                "experiment": name,
                "dataset_uri": str(tmp_path / "train.parquet"),
                "target": "label",
                "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
                "metrics": ["roc_auc", "accuracy"],
            },
        )
        namespace = {"train": train}
        exec(compile(snippet, "docs/registry.md", "exec"), namespace)
        namespace["train"] >> namespace["register"]
    dag_run = run_dag(dag)
    assert xcom(dag_run, "train", "run_id") == xcom(dag_run, "train")["run_id"]
    assert xcom(dag_run, "register")["run_id"] == xcom(dag_run, "train")["run_id"]
    assert xcom(dag_run, "gate")["decision"] == "promoted"
