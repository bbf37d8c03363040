"""The approval step (operators/approval.py) on a real SQLite MLflow store: what each answer does to the champion.

The human's answer is the event Airflow resumes ``execute_complete`` with (the API server writes it; the
scheduler writes the defaults when the request times out). The round trip through the real API server is in
tests/integration/test_approval.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops.core.aliases import alias_history
from airflow_mlops.core.tags import TAG_GATE_APPROVAL, TAG_GATE_DECISION, TAG_GATE_REASONS
from airflow_mlops.exceptions import MlopsConfigError
from airflow_mlops.operators.approval import MlflowApproveModelOperator
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator

RULES = [{"metric": "val_auc", "min_delta": 0.0}, {"metric": "val_auc", "min": 0.7}]


def _answer(option: str | None, user: str | None, reason: str = "", *, timedout: bool = False) -> dict:
    return {
        "chosen_options": [option] if option else ["Reject"],
        "params_input": {"reason": reason},
        "responded_at": datetime.now(UTC),
        "responded_by_user": {"id": user, "name": user} if user else None,
        **({"timedout": True} if timedout else {}),
    }


@pytest.fixture
def waiting(mlflow_conn, name, runtime):
    """v1 (0.8) is the champion; v2 (0.9) passed the gate's rules and waits for an approval."""
    v1 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.8}))
    MlflowPromoteModelOperator(task_id="gate1", name=name, version=v1, rules=RULES).execute(
        runtime.context("gate1")
    )
    v2 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    gate = MlflowPromoteModelOperator(
        task_id="gate", name=name, version=v2, rules=RULES, require_approval=True
    )
    summary = gate.execute(runtime.context("gate"))
    assert summary["decision"] == "awaiting_approval" and not summary["promoted"]
    assert mlflow_conn.aliases(name) == {"champion": v1, "challenger": v2}, "the rules alone moved nothing"
    return v1, v2


def approve_op(name: str, version: str, **kwargs) -> MlflowApproveModelOperator:
    return MlflowApproveModelOperator(task_id="approve", name=name, version=version, rules=RULES, **kwargs)


def test_the_request_shows_both_versions_metrics_and_parks_the_task(
    mlflow_conn, name, runtime, waiting, monkeypatch
):
    _, v2 = waiting
    asked = {}

    def park(
        self, context
    ):  # HITLOperator.execute writes the request and parks the task: record what it wrote
        asked.update(subject=self.subject, body=self.body, options=self.options, defaults=self.defaults)
        return "parked"

    monkeypatch.setattr("airflow.providers.standard.operators.hitl.HITLOperator.execute", park)
    assert approve_op(name, v2).execute(runtime.context("approve")) == "parked"
    assert asked["subject"] == f"Promote {name} v{v2} to champion?"
    assert asked["options"] == ["Approve", "Reject"] and asked["defaults"] == ["Reject"]
    body = asked["body"]
    assert "| val_auc (gate) | 0.9 | 0.8 |" in body, body
    assert f"/#/models/{name}/versions/{v2}" in body and "champion v1" in body, body
    assert f"/mlops/models/{name}" in body, body


def test_approve_moves_the_champion_and_records_who_and_why(mlflow_conn, name, runtime, waiting):
    v1, v2 = waiting
    summary = approve_op(name, v2).execute_complete(
        runtime.context("approve"), _answer("Approve", "alice", "beats v1")
    )
    assert summary["promoted"] and summary["approver"] == "alice" and summary["approval_reason"] == "beats v1"
    assert mlflow_conn.aliases(name)["champion"] == v2
    newest = alias_history(mlflow_conn.client, name, "champion")[-1]
    assert (newest.from_version, newest.to_version, newest.action) == (v1, v2, "promote")
    assert newest.reason.startswith("approved by alice: beats v1; val_auc"), newest.reason
    tags = mlflow_conn.client.get_model_version(name, v2).tags
    assert tags[TAG_GATE_DECISION] == "promoted"
    assert json.loads(tags[TAG_GATE_APPROVAL])["approver"] == "alice"


