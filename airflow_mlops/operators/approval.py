"""A human approval between the gate's rules and the champion move, on Airflow 3's human-in-the-loop operators.

:class:`MlflowApproveModelOperator` follows an :class:`~airflow_mlops.operators.mlflow.MlflowPromoteModelOperator`
built with ``require_approval=True`` (the rules passed, the version is ``awaiting_approval``). It asks in the
Airflow UI (Browse -> Required Actions, or the HITL REST API), with the candidate's and the champion's metrics and
links to the reports, then moves the champion through the gate's own code path
(:func:`airflow_mlops.core.gate.promote_if_better` with the answer), so the move is recorded in the model's
history with who approved it and why. Reject, or no answer within ``response_timeout``, records the reason and
keeps the champion.

On Airflow 3.3 the waiting task holds no worker slot and no pool slot (it is parked in ``awaiting_input``).
Its own module: the HITL operators are imported only by DAGs that ask for approvals.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airflow_mlops.exceptions import MlopsConfigError, ModelGateRejected
from airflow_mlops.links.mlflow import MlflowModelVersionLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import OnFailure, fail_fast, identity_from_context, optional_text
from airflow_mlops.operators.mlflow import MlflowPromoteModelOperator
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.gate import Approval, GateResult
    from airflow_mlops.core.openlineage import LineageSpec

APPROVE, REJECT = "Approve", "Reject"


class MlflowApproveModelOperator(OpenLineageMixin, HITLOperator, MlflowBaseOperator):
    """
    Ask a human to approve a candidate the gate's rules passed; approve moves the champion, reject keeps it.

    .. code-block:: python

        gate = MlflowPromoteModelOperator(
            task_id="gate", name="churn", version=register.output["version"], rules=RULES, require_approval=True
        )
        approve = MlflowApproveModelOperator(
            task_id="approve",
            name="churn",
            version=gate.output["version"],
            rules=RULES,
            response_timeout=timedelta(hours=24),
            assigned_users=[{"id": "alice", "name": "Alice"}],
        )
        gate >> approve

    The request shows the candidate's and the champion's metrics side by side, the gate's reasons and links to
    the MLflow version and the validation report; the approver picks Approve or Reject and writes a reason.
    On approval the candidate is judged again against the champion of that moment (it may have changed while
    the request waited) and promoted; the history records ``approved by <user>: <reason>``. A rejection, or no
    answer within ``response_timeout``, is recorded on the version (``mlops.gate.*``, ``mlops.gate.approval``)
    and the champion stays. A retry replays the recorded answer instead of asking again. When the gate did not
    ask for an approval (the rules rejected the candidate) the task skips.

    Returns the gate's summary (``decision``, ``promoted``, ``champion_version``, ``reasons``...) plus
    ``approver`` and ``approval_reason``.

    :param name: Registered model name (templated).
    :param version: Candidate version, usually the gate's ``output["version"]`` (templated).
    :param rules: The gate's rules, judged again on approval (templated; ``"default"`` as in the gate).
    :param response_timeout: How long to wait for an answer; then the candidate is rejected. Default 24 hours.
    :param assigned_users: Who may answer, ``[{"id": "<user id>", "name": "..."}]``; default anyone who may edit
        the DAG.
    :param on_reject: ``warn`` (default: the task succeeds and says it was rejected), ``skip`` or ``fail``.
    :param champion_alias: Default ``[mlops] champion_alias`` (templated).
    :param challenger_alias: Default ``[mlops] challenger_alias`` (templated).
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    #: The request's text and the gate's own fields (the approval judges the same candidate by the same rules).
    template_fields: Sequence[str] = ("subject", "body", *MlflowPromoteModelOperator.template_fields)
    operator_extra_links = (MlflowModelVersionLink(),)

    def __init__(
        self,
        *,
        name: str,
        version: str | int | Any,
        rules: Any,
        response_timeout: timedelta | None = timedelta(hours=24),
        on_reject: OnFailure | str = OnFailure.WARN,
        champion_alias: str | None = None,
        challenger_alias: str | None = None,
        mlflow_conn_id: str | None = None,
        subject: str | None = None,
        body: str | None = None,
        **kwargs: Any,
    ) -> None:
        for fixed in ("options", "defaults", "multiple"):
            if fixed in kwargs:
                raise MlopsConfigError(
                    f"{kwargs.get('task_id', 'approve')}: {fixed!r} is fixed by MlflowApproveModelOperator "
                    "(Approve / Reject, a reason; no answer in time rejects)."
                )
        if rules is None:
            raise MlopsConfigError(
                f"{kwargs.get('task_id', 'approve')}: rules is required: the gate's rules, judged again on approval."
            )
        try:
            self.on_reject = OnFailure(on_reject)
        except ValueError:
            raise MlopsConfigError(
                f"{kwargs.get('task_id', 'approve')}: on_reject={on_reject!r}; use one of "
                f"{[m.value for m in OnFailure]}."
            ) from None
        if not kwargs.get("pool"):
            from airflow_mlops.settings import get_settings

            kwargs["pool"] = get_settings().promotion_pool or None
        kwargs.setdefault("multiple_outputs", True)  # approve.output["promoted"], like the gate
        # The DAG's own params arrive here too (source "dag"); the form shows only the task's: the reason.
        params = ParamsDict(kwargs.pop("params", None) or {})
        params["reason"] = Param(
            "",
            type="string",
            title="Reason",
            description="Why you approve or reject this version; recorded in the model's history.",
            source="task",
        )
        self._given_subject, self._given_body = subject, body
        super().__init__(
            body=body,
            subject=subject or f"Promote {name} to champion?",
            options=[APPROVE, REJECT],
            defaults=[REJECT],  # no answer before response_timeout: rejected
            multiple=False,
            params=params,
            response_timeout=response_timeout,
            mlflow_conn_id=mlflow_conn_id,
            **kwargs,
        )
        self.name = name
        self.version = version
        self.rules = rules
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias

    # ------------------------------------------------------------------ lineage
    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        from airflow_mlops.core.openlineage import gate_lineage

        return gate_lineage(
            summary or {"name": self.name, "version": self.version}, self._tracking_uri(), self._aliases()[0]
        )

    def _aliases(self) -> tuple[str, str]:
        from airflow_mlops.settings import get_settings

        settings = get_settings()
        return (
            optional_text(self.champion_alias) or settings.champion_alias,
            optional_text(self.challenger_alias) or settings.challenger_alias,
        )

    # ------------------------------------------------------------------ ask
    @fail_fast
    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.core.gate import Approval, GateDecision
        from airflow_mlops.core.registry import check_version
        from airflow_mlops.core.tags import TAG_GATE_DECISION
        from airflow_mlops.links.base import mlflow_model_version_url, push_link

        self.version = check_version(self.version)
        identity = identity_from_context(context)
        hook = self.mlflow_hook
        with hook.session() as client:
            mv = client.get_model_version(self.name, self.version)
            tags = dict(getattr(mv, "tags", None) or {})
            recorded = Approval.recorded(tags, identity.ti_key)
            if recorded is not None:  # a retry after the answer: replay it, never ask twice
                done = self._moved_by(client, identity.ti_key, recorded)
                if done is not None:  # the move already happened: report it, never move again
                    return done
                self.log.info(
                    "Replaying the recorded answer for %s v%s: %s", self.name, self.version, recorded
                )
                return self._decide(context, recorded)
            decision = tags.get(TAG_GATE_DECISION, "")
            if decision != GateDecision.AWAITING_APPROVAL.value:
                raise AirflowSkipException(
                    f"{self.name} v{self.version}: the gate decided {decision or 'nothing yet'!r}, not "
                    "'awaiting_approval': nothing to approve (build the gate with require_approval=True)."
                )
            generated = self._request_body(client, mv, hook.ui_url)
            self.body = f"{self.body}\n\n{generated}" if self._given_body and self.body else generated
        if not self._given_subject:
            self.subject = f"Promote {self.name} v{self.version} to {self._aliases()[0]}?"
        push_link(
            context, MlflowModelVersionLink, mlflow_model_version_url(hook.ui_url, self.name, self.version)
        )
        self.log.info(
            "Asking for an approval of %s v%s (timeout %s)", self.name, self.version, self.response_timeout
        )
        return super().execute(context)

    def _moved_by(self, client: Any, by: str, recorded: Approval) -> dict[str, Any] | None:
        """
        The summary of the champion move this task already made on the recorded approval, or None. A cleared
        approval task (the gate not cleared) reports that move rather than moving the champion again after a
        later rollback; clear the gate too to ask again.
        """
        import json

        from airflow_mlops.core.aliases import alias_history
        from airflow_mlops.core.gate import GateDecision, GateResult
        from airflow_mlops.core.registry import get_alias_version
        from airflow_mlops.core.tags import TAG_GATE_REASONS

        champion_alias, challenger_alias = self._aliases()
        moves = [
            e
            for e in alias_history(client, self.name, champion_alias)
            if e.by == by and e.to_version == str(self.version) and e.action == "promote"
        ]
        if not recorded.approved or not moves:
            return None
        tags = dict(getattr(client.get_model_version(self.name, self.version), "tags", None) or {})
        reasons = json.loads(tags.get(TAG_GATE_REASONS) or "[]")
        current = get_alias_version(client, self.name, champion_alias)
        self.log.info(
            "%s v%s was promoted by this task on %s's approval; %s is v%s now: nothing to move",
            self.name, self.version, recorded.approver, champion_alias, current,
        )  # fmt: skip
        result = GateResult(
            self.name, str(self.version), GateDecision.PROMOTED, current, moves[-1].from_version,
            [str(r) for r in reasons], champion_alias, challenger_alias,
        )  # fmt: skip
        return self._summary(result, recorded)

    def _request_body(self, client: Any, mv: Any, ui_url: str | None) -> str:
        """Markdown: the candidate's and the champion's metrics side by side, the gate's reasons, links."""
        return approval_body(client, self.name, mv, self._aliases()[0], ui_url)

    # ------------------------------------------------------------------ answer
    @fail_fast
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow_mlops.core.gate import Approval

        timed_out = bool(event.get("timedout"))
        if (
            "error" not in event
        ):  # the API stores the form as sent: keep the answer whatever else came with it
            sent = event.get("params_input") or {}
            extra = sorted(set(sent) - {"reason"}) if isinstance(sent, dict) else []
            if extra:
                self.log.warning("Ignoring answer fields other than 'reason': %s", extra)
            reason = sent.get("reason") if isinstance(sent, dict) else None
            event = {**event, "params_input": {"reason": "" if reason is None else str(reason)}}
        payload = super().execute_complete(context, event)
        chosen = list(payload.get("chosen_options") or [])
        user = payload.get("responded_by_user") or {}
        reason = str((payload.get("params_input") or {}).get("reason") or "").strip()
        approver = "" if timed_out or not user else str(user.get("name") or user.get("id") or "")
        answered = payload.get("responded_at")
        at = answered.isoformat() if hasattr(answered, "isoformat") else ""
        approval = Approval(chosen == [APPROVE] and bool(approver), approver, reason, at)
        if not approver:
            approval = Approval(False, "", reason or f"response_timeout {self.response_timeout}", at)
        return self._decide(context, approval)

    def _decide(self, context: Context, approval: Approval) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.core.gate import promote_if_better

        champion_alias, challenger_alias = self._aliases()
        identity = identity_from_context(context)
        with self.mlflow_hook.session() as client:
            result = promote_if_better(
                client,
                self.name,
                self.version,
                self.rules,
                champion_alias=champion_alias,
                challenger_alias=challenger_alias,
                by=identity.ti_key,
                require_approval=True,
                approval=approval,
            )
        summary = self._summary(result, approval)
        for reason in result.reasons:
            self.log.info("approval %s v%s: %s", result.name, result.version, reason)
        if result.promoted:
            return summary
        context["ti"].xcom_push(key="return_value", value=summary)
        if self.on_reject is OnFailure.WARN:
            return summary
        if self.on_reject is OnFailure.SKIP:
            raise AirflowSkipException(
                f"{result.name} v{result.version} was not approved: {result.reasons[0]}"
            )
        raise ModelGateRejected(
            f"Model {result.name!r} v{result.version} was not promoted: {'; '.join(result.reasons)}. "
            f"{champion_alias!r} stays v{result.champion_version}; use on_reject='warn' or 'skip' to not fail."
        )

    def _summary(self, result: GateResult, approval: Approval) -> dict[str, Any]:
        summary = {
            **result.to_summary(),
            "approver": approval.approver or None,
            "approval_reason": approval.reason,
            "approved": approval.approved,
        }
        self._mlops_summary = {**summary, "champion_alias": result.champion_alias}
        return summary


