"""The Models view's read model (core/model_view.py) and pages (plugins/models_html.py) on a real SQLite store.

The data is written by the real operators (register, gate, rollback, set) and by the drift history code, so the
tests also pin what those write for the view: the registered-model summaries (``mlops.gate.last``,
``mlops.training.last``, ``mlops.airflow.dag_id``) and the drift runs' threshold and decision tags.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest

from airflow_mlops.core import model_view
from airflow_mlops.core.aliases import set_alias
from airflow_mlops.core.tags import (
    TAG_DAG_ID,
    TAG_DRIFT_DECISION,
    TAG_DRIFT_MODEL,
    TAG_DRIFT_REPORT_URI,
    TAG_DRIFT_STATE,
    TAG_DRIFT_THRESHOLD,
    TAG_DRIFT_VERSION,
    TAG_GATE_LAST,
    TAG_TI_KEY,
    TAG_TRAINING_LAST,
)
from airflow_mlops.exceptions import ModelNotFound
from airflow_mlops.operators.mlflow import (
    MlflowPromoteModelOperator,
    MlflowRegisterModelOperator,
    MlflowRollbackModelOperator,
    MlflowSetModelAliasOperator,
)
from airflow_mlops.plugins import models_html
from airflow_mlops.plugins.models_view import clean_reason

RULES = [{"metric": "val_auc", "min_delta": 0.0}]
HOSTILE = '<script>alert("x")</script>'


def _register(store, runtime, name: str, auc: float, task: str) -> str:
    run = store.log_model_run(name, metrics={"val_auc": auc, "val_accuracy": auc - 0.05})
    op = MlflowRegisterModelOperator(task_id=task, name=name, run_id=run.run_id)
    return str(op.execute(runtime.context(task))["version"])


def _gate(runtime, name: str, version: str, task: str) -> dict:
    op = MlflowPromoteModelOperator(task_id=task, name=name, version=version, rules=RULES, on_reject="warn")
    return op.execute(runtime.context(task))


def _drift_run(store, name: str, version: str, share: float, *, decision: dict | None, key: str = "") -> str:
    tags = {
        TAG_DRIFT_MODEL: name,
        TAG_DRIFT_VERSION: version,
        TAG_DRIFT_THRESHOLD: "0.5",
        TAG_DRIFT_REPORT_URI: f"/reports/{name}/{share}.html",
        TAG_TI_KEY: key,
    }
    if decision is not None:
        tags[TAG_DRIFT_DECISION] = json.dumps(decision)
    run = store.client.create_run(store.experiment(name), tags=tags)
    store.client.log_metric(run.info.run_id, "drift_share", share)
    time.sleep(0.01)  # distinct start times: the trend is ordered by them
    return str(run.info.run_id)


@pytest.fixture
def lifecycle(mlflow_conn, runtime, name):
    """v1 promoted, v2 promoted, v3 rejected, then a rollback (v2 -> v1) and a forced move to v3."""
    v1 = _register(mlflow_conn, runtime, name, 0.80, "register_1")
    _gate(runtime, name, v1, "gate_1")
    v2 = _register(mlflow_conn, runtime, name, 0.90, "register_2")
    _gate(runtime, name, v2, "gate_2")
    v3 = _register(mlflow_conn, runtime, name, 0.70, "register_3")
    _gate(runtime, name, v3, "gate_3")
    MlflowRollbackModelOperator(task_id="rollback", name=name, reason="bad latency").execute(
        runtime.context("rollback")
    )
    MlflowSetModelAliasOperator(
        task_id="force", name=name, alias="champion", version=v3, reason=f"forced: {HOSTILE}"
    ).execute(runtime.context("force"))
    return mlflow_conn


def test_registration_and_gate_write_the_summaries_the_list_reads(lifecycle, name):
    tags = lifecycle.client.get_registered_model(name).tags
    assert tags[TAG_DAG_ID] == "unit_dag"
    training = json.loads(tags[TAG_TRAINING_LAST])
    assert training["version"] == "3" and training["dag_id"] == "unit_dag" and training["airflow_run_id"]
    gate = json.loads(tags[TAG_GATE_LAST])
    assert gate["version"] == "3" and gate["decision"] == "rejected" and gate["compared_to"] == "2"

    row = next(r for r in model_view.list_models(lifecycle.client) if r.name == name)

    assert row.aliases == {"champion": "3", "challenger": "3"}
    assert row.owner_dag == "unit_dag"
    assert row.last_gate["decision"] == "rejected" and row.last_gate["at"] > 0
    assert row.last_training["version"] == "3"
    assert row.last_drift is None  # no drift check yet


def test_an_older_registration_retried_late_does_not_move_the_summary_back(mlflow_conn, runtime, name):
    first = mlflow_conn.log_model_run(name, metrics={"val_auc": 0.8})
    register_first = MlflowRegisterModelOperator(task_id="register_1", name=name, run_id=first.run_id)
    register_first.execute(runtime.context("register_1"))
    _register(mlflow_conn, runtime, name, 0.9, "register_2")

    again = register_first.execute(runtime.context("register_1", try_number=2))  # a late retry: finds v1

    assert again["version"] == "1" and again["created"] is False

    training = json.loads(mlflow_conn.client.get_registered_model(name).tags[TAG_TRAINING_LAST])
    assert training["version"] == "2"


def test_models_the_provider_never_touched_are_not_listed(mlflow_conn, name):
    mlflow_conn.client.create_registered_model(name)

    assert name not in {r.name for r in model_view.list_models(mlflow_conn.client)}


def test_a_model_from_before_the_summary_tags_falls_back_to_its_history(mlflow_conn, runtime, name):
    version = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    set_alias(mlflow_conn.client, name, "champion", version, action="promote", reason="old gate")

    row = next(r for r in model_view.list_models(mlflow_conn.client) if r.name == name)

    assert row.last_gate == {
        "version": version,
        "decision": "promoted",
        "at": row.last_gate["at"],
        "reasons": [],
    }
    assert row.owner_dag is None and row.last_training is None  # -> listed only to users who read every DAG


def test_the_timeline_merges_moves_and_rejections_newest_first(lifecycle, name):
    detail = model_view.model_detail(lifecycle.client, name)

    actions = [(e.action, e.version) for e in detail.timeline]
    assert actions[:2] == [("set", "3"), ("rollback", "1")]
    assert ("rejected", "3") in actions and ("promote", "2") in actions and ("promote", "1") in actions
    rollback = next(e for e in detail.timeline if e.action == "rollback")
    assert rollback.from_version == "2" and rollback.reason == "bad latency" and rollback.by
    rejected = next(e for e in detail.timeline if e.action == "rejected")
    assert rejected.from_version == "2" and "fail" in rejected.reason


def test_versions_carry_their_gate_metrics_and_decisions(lifecycle, name):
    detail = model_view.model_detail(lifecycle.client, name)

    assert [v.version for v in detail.versions] == ["3", "2", "1"]
    assert detail.gate_metrics == ["val_auc"]
    by_version = {v.version: v for v in detail.versions}
    assert by_version["2"].metrics["val_auc"] == pytest.approx(0.9)
    assert by_version["3"].gate_decision == "rejected" and by_version["3"].gate_compared_to == "2"
    assert by_version["3"].aliases == ["challenger", "champion"]
    assert by_version["1"].dag_id == "unit_dag" and by_version["1"].airflow_run_id


def test_the_drift_trend_reads_every_check_with_its_threshold_and_retraining(mlflow_conn, runtime, name):
    version = _register(mlflow_conn, runtime, name, 0.8, "register")
    _drift_run(
        mlflow_conn, name, version, 0.1, decision={"drifted": False, "emit": False, "reason": "no drift"}
    )
    _drift_run(mlflow_conn, name, version, 0.7, decision={"drifted": True, "emit": True, "confirmed": True})
    # a check logged before the decision tag existed: its verdict comes from the policy state, by check key
    _drift_run(mlflow_conn, name, version, 0.6, decision=None, key="k-old")
    state = {"history": [{"key": "k-old", "emit": False, "confirmed": False, "drifted": True, "share": 0.6}]}
    mlflow_conn.client.set_registered_model_tag(name, TAG_DRIFT_STATE, json.dumps(state))

    detail = model_view.model_detail(mlflow_conn.client, name)

    assert [p.share for p in detail.drift] == [0.1, 0.7, 0.6]
    assert [p.retrained for p in detail.drift] == [False, True, False]
    assert [p.drifted for p in detail.drift] == [False, True, True]
    assert detail.drift_threshold == 0.5
    assert detail.drift[1].report_uri.endswith("0.7.html")
    row = next(r for r in model_view.list_models(mlflow_conn.client) if r.name == name)
    assert row.last_drift["share"] == 0.6 and row.last_drift["drifted"] is True


def test_an_unknown_model_is_model_not_found(mlflow_conn, name):
    with pytest.raises(ModelNotFound, match="does not exist"):
        model_view.model_detail(mlflow_conn.client, name)


def test_hand_edited_tags_show_as_unknown_rather_than_failing(mlflow_conn, runtime, name):
    _register(mlflow_conn, runtime, name, 0.8, "register")
    for key in (TAG_GATE_LAST, TAG_TRAINING_LAST, TAG_DRIFT_STATE):
        mlflow_conn.client.set_registered_model_tag(name, key, "{not json")

    row = next(r for r in model_view.list_models(mlflow_conn.client) if r.name == name)

    assert row.last_gate is None and row.last_training is None and row.last_drift is None
    assert model_view.model_detail(mlflow_conn.client, name).name == name


# ---------------------------------------------------------------------------------------------- the pages
def test_the_model_page_escapes_what_users_wrote_and_draws_the_plot(lifecycle, runtime, name):
    _drift_run(lifecycle, name, "3", 0.2, decision={"drifted": False, "emit": False})
    _drift_run(lifecycle, name, "3", 0.8, decision={"drifted": True, "emit": True, "reason": HOSTILE})
    detail = model_view.model_detail(lifecycle.client, name)

    page = models_html.model_page(
        detail, [], {}, can_edit=True, ui_prefix="", mlflow_ui="http://mlflow", user=HOSTILE, elapsed=0.01
    )

    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert page.count('<script src="/mlops/static/models.js"') == 1 and page.count("<script") == 1
    assert len(re.findall(r'<circle class="check[^"]*"', page)) == 2
    assert page.count('class="check drifted"') == 1
    assert page.count('<line class="threshold"') == 1 and page.count('<g class="retrain">') == 1
    assert len(re.findall(r'<li class="event event-\w+" data-action="\w+" data-version="\d+"', page)) == len(
        detail.timeline
    )
    assert page.count("<tr data-version=") == 3
    assert 'id="rollback"' in page and 'id="promote"' in page
    assert f'data-model="{name}"' in page and re.search(r'data-request-id="[0-9a-f]{32}"', page)


def test_a_reader_without_edit_rights_gets_no_action_controls(lifecycle, name):
    detail = model_view.model_detail(lifecycle.client, name)

    page = models_html.model_page(
        detail, [], {}, can_edit=False, ui_prefix="", mlflow_ui=None, user="v", elapsed=0.0
    )

    assert 'id="rollback"' not in page and 'id="promote"' not in page
    assert "needs edit rights on the DAG unit_dag" in page
    assert "No drift check recorded" in page and "No predictions published" in page


def test_the_list_page_links_each_model_and_its_runs(lifecycle, name):
    rows = [r for r in model_view.list_models(lifecycle.client) if r.name == name]
    scoring = {name: [{"dag_id": "score", "run_id": "r/1", "version": "3", "rows": 10, "at": 1.0}]}

    page = models_html.list_page(
        rows, scoring, {("score", "r/1"): "success"}, ui_prefix="/af", mlflow_ui=None, user="u", elapsed=0.0
    )

    assert f'<tr data-model="{name}">' in page
    assert f'href="/mlops/models/{name}"' in page and 'class="model-link"' in page
    assert '<td class="champion">3</td>' in page
    assert 'href="/af/dags/score/runs/r%2F1" target="_top"' in page and "state-success" in page


def test_the_list_page_says_why_it_is_empty():
    page = models_html.list_page([], {}, {}, ui_prefix="", mlflow_ui=None, user="u", elapsed=0.0)

    assert 'id="models"' not in page and "No model managed by airflow-mlops is visible to you" in page


def test_reasons_are_one_line_bounded_and_required_where_asked():
    assert clean_reason("  too\nslow\x00 ", required=True) == "too slow"
    assert clean_reason(None, required=False) == ""
    with pytest.raises(ValueError, match="a reason is required"):
        clean_reason("  ", required=True)
    with pytest.raises(ValueError, match="keep it to 500"):
        clean_reason("x" * 501, required=False)


def test_approvals_show_who_decided_in_the_timeline_and_the_waiting_version(mlflow_conn, runtime, name):
    from airflow_mlops.operators.approval import MlflowApproveModelOperator

    def answer(version: str, option: str, user: str, why: str, task: str) -> None:
        gate = MlflowPromoteModelOperator(task_id=f"g{task}", name=name, version=version, rules=RULES, require_approval=True)  # fmt: skip
        gate.execute(runtime.context(f"g{task}"))
        approve = MlflowApproveModelOperator(task_id=f"a{task}", name=name, version=version, rules=RULES)
        event = {"chosen_options": [option], "params_input": {"reason": why}, "responded_at": datetime.now(UTC),
                 "responded_by_user": {"id": user, "name": user}}  # fmt: skip
        approve.execute_complete(runtime.context(f"a{task}"), event)

    answer(_register(mlflow_conn, runtime, name, 0.80, "r1"), "Approve", "alice", "first model", "1")
    answer(_register(mlflow_conn, runtime, name, 0.90, "r2"), "Reject", "bob", "freeze week", "2")
    waiting = _register(mlflow_conn, runtime, name, 0.95, "r3")
    MlflowPromoteModelOperator(
        task_id="g3", name=name, version=waiting, rules=RULES, require_approval=True
    ).execute(runtime.context("g3"))
    detail = model_view.model_detail(mlflow_conn.client, name)
    page = models_html.model_page(
        detail, [], {}, can_edit=True, ui_prefix="", mlflow_ui=None, user="u", elapsed=0.01
    )
    assert "promoted after a human approval" in page and "approved by alice: first model" in page
    assert "rejected at the approval" in page and "rejected by bob: freeze week" in page
    assert 'class="decision decision-awaiting_approval"' in page
    assert [v.gate_decision for v in sorted(detail.versions, key=lambda v: int(v.version))] == [
        "promoted", "rejected", "awaiting_approval"
    ]  # fmt: skip