def test_reject_keeps_the_champion_and_records_the_reason(mlflow_conn, name, runtime, waiting):
    v1, v2 = waiting
    summary = approve_op(name, v2).execute_complete(
        runtime.context("approve"), _answer("Reject", "bob", "freeze")
    )
    assert summary["decision"] == "rejected" and summary["champion_version"] == v1
    assert mlflow_conn.aliases(name)["champion"] == v1
    tags = mlflow_conn.client.get_model_version(name, v2).tags
    assert tags[TAG_GATE_DECISION] == "rejected"
    assert json.loads(tags[TAG_GATE_REASONS])[0] == "rejected by bob: freeze"
    assert [e.to_version for e in alias_history(mlflow_conn.client, name, "champion")] == [v1]


def test_no_answer_in_time_is_a_rejection(mlflow_conn, name, runtime, waiting):
    v1, v2 = waiting
    op = approve_op(name, v2, response_timeout=timedelta(minutes=5), on_reject="fail")
    with pytest.raises(MlopsPermanentFailure, match="timed out"):
        op.execute_complete(runtime.context("approve"), _answer(None, None, timedout=True))
    assert mlflow_conn.aliases(name)["champion"] == v1
    reasons = json.loads(mlflow_conn.client.get_model_version(name, v2).tags[TAG_GATE_REASONS])
    assert reasons[0].startswith("no answer before the approval timed out: rejected"), reasons


def test_a_retry_replays_the_recorded_answer_instead_of_asking_again(
    mlflow_conn, name, runtime, waiting, monkeypatch
):
    _, v2 = waiting
    approve_op(name, v2).execute_complete(runtime.context("approve"), _answer("Approve", "alice", "ok"))

    def never(self, context):
        raise AssertionError("asked again")

    monkeypatch.setattr("airflow.providers.standard.operators.hitl.HITLOperator.execute", never)
    again = approve_op(name, v2).execute(runtime.context("approve", try_number=2))
    assert again["promoted"] and again["approver"] == "alice"
    assert [e.to_version for e in alias_history(mlflow_conn.client, name, "champion")][-1] == v2
    assert len(alias_history(mlflow_conn.client, name, "champion")) == 2, "one move, not two"


def test_an_approval_is_judged_against_the_champion_of_the_moment(mlflow_conn, name, runtime, waiting):
    _, v2 = waiting
    v3 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.95}))
    MlflowPromoteModelOperator(task_id="gate3", name=name, version=v3, rules=RULES).execute(
        runtime.context("gate3")
    )
    summary = approve_op(name, v2).execute_complete(
        runtime.context("approve"), _answer("Approve", "alice", "ok")
    )
    assert summary["decision"] == "rejected" and mlflow_conn.aliases(name)["champion"] == v3
    assert any("fail" in r for r in summary["reasons"]), summary["reasons"]


def test_nothing_to_approve_when_the_rules_rejected(mlflow_conn, name, runtime):
    v1 = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.5}))
    gate = MlflowPromoteModelOperator(task_id="gate", name=name, version=v1, rules=RULES, on_reject="warn", require_approval=True)  # fmt: skip
    assert gate.execute(runtime.context("gate"))["decision"] == "rejected"
    with pytest.raises(AirflowSkipException, match="nothing to approve"):
        approve_op(name, v1).execute(runtime.context("approve"))


def test_the_answer_options_are_fixed() -> None:
    with pytest.raises(MlopsConfigError, match="fixed"):
        MlflowApproveModelOperator(task_id="a", name="m", version="1", rules=RULES, options=["Yes"])
    op = MlflowApproveModelOperator(task_id="a", name="m", version="1", rules=RULES)
    assert op.options == ["Approve", "Reject"] and list(op.serialized_params) == ["reason"]
    with pytest.raises(MlopsConfigError, match="on_reject"):
        MlflowApproveModelOperator(task_id="a", name="m", version="1", rules=RULES, on_reject="maybe")


