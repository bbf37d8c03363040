"""EvidentlyDetectDriftOperator, the MLflow-kept retraining policy and DriftSensor on a real MLflow server and
a real SQLite Airflow DB (DAGs run with dag.test())."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.assets import drift_asset
from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.core.policy import DriftCheck, MlflowPolicyStore, PolicyState, RetrainingPolicy
from airflow_mlops.core.report_owner import read_owner
from airflow_mlops.core.tags import TAG_DATASET_FINGERPRINT, TAG_DATASET_URI, TAG_DRIFT_STATE
from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.airflow import run_dag, task_states
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURES = ["age", "income", "tenure", "score"]


def make_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40 + 10 * shift, 10, n),
            "income": rng.normal(50 + 20 * shift, 10, n),
            "tenure": rng.normal(5 + 2 * shift, 2, n),
            "score": rng.normal(0, 1, n),
        }
    )
    frame["label"] = (frame["score"] + rng.normal(0, 0.5, n) > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def drift_data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("drift-int")
    out = {}
    for name, frame in {
        "train": make_frame(4000, 1),
        "same": make_frame(3000, 2).drop(columns="label"),
        "shifted": make_frame(3000, 3, shift=1.0).drop(columns="label"),
        "empty": make_frame(10, 4).drop(columns="label").iloc[:0],
    }.items():
        frame.to_parquet(root / f"{name}.parquet")
        out[name] = str(root / f"{name}.parquet")
    return out


def log_tiny_model(train_uri: str, experiment: str = "drift-tests") -> dict[str, str]:
    """Log a tiny sklearn model with the lineage tags training writes on its run (no registration)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    train = pd.read_parquet(train_uri)
    clf = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
    with MlflowHook().session():
        mlflow.set_experiment(experiment)
        with mlflow.start_run() as run:
            mlflow.set_tags({TAG_DATASET_URI: train_uri, TAG_DATASET_FINGERPRINT: fingerprint(train_uri)})
            info = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(train[FEATURES], clf.predict(train[FEATURES])),
                pip_requirements=["scikit-learn"],
            )
    return {"model_uri": info.model_uri, "run_id": run.info.run_id}


@pytest.fixture(scope="module")
def logged_model(mlflow_server, drift_data) -> dict[str, str]:
    return log_tiny_model(drift_data["train"])


def register_model(logged_model, name: str, *, tag_version: bool = True) -> str:
    """A registered model ``name`` with version 1 = the logged model, aliased champion, with lineage tags."""
    import mlflow

    with MlflowHook().session() as client:
        mv = mlflow.register_model(logged_model["model_uri"], name)
        if tag_version:
            run_tags = client.get_run(logged_model["run_id"]).data.tags
            client.set_model_version_tag(name, mv.version, TAG_DATASET_URI, run_tags[TAG_DATASET_URI])
        client.set_registered_model_alias(name, "champion", mv.version)
    return str(mv.version)


def _state(name: str) -> PolicyState:
    with MlflowHook().session() as client:
        return MlflowPolicyStore(client, name).load()


def _events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra, AssetEvent.source_dag_id, AssetEvent.source_run_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == drift_asset(name).name)
            .order_by(AssetEvent.id)
        ).all()
    return [{"extra": r[0], "dag_id": r[1], "run_id": r[2]} for r in rows]


def _dag(dag_id: str, name: str, current: str, **op_kwargs):
    from airflow.sdk import DAG

    from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        EvidentlyDetectDriftOperator(
            task_id="drift", model_name=name, current_uri=current, sample_size=0, **op_kwargs
        )
    return dag


