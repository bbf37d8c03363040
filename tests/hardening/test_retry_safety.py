"""Retry safety of every operator: run each task twice on the same inputs, as Airflow would, and compare.

Each case builds a small DAG whose operator tasks are wrapped by :func:`flaky`: on try 1 the operator does all
its work and then the task fails (``InjectedFailure``), so Airflow retries it (``retries=1``, no delay): same
dag_id / run_id / task_id / map_index, try 2. The external state (MLflow runs + tags + params + metrics,
registered versions + tags + aliases, model tags holding the drift policy state and alias history, output
files and manifests byte for byte, reports, Asset events in the Airflow DB, live Kubernetes pods) is
snapshotted inside the task right after the operator's work on try 1 and on try 2: they must be identical.

Then every task of the finished run is run once more (cleared: try 3, the "re-run a successful task" path) and
the whole snapshot, Asset events included, must equal the one taken after the DAG run. Only the try number,
durations and timestamps may differ (see ``VOLATILE_KEYS`` in conftest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.conftest import MODEL_EXPERIMENT, Scope, diff, run_task_again, snapshot, unique
from tests.helpers.airflow import run_dag, task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 1, 1)
NAMESPACE = "ml"


class InjectedFailure(RuntimeError):
    """Raised by a flaky task after the operator's work, on try 1 only."""


@dataclass
class Recorder:
    """Snapshots taken inside the target task instance after the operator's work, keyed by try number."""

    target: tuple[str, int]
    take: Callable[[], dict[str, Any]]
    by_try: dict[int, dict[str, Any]]


_RECORDERS: dict[str, Recorder] = {}
_FLAKY: dict[type, type] = {}


def flaky(op_cls: type) -> type:
    """A subclass of ``op_cls`` whose task fails right after the operator's work on try 1."""
    if op_cls in _FLAKY:
        return _FLAKY[op_cls]

    class Flaky(op_cls):  # type: ignore[misc, valid-type]
        def execute(self, context: Any) -> Any:
            result = super().execute(context)
            ti = context["ti"]
            map_index = -1 if ti.map_index is None else int(ti.map_index)
            recorder = _RECORDERS.get(ti.dag_id)
            if recorder is not None and recorder.target == (ti.task_id, map_index):
                recorder.by_try[int(ti.try_number)] = recorder.take()
            if int(ti.try_number) == 1:
                raise InjectedFailure(f"injected failure after the work of {ti.task_id} try 1")
            return result

    Flaky.__name__ = Flaky.__qualname__ = op_cls.__name__
    _FLAKY[op_cls] = Flaky
    return Flaky