def test_a_retry_after_a_rejection_rewrites_nothing(mlflow_conn, name, runtime, waiting):
    _, v2 = waiting
    approve_op(name, v2).execute_complete(runtime.context("approve"), _answer("Reject", "bob", "freeze"))
    before = dict(mlflow_conn.client.get_model_version(name, v2).tags)
    again = approve_op(name, v2).execute(runtime.context("approve", try_number=2))
    assert again["decision"] == "rejected" and again["reasons"][0] == "rejected by bob: freeze"
    assert dict(mlflow_conn.client.get_model_version(name, v2).tags) == before
    assert json.loads(before[TAG_GATE_APPROVAL])["at"], "the answer keeps the time it was given"


def test_a_re_run_gate_forgets_the_old_answer_and_the_approval_asks_again(
    mlflow_conn, name, runtime, waiting, monkeypatch
):
    _, v2 = waiting
    approve_op(name, v2).execute_complete(runtime.context("approve"), _answer("Reject", "bob", "freeze"))
    gate = MlflowPromoteModelOperator(
        task_id="gate", name=name, version=v2, rules=RULES, require_approval=True
    )
    assert gate.execute(runtime.context("gate", try_number=2))["decision"] == "awaiting_approval"  # cleared
    assert TAG_GATE_APPROVAL not in mlflow_conn.client.get_model_version(name, v2).tags
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.HITLOperator.execute", lambda self, ctx: "asked"
    )
    assert approve_op(name, v2).execute(runtime.context("approve", try_number=2)) == "asked"


def test_a_cleared_approval_after_a_rollback_does_not_move_the_champion_again(
    mlflow_conn, name, runtime, waiting
):
    from airflow_mlops.operators.mlflow import MlflowRollbackModelOperator

    v1, v2 = waiting
    approve_op(name, v2).execute_complete(runtime.context("approve"), _answer("Approve", "alice", "ok"))
    MlflowRollbackModelOperator(task_id="rollback", name=name, reason="latency").execute(
        runtime.context("rollback")
    )
    assert mlflow_conn.aliases(name)["champion"] == v1
    again = approve_op(name, v2).execute(runtime.context("approve", try_number=3))
    assert again["promoted"] and again["champion_version"] == v1 and again["approver"] == "alice"
    assert mlflow_conn.aliases(name)["champion"] == v1, "the old approval did not undo the rollback"


def test_an_answer_recorded_by_a_worker_that_died_before_the_move_is_carried_out(
    mlflow_conn, name, runtime, waiting
):
    from airflow_mlops.core.gate import Approval

    v1, v2 = waiting
    by = f"{runtime.dag_id}/{runtime.run_id}/approve/-1"
    answer = Approval(True, "alice", "ok", "2026-12-06T10:00:00+00:00").to_json(by)
    mlflow_conn.client.set_model_version_tag(
        name, v2, TAG_GATE_APPROVAL, answer
    )  # written first, then the worker died
    summary = approve_op(name, v2).execute(runtime.context("approve", try_number=2))
    assert summary["promoted"] and mlflow_conn.aliases(name)["champion"] == v2
    recorded = json.loads(mlflow_conn.client.get_model_version(name, v2).tags[TAG_GATE_APPROVAL])
    assert recorded["at"] == "2026-12-06T10:00:00+00:00", "the answer keeps the time it was given"


@pytest.mark.parametrize(
    ("params_input", "reason"),
    [({"reason": None}, ""), ({"reason": 5, "note": "x"}, "5"), ({}, ""), (None, "")],
)
def test_an_odd_form_still_records_the_answer(mlflow_conn, name, runtime, waiting, params_input, reason):
    _, v2 = waiting
    event = {**_answer("Reject", "bob"), "params_input": params_input}
    summary = approve_op(name, v2).execute_complete(runtime.context("approve"), event)
    assert summary["decision"] == "rejected" and summary["approval_reason"] == reason


def test_a_given_subject_and_body_are_kept(mlflow_conn, name, runtime, waiting, monkeypatch):
    _, v2 = waiting
    asked = {}
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.HITLOperator.execute",
        lambda self, ctx: asked.update(subject=self.subject, body=self.body),
    )
    approve_op(name, v2, subject="Churn model sign-off", body="Check the Q4 segment.").execute(
        runtime.context("approve")
    )
    assert asked["subject"] == "Churn model sign-off"
    assert asked["body"].startswith("Check the Q4 segment.\n\n") and "| val_auc (gate) |" in asked["body"]