def test_dag_run_emits_the_drift_event_with_its_extra(airflow_db, mlflow_server, logged_model, drift_data):
    name = "drift-churn"
    version = register_model(logged_model, name)
    dag_run = run_dag(_dag("drift_emit", name, drift_data["shifted"]))
    summary = xcom(dag_run, "drift")
    assert summary["drift_detected"] and summary["emitted"] and summary["confirmed"]
    assert sorted(summary["drifted_columns"]) == ["age", "income", "tenure"]
    assert summary["n_columns"] == 4  # the signature's inputs: the training label is not compared
    assert summary["reference_uri"] == drift_data["train"]
    events = _events(name)
    assert len(events) == 1
    extra = events[0]["extra"]
    assert extra["model_version"] == version and extra["model_name"] == name
    assert extra["drift_share"] == pytest.approx(0.75)
    assert sorted(extra["drifted_columns"]) == ["age", "income", "tenure"]
    assert extra["report_uri"].endswith("drift.html") and extra["report_uri"] == summary["report_uri"]
    assert extra["reference_fingerprint"] == fingerprint(drift_data["train"])
    assert extra["current_fingerprint"] == fingerprint(drift_data["shifted"])
    assert extra["check_key"] == f"drift_emit/{dag_run.run_id}/drift/-1"
    assert "drift.html" in str(xcom(dag_run, "drift", "mlops_drift_report_url"))
    owner = read_owner(summary["report_uri"].rsplit("/", 1)[0])  # what the report viewer authorizes by
    assert owner is not None and owner.dag_id == "drift_emit" and owner.run_id == dag_run.run_id
    assert sorted(owner.files) == ["drift.html", "drift.json", "result.json"]
    assert owner.scripts == ("drift.html",)  # Evidently's page is served with scripts, in the sandbox
    with MlflowHook().session() as client:
        run = client.get_run(summary["mlflow_run_id"])
        assert run.data.metrics["drift_share"] == pytest.approx(0.75)
        history = client.get_metric_history(run.info.run_id, "drift_share")
        assert len(history) == 1
        assert client.get_model_version(name, version).tags["mlops.drift.last_check"]
    state = _state(name)
    assert state.last_retrain is not None and len(state.history) == 1

    # a check on same-distribution data records "no drift" and emits nothing
    quiet = run_dag(_dag("drift_quiet", name, drift_data["same"]))
    assert not xcom(quiet, "drift")["drift_detected"] and not xcom(quiet, "drift")["emitted"]
    assert len(_events(name)) == 1 and len(_state(name).history) == 2