def rerun_every_task(dag: Any, dag_run: Any) -> dict[str, int]:
    """Clear and run every task instance of a finished run once more, upstream first; return try numbers."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    order = {task_id: i for i, task_id in enumerate(t.task_id for t in dag.topological_sort())}
    with create_session() as session:
        keys = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index).where(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    tries: dict[str, int] = {}
    for task_id, map_index in sorted(keys, key=lambda k: (order[k[0]], k[1])):
        state, try_number = run_task_again(dag, dag_run, task_id, map_index)
        key = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        assert state == "success", f"re-run of {key} ended {state}"
        tries[key] = try_number
    return tries


# ------------------------------------------------------------------------------------------ the cases
@dataclass
class Built:
    dag: Any
    scope: Scope
    target: tuple[str, int]
    check: Callable[[Any], None] = lambda dag_run: None


def _dag(dag_id: str) -> Any:
    from airflow.sdk import DAG

    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={"retries": 1, "retry_delay": timedelta(0)},
    )


def _register(client: Any, name: str, run_id: str, count: int = 1) -> list[str]:
    from airflow_mlops.core.registration import register_model_version

    return [
        register_model_version(client, name=name, run_id=run_id, key=f"setup-{i}", tags={}).version
        for i in range(count)
    ]


def case_validation(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.validation import GXValidateDatasetOperator

    dag_id = unique("retry_validation")
    reports = Path(env["tmp"]) / "reports"
    with _dag(dag_id) as dag:
        flaky(GXValidateDatasetOperator)(
            task_id="validate",
            dataset_uri=env["data"]["train"],
            suite=[
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "tenure", "min_value": -50},
                },
            ],
            report_uri=str(reports),
        )
    return Built(dag, Scope(dag_id, roots=[str(reports)]), ("validate", -1))


def _training_spec(env: dict[str, Any], experiment: str) -> dict[str, Any]:
    return {
        "experiment": experiment,
        "dataset_uri": env["data"]["train"],
        "target": "label",
        "features": ["age", "income", "tenure", "score"],
        "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}},
        "metrics": ["accuracy"],
    }


def _one_finished_run(experiment: str) -> Callable[[Any], None]:
    def check(dag_run: Any) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=dag_run.mlflow_url, registry_uri=dag_run.mlflow_url)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id])
        assert [r.info.status for r in runs] == ["FINISHED"], "a retried training left more than one run"

    return check


def case_local_training(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.training import LocalTrainModelOperator

    dag_id = unique("retry_local_train")
    experiment = unique("hardening-local")
    with _dag(dag_id) as dag:
        flaky(LocalTrainModelOperator)(task_id="train", training=_training_spec(env, experiment))
    return Built(dag, Scope(dag_id, experiments=[experiment]), ("train", -1), _one_finished_run(experiment))


def case_kubernetes_training(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

    dag_id = unique("retry_k8s_train")
    experiment = unique("hardening-k8s")
    with _dag(dag_id) as dag:
        flaky(KubernetesTrainModelOperator)(
            task_id="train",
            training=_training_spec(env, experiment),
            namespace=NAMESPACE,
            startup_check_interval_seconds=1,
            poll_interval=0.5,
        )
    scope = Scope(dag_id, experiments=[experiment], k8s=env["k8s"])
    return Built(dag, scope, ("train", -1), _one_finished_run(experiment))


def case_register(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.mlflow import MlflowRegisterModelOperator

    dag_id, name = unique("retry_register"), unique("hard-register")
    with _dag(dag_id) as dag:
        flaky(MlflowRegisterModelOperator)(task_id="register", name=name, run_id=env["model"]["run_id"])
    return Built(dag, Scope(dag_id, models=[name]), ("register", -1))


def case_promote(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator

    dag_id, name = unique("retry_promote"), unique("hard-promote")
    (version,) = _register(env["client"], name, env["model"]["run_id"])
    with _dag(dag_id) as dag:
        flaky(MlflowPromoteModelOperator)(
            task_id="gate", name=name, version=version, rules=[{"metric": "val_accuracy", "min": 0.5}]
        )
    return Built(dag, Scope(dag_id, models=[name]), ("gate", -1))


def case_approval(env: dict[str, Any]) -> Built:
    """
    The approver's answer is recorded, then the worker dies before the task ends: every later try replays the
    recorded answer (never asks again) and the champion moves once. An upstream task stands in for the API
    server writing the answer (tests/integration/test_approval.py does the real round trip).
    """
    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_mlops.core.gate import Approval, promote_if_better
    from airflow_mlops.core.tags import TAG_GATE_APPROVAL
    from airflow_mlops.operators.approval import MlflowApproveModelOperator

    dag_id, name = unique("retry_approval"), unique("hard-approval")
    client = env["client"]
    rules = [{"metric": "val_accuracy", "min": 0.5}]
    v1, v2 = _register(client, name, env["model"]["run_id"], count=2)
    promote_if_better(client, name, v1, rules, by="setup")
    assert (
        promote_if_better(client, name, v2, rules, by="setup", require_approval=True).decision
        == "awaiting_approval"
    )

    def answered(dag_run: Any = None, **_: Any) -> None:
        tags = client.get_model_version(name, v2).tags
        if TAG_GATE_APPROVAL not in tags:  # once: a re-run of this stand-in does not answer again
            answer = Approval(True, "alice", "reviewed")
            client.set_model_version_tag(
                name, v2, TAG_GATE_APPROVAL, answer.to_json(f"{dag_id}/{dag_run.run_id}/approve/-1")
            )

    with _dag(dag_id) as dag:
        answer = flaky(PythonOperator)(task_id="answer", python_callable=answered)
        approve = flaky(MlflowApproveModelOperator)(task_id="approve", name=name, version=v2, rules=rules)
        answer >> approve

    def check(dag_run: Any) -> None:  # moved once, by the approval, with who and why
        from airflow_mlops.core.aliases import alias_history

        assert client.get_registered_model(name).aliases["champion"] == v2
        moves = [e for e in alias_history(client, name, "champion") if e.to_version == v2]
        assert len(moves) == 1 and moves[0].reason.startswith("approved by alice: reviewed"), moves

    return Built(dag, Scope(dag_id, models=[name]), ("approve", -1), check)


def case_rollback(env: dict[str, Any]) -> Built:
    from airflow_mlops.core.aliases import set_alias
    from airflow_mlops.operators.mlflow import MlflowRollbackModelOperator

    dag_id, name = unique("retry_rollback"), unique("hard-rollback")
    client = env["client"]
    v1, v2, v3 = _register(client, name, env["model"]["run_id"], count=3)
    for version in (v1, v2, v3):
        set_alias(client, name, "champion", version, reason="setup", by="setup")
    with _dag(dag_id) as dag:
        flaky(MlflowRollbackModelOperator)(task_id="rollback", name=name, reason="bad model")

    def check(dag_run: Any) -> None:  # one step back (v2), not two (v1)
        assert client.get_registered_model(name).aliases["champion"] == v2

    return Built(dag, Scope(dag_id, models=[name]), ("rollback", -1), check)


def case_set_alias(env: dict[str, Any]) -> Built:
    from airflow_mlops.core.aliases import set_alias
    from airflow_mlops.operators.mlflow import MlflowSetModelAliasOperator

    dag_id, name = unique("retry_set_alias"), unique("hard-alias")
    client = env["client"]
    v1, v2 = _register(client, name, env["model"]["run_id"], count=2)
    set_alias(client, name, "champion", v1, reason="setup", by="setup")
    with _dag(dag_id) as dag:
        flaky(MlflowSetModelAliasOperator)(task_id="set_alias", name=name, alias="champion", version=v2)
    return Built(dag, Scope(dag_id, models=[name]), ("set_alias", -1))


def _champion(env: dict[str, Any], prefix: str) -> str:
    name = unique(prefix)
    (version,) = _register(env["client"], name, env["model"]["run_id"])
    env["client"].set_registered_model_alias(name, "champion", version)
    return name


def case_batch_inference(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.inference import BatchInferenceOperator

    dag_id, name = unique("retry_score"), _champion(env, "hard-score")
    out = Path(env["tmp"]) / "predictions"
    with _dag(dag_id) as dag:
        flaky(BatchInferenceOperator)(
            task_id="score",
            model_uri=f"models:/{name}@champion",
            input_uri=env["data"]["score_in"],
            output_uri=str(out / "pred.parquet"),
            passthrough_columns=["id"],
            batch_size=128,
        )
    return Built(dag, Scope(dag_id, models=[name], roots=[str(out)]), ("score", -1))


def case_spark_inference(env: dict[str, Any]) -> Built:
    """Try 1 scores on Spark (local[2]) and fails after its commit; the retry and the re-run find the manifest."""
    import json
    import os

    from airflow_mlops.operators.spark import SparkBatchInferenceOperator

    os.environ["AIRFLOW_CONN_SPARK_HARDENING"] = json.dumps({"conn_type": "spark", "host": "local[2]"})
    dag_id, name = unique("retry_spark_score"), _champion(env, "hard-spark-score")
    out = Path(env["tmp"]) / "predictions"
    with _dag(dag_id) as dag:
        flaky(SparkBatchInferenceOperator)(
            task_id="score",
            model_uri=f"models:/{name}@champion",
            input_uri=env["data"]["score_in"],
            output_uri=str(out / "pred.parquet"),
            passthrough_columns=["id"],
            spark_conn_id="spark_hardening",
            conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"},
        )
    return Built(dag, Scope(dag_id, models=[name], roots=[str(out)]), ("score", -1))


def case_sharded_inference(env: dict[str, Any]) -> Built:
    from airflow_mlops.operators.inference import (
        BatchInferenceCombineOperator,
        BatchInferenceOperator,
        BatchInferencePlanOperator,
    )

    dag_id, name = unique("retry_sharded"), _champion(env, "hard-shard")
    out = Path(env["tmp"]) / "sharded"
    with _dag(dag_id) as dag:
        plan = flaky(BatchInferencePlanOperator)(
            task_id="plan",
            model_uri=f"models:/{name}@champion",
            input_uri=env["data"]["score_in"],
            output_uri=str(out),
            num_shards=2,
        )
        shards = (
            flaky(BatchInferenceOperator)
            .partial(task_id="score", passthrough_columns=["id"], batch_size=128, outlets=[])
            .expand_kwargs(plan.output)
        )
        flaky(BatchInferenceCombineOperator)(task_id="combine", output_uri=str(out), shards=shards.output)
    return Built(dag, Scope(dag_id, models=[name], roots=[str(out)]), ("combine", -1))


def case_drift(env: dict[str, Any]) -> Built:
    from airflow_mlops.core.tags import TAG_DATASET_URI
    from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator

    dag_id, name = unique("retry_drift"), _champion(env, "hard-drift")
    env["client"].set_model_version_tag(name, "1", TAG_DATASET_URI, env["data"]["train"])
    reports = Path(env["tmp"]) / "drift"
    with _dag(dag_id) as dag:
        flaky(EvidentlyDetectDriftOperator)(
            task_id="drift",
            model_name=name,
            current_uri=env["data"]["current"],
            report_uri=str(reports),
            policy={"persistence": 1},
            sample_size=0,
        )

    def check(dag_run: Any) -> None:
        from tests.hardening.conftest import asset_events

        events = asset_events(dag_id)
        assert len(events) == 1 and events[0][0] == f"x-mlops://models/{name}/drift", events

    scope = Scope(dag_id, experiments=[MODEL_EXPERIMENT], models=[name], roots=[str(reports)])
    return Built(dag, scope, ("drift", -1), check)


CASES: dict[str, Callable[[dict[str, Any]], Built]] = {
    "GXValidateDatasetOperator": case_validation,
    "LocalTrainModelOperator": case_local_training,
    "KubernetesTrainModelOperator": case_kubernetes_training,
    "MlflowRegisterModelOperator": case_register,
    "MlflowPromoteModelOperator": case_promote,
    "MlflowApproveModelOperator": case_approval,
    "MlflowRollbackModelOperator": case_rollback,
    "MlflowSetModelAliasOperator": case_set_alias,
    "BatchInferenceOperator": case_batch_inference,
    "SparkBatchInferenceOperator": case_spark_inference,
    "BatchInference plan+shards+combine": case_sharded_inference,
    "EvidentlyDetectDriftOperator": case_drift,
}


@pytest.fixture
def k8s(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.helpers.k8s_emulator import K8sEmulator

    with K8sEmulator(namespace=NAMESPACE) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", emulator.connection_json())
        yield emulator
        assert emulator.wait_until_empty(), f"left behind: pods {emulator.live_pods()}"


@pytest.mark.parametrize("case", list(CASES))
def test_operator_is_retry_safe(
    case: str, airflow_db: Path, mlflow_server: Any, hard_data: dict[str, str], logged_model: Any, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    from mlflow import MlflowClient

    env: dict[str, Any] = {
        "data": hard_data,
        "model": logged_model,
        "tmp": str(tmp_path),
        "client": MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url),
        "k8s": request.getfixturevalue("k8s") if "Kubernetes" in case else None,
    }
    built = CASES[case](env)

    def take() -> dict[str, Any]:
        return snapshot(built.scope, mlflow_server.url)

    recorder = Recorder(built.target, take, {})
    _RECORDERS[built.dag.dag_id] = recorder
    try:
        dag_run = run_dag(built.dag)
    finally:
        _RECORDERS.pop(built.dag.dag_id, None)
    dag_run.mlflow_url = mlflow_server.url

    # every operator task failed once after its work and succeeded on its retry
    tries = _tries(dag_run)
    assert tries and all(t == 2 for t in tries.values()), tries
    assert set(recorder.by_try) == {1, 2}, recorder.by_try.keys()
    changed = diff(recorder.by_try[1], recorder.by_try[2])
    assert not changed, f"{case}: the retry changed the external state:\n" + "\n".join(changed)
    built.check(dag_run)

    after_run = take()
    reruns = rerun_every_task(built.dag, dag_run)
    assert all(t == 3 for t in reruns.values()), reruns
    after_rerun = take()
    changed = diff(after_run, after_rerun)
    assert not changed, f"{case}: re-running the tasks changed the external state:\n" + "\n".join(changed)
    built.check(dag_run)


def _tries(dag_run: Any) -> dict[str, int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    states = task_states(dag_run)
    assert set(states.values()) == {"success"}, states
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.try_number).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    out: dict[str, int] = defaultdict(int)
    for task_id, map_index, try_number in rows:
        out[task_id if map_index < 0 else f"{task_id}[{map_index}]"] = try_number
    return dict(out)
