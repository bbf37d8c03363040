"""The approval gate through the real API server: an approver answers the HITL request over the REST API.

``dag.test()`` runs gate -> approve in this process against the session's SQLite metadata DB and MLflow server;
the approve task parks in ``awaiting_input`` (no worker slot) until a user answers. A second thread plays the
approver against a real ``airflow api-server`` on the same DB: it finds the pending request, checks what it
shows, and answers with ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_mlops.core.aliases import alias_history
from airflow_mlops.core.gate import promote_if_better
from airflow_mlops.core.registration import register_model_version
from airflow_mlops.core.tags import TAG_GATE_APPROVAL, TAG_GATE_DECISION, TAG_GATE_REASONS
from tests.helpers.airflow import run_dag, task_states
from tests.helpers.airflow_api_server import AirflowApiServer
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = {"alice": ("user", "alice-pw"), "bob": ("user", "bob-pw"), "victor": ("viewer", "victor-pw")}
RULES = [{"metric": "val_auc", "min_delta": 0.0}]


@pytest.fixture(scope="module")
def api(
    airflow_db: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowApiServer]:
    with AirflowApiServer(tmp_path_factory.mktemp("approval-api"), USERS) as server:
        yield server


def _client(mlflow_server: Any) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _version(client: Any, uri: str, name: str, auc: float) -> str:
    import mlflow
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    from tests.unit.operators._support import _fluent

    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    with _fluent(uri), mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("val_auc", auc)
        logged = mlflow.sklearn.log_model(
            DummyClassifier().fit([[0.0], [1.0]], [0, 1]), name="model", serialization_format="cloudpickle"
        )
    return register_model_version(
        client,
        name=name,
        run_id=run.info.run_id,
        model_uri=f"models:/{logged.model_id}",
        await_ready_timeout=30,
    ).version


def _dag(name: str, version: str) -> Any:
    from airflow.sdk import DAG

    from airflow_mlops.operators.approval import MlflowApproveModelOperator
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator

    with DAG(f"approval_{uuid.uuid4().hex[:8]}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        gate = MlflowPromoteModelOperator(task_id="gate", name=name, version=version, rules=RULES, require_approval=True, pool=None)  # fmt: skip
        approve = MlflowApproveModelOperator(
            task_id="approve", name=name, version=gate.output["version"], rules=RULES
        )
        gate >> approve
    return dag


class Approver(threading.Thread):
    """Waits for the DAG's pending request, records what the API shows, then answers it as ``user``."""

    def __init__(self, api: AirflowApiServer, dag_id: str, answers: list[tuple[str, str, str]]) -> None:
        super().__init__(daemon=True)
        self.api, self.dag_id, self.answers = api, dag_id, answers
        self.tokens = {user: api.token(user) for user in USERS}
        self.request: dict[str, Any] = {}
        self.state_while_waiting = ""
        self.responses: list[tuple[str, int, Any]] = []
        self.error: BaseException | None = None

    def _call(self, method: str, path: str, user: str = "alice", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return requests.request(method, f"{self.api.url}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not self.request:
                found = self._call("GET", f"/dags/{self.dag_id}/dagRuns/~/hitlDetails").json()
                pending = [d for d in found.get("hitl_details", []) if not d.get("response_received")]
                if pending:
                    self.request = pending[0]
                    break
                time.sleep(1)
            assert self.request, "no approval request appeared"
            ti = self.request["task_instance"]
            path = f"/dags/{self.dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
            self.state_while_waiting = self._call("GET", path).json()["state"]
            for user, option, reason in self.answers:
                body = {"chosen_options": [option], "params_input": {"reason": reason}}
                answered = self._call("PATCH", f"{path}/-1/hitlDetails", user, json=body)
                self.responses.append((user, answered.status_code, answered.json()))
        except BaseException as err:
            self.error = err


def _run_with(api: AirflowApiServer, dag: Any, answers: list[tuple[str, str, str]]) -> tuple[Any, Approver]:
    approver = Approver(api, dag.dag_id, answers)
    approver.start()
    dag_run = run_dag(dag)
    approver.join(60)
    assert approver.error is None, approver.error
    return dag_run, approver


def _champion_and_candidate(mlflow_server: Any, stem: str, auc: float) -> tuple[Any, str, str, str]:
    """(client, name, v1, v2): v1 (val_auc 0.8) is the champion, v2 (``auc``) is registered, not judged yet."""
    client = _client(mlflow_server)
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    v1 = _version(client, mlflow_server.url, name, 0.80)
    promote_if_better(client, name, v1, RULES, by="setup")
    return client, name, v1, _version(client, mlflow_server.url, name, auc)


def test_an_approver_approves_through_the_api_and_the_champion_moves(api, mlflow_server) -> None:
    client, name, _, v2 = _champion_and_candidate(mlflow_server, "approval-ok", 0.90)

    dag_run, approver = _run_with(
        api, _dag(name, v2), [("alice", "Approve", "better AUC, reviewed the report")]
    )

    assert approver.state_while_waiting == "awaiting_input", "the waiting task holds no worker slot"
    request = approver.request
    assert request["subject"] == f"Promote {name} v{v2} to champion?"
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert list(request["params"]) == ["reason"], request["params"]
    assert "| val_auc (gate) | 0.9 | 0.8 |" in request["body"], request["body"]
    assert approver.responses[0][1] == 200, approver.responses
    assert approver.responses[0][2]["responded_by"]["name"] == "alice"
    assert task_states(dag_run) == {"gate": "success", "approve": "success"}
    summary = xcom(dag_run, "approve")
    assert summary["promoted"] and summary["approver"] == "alice"
    assert client.get_registered_model(name).aliases["champion"] == v2
    newest = alias_history(client, name, "champion")[-1]
    assert newest.to_version == v2 and newest.reason.startswith(
        "approved by alice: better AUC, reviewed the report"
    )
    recorded = json.loads(client.get_model_version(name, v2).tags[TAG_GATE_APPROVAL])
    assert (recorded["approver"], recorded["approved"]) == ("alice", True)


def test_a_viewer_cannot_answer_and_a_rejection_keeps_the_champion(api, mlflow_server) -> None:
    client, name, v1, v2 = _champion_and_candidate(mlflow_server, "approval-no", 0.95)

    answers = [("victor", "Approve", "I like it"), ("alice", "Reject", "wait for the pricing change")]
    dag_run, approver = _run_with(api, _dag(name, v2), answers)

    (_, viewer_status, _), (_, alice_status, _) = approver.responses
    assert viewer_status == 403, approver.responses
    assert alice_status == 200, approver.responses
    assert task_states(dag_run) == {"gate": "success", "approve": "success"}  # on_reject="warn"
    summary = xcom(dag_run, "approve")
    assert summary["decision"] == "rejected" and summary["approver"] == "alice"
    assert client.get_registered_model(name).aliases["champion"] == v1
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_GATE_DECISION] == "rejected"
    assert json.loads(tags[TAG_GATE_REASONS])[0] == "rejected by alice: wait for the pricing change"
    assert [e.to_version for e in alias_history(client, name, "champion")] == [v1]


def test_no_answer_before_the_timeout_rejects_through_the_schedulers_sweep(airflow_db, mlflow_server) -> None:
    """The scheduler's own timeout sweep (what it runs every 15 s) answers with the defaults: a rejection."""
    import logging

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk import DAG
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from airflow_mlops.operators.approval import MlflowApproveModelOperator
    from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator

    client, name, v1, v2 = _champion_and_candidate(mlflow_server, "approval-late", 0.95)
    with DAG(f"approval_{uuid.uuid4().hex[:8]}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        gate = MlflowPromoteModelOperator(task_id="gate", name=name, version=v2, rules=RULES, require_approval=True, pool=None)  # fmt: skip
        approve = MlflowApproveModelOperator(
            task_id="approve", name=name, version=v2, rules=RULES, response_timeout=timedelta(seconds=2)
        )
        gate >> approve
    scheduler = SchedulerJobRunner(job=Job(job_type=SchedulerJobRunner.job_type))
    swept: list[str] = []

    def sweep_after_the_deadline() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = session.scalars(
                    select(TaskInstance).where(
                        TaskInstance.dag_id == dag.dag_id, TaskInstance.task_id == "approve"
                    )
                ).first()
                state = ti.state if ti is not None else None
            if state == TaskInstanceState.AWAITING_INPUT:
                time.sleep(3)  # past response_timeout
                scheduler.check_awaiting_input_timeouts()
                swept.append(str(state))
                return
            time.sleep(0.5)
        logging.getLogger(__name__).error("the approval task never waited for input")

    sweeper = threading.Thread(target=sweep_after_the_deadline, daemon=True)
    sweeper.start()
    dag_run = run_dag(dag)
    sweeper.join(30)
    assert swept == ["awaiting_input"], "the task never parked"
    assert task_states(dag_run) == {"gate": "success", "approve": "success"}
    summary = xcom(dag_run, "approve")
    assert summary["decision"] == "rejected" and summary["approver"] is None
    assert client.get_registered_model(name).aliases["champion"] == v1
    reasons = json.loads(client.get_model_version(name, v2).tags[TAG_GATE_REASONS])
    assert reasons[0].startswith("no answer before the approval timed out: rejected"), reasons


def test_a_lifecycle_yaml_with_approval_required_waits_for_its_named_approver(
    api, mlflow_server, tmp_path
) -> None:
    """``gate.approval: required`` from a config: real training, the gate, then only a named approver may answer."""
    from airflow_mlops.templates import LifecycleConfig
    from airflow_mlops.templates.builders import build_training_dag
    from airflow_mlops.templates.example_data import make_churn_frame

    make_churn_frame(1500, seed=3).to_parquet(tmp_path / "train.parquet")
    name = f"approval_yaml_{uuid.uuid4().hex[:6]}"
    cfg = LifecycleConfig.from_dict(
        {
            "model_name": name,
            "data": {"train_uri": str(tmp_path / "train.parquet")},
            "validation": {
                "suite": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "churned"}}]
            },
            "training": {"spec": {"target": "churned", "model": "sklearn.linear_model.LogisticRegression"}},
            "gate": {
                "rules": [{"metric": "val_roc_auc", "min": 0.6}],
                "approval": "required",
                "approvers": ["alice"],
            },
        }
    )
    dag = build_training_dag(cfg)
    answers = [
        ("bob", "Approve", "not mine to approve"),
        ("alice", "Approve", "first churn model, report checked"),
    ]
    dag_run, approver = _run_with(api, dag, answers)

    (_, bob_status, _), (_, alice_status, _) = approver.responses
    assert (bob_status, alice_status) == (403, 200), (
        approver.responses
    )  # bob may edit the DAG but is not named
    assert list(approver.request["params"]) == ["reason"], (
        "the DAG's run params stay out of the approval form"
    )
    assert approver.request["assigned_users"] == [{"id": "alice", "name": "alice"}]
    assert "val_roc_auc (gate)" in approver.request["body"] and "no champion yet" in approver.request["body"]
    states = task_states(dag_run)
    assert states["training.promote"] == states["training.approve"] == states["training.decided"] == "success"
    assert states["training.force_promote"] == "skipped"
    client = _client(mlflow_server)
    assert client.get_registered_model(name).aliases["champion"] == "1"
    (move,) = alias_history(client, name, "champion")
    assert move.reason.startswith("approved by alice: first churn model, report checked"), move.reason