def test_retried_check_emits_once_and_advances_the_policy_once(
    airflow_db, mlflow_server, logged_model, drift_data
):
    from airflow.sdk import DAG

    from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator

    class FlakyDrift(EvidentlyDetectDriftOperator):
        """Fails its first try after the check and the policy update, like a worker lost mid-task."""

        def execute(self, context):
            result = super().execute(context)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost after the policy update")
            return result

    name = "drift-retry"
    register_model(logged_model, name)
    with DAG("drift_retry", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        FlakyDrift(
            task_id="drift",
            model_name=name,
            current_uri=drift_data["shifted"],
            sample_size=0,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    dag_run = run_dag(dag)
    summary = xcom(dag_run, "drift")
    assert summary["replayed"] and summary["emitted"]
    events = _events(name)
    assert len(events) == 1 and events[0]["run_id"] == dag_run.run_id
    state = _state(name)
    assert len(state.history) == 1 and len(state.retrains) == 1


def test_bad_input_fails_emits_nothing_and_keeps_the_policy_state(
    airflow_db, mlflow_server, logged_model, drift_data, tmp_path
):
    name = "drift-bad"
    register_model(logged_model, name, tag_version=False)  # reference comes from the run's lineage tag
    before = _state(name)
    empty = run_dag(_dag("drift_empty", name, drift_data["empty"]), expect="failed")
    assert "is empty (0 rows)" in empty.task_errors["drift"]
    missing = run_dag(
        _dag("drift_missing_ref", name, drift_data["same"], reference_uri=str(tmp_path / "gone.parquet")),
        expect="failed",
    )
    assert "does not exist" in missing.task_errors["drift"]
    assert task_states(missing) == {"drift": "failed"}
    assert _events(name) == [] and _state(name) == before


def test_store_keeps_policy_in_mlflow_with_compare_and_set(mlflow_server, logged_model):
    name = "drift-policy"
    register_model(logged_model, name)
    policy = RetrainingPolicy(persistence=2, cooldown="1h")
    with MlflowHook().session() as client:
        store = MlflowPolicyStore(client, name)
        t0 = 1_000_000.0
        _, first = store.apply(policy, DriftCheck("k1", "1", True, 0.8), now=t0)
        _, second = store.apply(policy, DriftCheck("k2", "1", True, 0.8), now=t0 + 60)
        _, third = store.apply(policy, DriftCheck("k3", "1", True, 0.8), now=t0 + 120)
        _, fourth = store.apply(policy, DriftCheck("k4", "1", True, 0.8), now=t0 + 180)
        _, replay = store.apply(policy, DriftCheck("k2", "1", True, 0.8), now=t0 + 240)
        assert [first.emit, second.emit, third.emit, fourth.emit] == [False, True, False, False]
        assert "1 of 2" in first.reason and "1 of 2" in third.reason  # persistence restarts after a retrain
        assert fourth.confirmed and "cool-down" in fourth.reason
        assert replay.replayed and replay.emit
        assert store.load().rev == 4

        class ChangedBeforeWrite(MlflowPolicyStore):
            """Another writer records a check between our decision and our revision check, once."""

            loads = 0

            def load(self):
                ChangedBeforeWrite.loads += 1
                if ChangedBeforeWrite.loads == 2:
                    MlflowPolicyStore(client, name, settle=0).apply(
                        policy, DriftCheck("other", "1", False, 0.1), now=t0 + 299
                    )
                return super().load()

        stored, decision = ChangedBeforeWrite(client, name, sleep=0, settle=0).apply(
            policy, DriftCheck("k5", "1", True, 0.9), now=t0 + 300
        )
        assert [h.key for h in stored.history][-2:] == ["other", "k5"]
        assert stored.rev == 6 and decision.consecutive == 1  # decided again on top of the other's "no drift"

        class OverwrittenAfterWrite(MlflowPolicyStore):
            """Another writer lands right after our write: we see its token on read-back and re-apply."""

            raced = False

            def _write(self, state):
                super()._write(state)
                if not OverwrittenAfterWrite.raced:
                    OverwrittenAfterWrite.raced = True
                    MlflowPolicyStore(client, name, settle=0).apply(
                        policy, DriftCheck("rival", "1", True, 0.6), now=t0 + 301
                    )

        stored, decision = OverwrittenAfterWrite(client, name, sleep=0, settle=0).apply(
            policy, DriftCheck("k6", "1", True, 0.9), now=t0 + 302
        )
        assert {"k6", "rival"} <= {h.key for h in stored.history} and stored.rev == 8
        assert json.loads(client.get_registered_model(name).tags[TAG_DRIFT_STATE])["rev"] == 8


def test_drift_sensor_and_trigger(airflow_db, mlflow_server, logged_model):
    from airflow.sdk import DAG

    from airflow_mlops.sensors.drift import DriftSensor
    from airflow_mlops.triggers.drift import DriftConfirmedTrigger

    name = "drift-sensor"
    register_model(logged_model, name)
    start = time.time()
    trigger = DriftConfirmedTrigger(model_name=name, since=start, poll_interval=0.2)
    path, kwargs = trigger.serialize()
    assert path == "airflow_mlops.triggers.drift.DriftConfirmedTrigger"
    assert DriftConfirmedTrigger(**kwargs).serialize() == (path, kwargs)

    def confirm_later() -> None:
        time.sleep(1.0)
        with MlflowHook().session() as client:
            MlflowPolicyStore(client, name).apply(
                RetrainingPolicy(), DriftCheck("late", "1", True, 0.7, "r.html")
            )

    async def first_event():
        agen = trigger.run()
        return await asyncio.wait_for(agen.__anext__(), timeout=60)

    writer = threading.Thread(target=confirm_later)
    writer.start()
    event = asyncio.run(first_event())
    writer.join()
    assert event.payload["status"] == "success" and event.payload["drift"]["key"] == "late"

    missing = asyncio.run(
        asyncio.wait_for(DriftConfirmedTrigger(model_name="no-such-model", since=0).run().__anext__(), 60)
    )
    assert missing.payload["status"] == "error" and "does not exist" in missing.payload["message"]

    with DAG("drift_sensor", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        DriftSensor(task_id="wait", model_name=name, since=start - 1, poke_interval=1, timeout=60)
    dag_run = run_dag(dag)
    assert xcom(dag_run, "wait")["key"] == "late"