def _metric_rows(
    candidate: dict[str, float], champion: dict[str, float] | None, gated: list[str]
) -> list[str]:
    names = gated + sorted(k for k in candidate if k.startswith("val_") and k not in gated)
    rows = ["| metric | candidate | champion |", "|---|---|---|"]
    for metric in names:
        mark = " (gate)" if metric in gated else ""
        theirs = "" if champion is None or metric not in champion else f"{champion[metric]:.6g}"
        ours = f"{candidate[metric]:.6g}" if metric in candidate else ""
        rows.append(f"| {metric}{mark} | {ours} | {theirs} |")
    return rows


def approval_body(client: Any, name: str, mv: Any, champion_alias: str, ui_url: str | None) -> str:
    """The approval request's Markdown: metrics side by side, the gate's reasons, links to reports and MLflow."""
    import json

    from airflow_mlops.core.registry import get_alias_version
    from airflow_mlops.core.tags import (
        TAG_DATASET_URI,
        TAG_GATE_REASONS,
        TAG_GATE_RULES,
        TAG_VALIDATION_REPORT,
    )
    from airflow_mlops.links.base import mlflow_model_version_url, models_view_url, report_view_url

    tags = dict(getattr(mv, "tags", None) or {})
    candidate = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    champion_version = get_alias_version(client, name, champion_alias)
    champion: dict[str, float] | None = None
    if champion_version:
        champion_mv = client.get_model_version(name, champion_version)
        champion = dict(client.get_run(champion_mv.run_id).data.metrics) if champion_mv.run_id else {}
    try:
        gated = sorted({str(r["metric"]) for r in json.loads(tags.get(TAG_GATE_RULES) or "[]")})
        reasons = [str(r) for r in json.loads(tags.get(TAG_GATE_REASONS) or "[]")]
    except (json.JSONDecodeError, KeyError, TypeError):
        gated, reasons = [], []
    against = f"{champion_alias} v{champion_version}" if champion_version else f"no {champion_alias} yet"
    lines = [
        f"**{name} v{mv.version}** passed the gate's rules against {against}. Approve to make it the "
        f"`{champion_alias}`; reject (or no answer in time) keeps the current one. Write why: it is recorded.",
        "",
        *_metric_rows(candidate, champion, gated),
        "",
        "Gate: " + ("; ".join(reasons) if reasons else "no reasons recorded"),
        "",
    ]
    links = [f"[history in the Models view]({models_view_url(name)})"]
    url = mlflow_model_version_url(ui_url, name, mv.version)
    if url:
        links.append(f"[MLflow v{mv.version}]({url})")
    if champion_version:
        champion_url = mlflow_model_version_url(ui_url, name, champion_version)
        if champion_url:
            links.append(f"[MLflow {champion_alias} v{champion_version}]({champion_url})")
    if tags.get(TAG_VALIDATION_REPORT):
        links.append(f"[validation report]({report_view_url(tags[TAG_VALIDATION_REPORT])})")
    if tags.get(TAG_DATASET_URI):
        links.append(f"training data: `{tags[TAG_DATASET_URI]}`")
    lines.append(" · ".join(links) if links else "")
    return "\n".join(lines).strip()
