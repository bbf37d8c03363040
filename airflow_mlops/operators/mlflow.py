"""MLflow registry operators: register a trained model, the champion/challenger gate, rollback, manual alias moves.

Thin adapters over :mod:`airflow_mlops.core.registry`, :mod:`~airflow_mlops.core.gate` and
:mod:`~airflow_mlops.core.aliases`: each renders its arguments, opens an
:class:`~airflow_mlops.hooks.mlflow.MlflowHook` session, calls one core function, pushes extra-link URLs and
returns a small XCom dict. Promotion uses MLflow aliases (``champion``/``challenger``), never stages.

Alias moves are safe under concurrency on their own: each move takes the next slot of the model's history
atomically in MLflow (:func:`airflow_mlops.core.aliases.settle`), so concurrent gates never fork the champion
history. The operators that move an alias (gate, rollback, manual set) also run in the one-slot pool
``[mlops] promotion_pool`` (default ``mlops_promotion``) unless given another ``pool``; the provider's plugin
creates that pool with one slot when the scheduler starts, if it does not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow_mlops.core.tags import TAG_TRY_NUMBER
from airflow_mlops.exceptions import MlopsConfigError, ModelGateRejected
from airflow_mlops.links.base import mlflow_model_version_url, mlflow_run_url, push_link
from airflow_mlops.links.mlflow import MlflowModelVersionLink, MlflowRunLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import OnFailure, fail_fast, identity_from_context, optional_text
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.sdk import BaseOperatorLink
    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.openlineage import LineageSpec
    from airflow_mlops.hooks.mlflow import MlflowHook


#: What the gate task does when the candidate is rejected: the one :class:`OnFailure` of every check.
OnReject = OnFailure


def _is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_is_templated(v) for v in value)
    return not isinstance(value, int | float | bool | type(None))  # XComArg and friends: resolved at run time


class _MlflowRegistryOperator(OpenLineageMixin, MlflowBaseOperator):
    """Shared plumbing: the MLflow hook of the task and the model-version link."""

    operator_extra_links: tuple[BaseOperatorLink, ...] = (MlflowModelVersionLink(),)
    #: Moves an alias: runs in ``[mlops] promotion_pool`` unless given another ``pool``.
    moves_alias: ClassVar[bool] = False

    def __init__(self, *, name: str, mlflow_conn_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)  # so ``task.output["version"]`` works downstream
        if self.moves_alias and not kwargs.get("pool"):
            from airflow_mlops.settings import get_settings

            kwargs["pool"] = get_settings().promotion_pool or None
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        self.name = name

    def _push_version_link(self, context: Context, hook: MlflowHook, name: str, version: str | None) -> None:
        if version:
            push_link(context, MlflowModelVersionLink, mlflow_model_version_url(hook.ui_url, name, version))

    def _move_alias(
        self, context: Context, move: Callable[[Any, str], Any], verbs: tuple[str, str]
    ) -> dict[str, Any]:
        """Run one recorded alias move (``move(client, by)``), log it, link the version, return the XCom."""
        identity = identity_from_context(context)
        hook = self.mlflow_hook
        with hook.session() as client:
            result = move(client, identity.ti_key)
        self.log.info(
            "%s alias %r of %r: v%s -> v%s",
            verbs[0] if result.moved else verbs[1],
            result.alias,
            result.name,
            result.previous_version,
            result.version,
        )
        self._push_version_link(context, hook, result.name, result.version)
        summary: dict[str, Any] = result.to_summary()
        self._mlops_summary = summary
        return summary


class MlflowRegisterModelOperator(_MlflowRegistryOperator):
    """
    Register the model of a training run as a new version of a registered model, once per task instance.

    Waits until the version is READY and tags it with lineage copied from the run (dataset URI and fingerprint,
    validation summary and report), ``mlops.training.run_id`` and the Airflow dag_id/run_id/task_id. A retry of
    the same task instance (same model) returns the version the first try created (``created: false``); two
    concurrent attempts end with one version. Nothing is created when the run or model is invalid.

    .. code-block:: python

        register = MlflowRegisterModelOperator(
            task_id="register",
            name="churn",
            run_id="{{ ti.xcom_pull('train')['run_id'] }}",  # or train.output["run_id"]
        )

    Returns ``{"name", "version", "run_id", "model_uri": "models:/<name>/<version>", "created"}``.

    :param name: Registered model name; created on first use (templated).
    :param run_id: MLflow run that logged the model; its logged model named ``model`` is used (templated).
    :param model_uri: Instead of / besides run_id: ``models:/m-<id>``, ``runs:/<run>/<name>``,
        ``models:/<name>/<version>`` or an artifact URI (templated).
    :param tags: Extra tags for the version (templated).
    :param await_ready_timeout: Seconds to wait for the version to become READY.
    :param idempotent: Key the version on the task instance (default). False registers a new version every try.
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    template_fields: Sequence[str] = ("name", "run_id", "model_uri", "tags", "mlflow_conn_id")
    operator_extra_links = (MlflowModelVersionLink(), MlflowRunLink())

    def __init__(
        self,
        *,
        name: str,
        run_id: str | None = None,
        model_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        await_ready_timeout: float = 300.0,
        idempotent: bool = True,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, mlflow_conn_id=mlflow_conn_id, **kwargs)
        if run_id is None and model_uri is None:
            raise MlopsConfigError(
                f"{self.task_id}: pass run_id (e.g. train.output['run_id']) or model_uri to register a model."
            )
        self.run_id = run_id
        self.model_uri = model_uri
        self.tags = tags or {}
        self.await_ready_timeout = await_ready_timeout
        self.idempotent = idempotent

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.registration import register_model_version

        identity = identity_from_context(context)
        if not isinstance(self.tags, dict):
            raise MlopsConfigError(
                f"{self.task_id}: tags must render to a dict, got {type(self.tags).__name__}."
            )
        tags = {k: v for k, v in identity.to_tags().items() if k != TAG_TRY_NUMBER}
        tags.update({str(k): v for k, v in self.tags.items()})
        hook = self.mlflow_hook
        with hook.session() as client:
            result = register_model_version(
                client,
                name=self.name,
                run_id=optional_text(self.run_id),
                model_uri=optional_text(self.model_uri),
                key=identity.ti_key if self.idempotent else None,
                tags=tags,
                await_ready_timeout=self.await_ready_timeout,
            )
            experiment_id = client.get_run(result.run_id).info.experiment_id if result.run_id else None
        self.log.info(
            "%s version %s of model %r from run %s",
            "Registered" if result.created else "Found existing",
            result.version,
            result.name,
            result.run_id,
        )
        self._push_version_link(context, hook, result.name, result.version)
        if experiment_id and result.run_id:
            push_link(context, MlflowRunLink, mlflow_run_url(hook.ui_url, experiment_id, result.run_id))
        self._mlops_summary = result.to_summary()
        return self._mlops_summary

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The run's logged model in, the registered model (its new version) out."""
        from airflow_mlops.core.openlineage import registration_lineage

        return registration_lineage(
            summary or {"name": self.name, "run_id": self.run_id}, self._tracking_uri()
        )


class MlflowPromoteModelOperator(_MlflowRegistryOperator):
    """
    The champion/challenger gate on MLflow aliases.

    Always points ``challenger_alias`` at the candidate; moves ``champion_alias`` only when the candidate passes
    every rule against the current champion's run metrics (with no champion yet: the absolute floors). The decision
    and reasons are tagged on the version (``mlops.gate.*``) and a champion move is appended to the model's
    history (see :func:`airflow_mlops.core.aliases.alias_history`). Runs in the ``[mlops] promotion_pool``.

    .. code-block:: python

        gate = MlflowPromoteModelOperator(
            task_id="gate",
            name="churn",
            version=register.output["version"],
            rules=[
                {"metric": "val_roc_auc", "min_delta": 0.002, "greater_is_better": True},
                {"metric": "val_roc_auc", "min": 0.8},
            ],
            on_reject="skip",
        )

    Returns ``{"name", "version", "decision": "promoted"|"rejected", "promoted", "champion_version",
    "previous_champion_version", "reasons"}`` (also pushed when the task fails or skips on a rejection).

    :param name: Registered model name (templated).
    :param version: Candidate version (templated).
    :param rules: List of rules ``{"metric", "min_delta", "greater_is_better", "min", "max"}`` or a JSON string
        of it (templated). ``min_delta`` compares with the champion; ``min``/``max`` are absolute. Required;
        ``[]`` promotes every candidate, ``"default"`` applies the default gate of the task the trainer recorded
        on the run (:func:`airflow_mlops.core.gate.default_gate_rules`).
    :param on_reject: ``fail`` (default: the task fails with ModelGateRejected), ``skip`` (downstream skips) or
        ``warn`` (the task succeeds and logs the rejection; ``succeed`` is read as ``warn``). See
        :class:`~airflow_mlops.operators.common.OnFailure`.
    :param champion_alias: Default ``[mlops] champion_alias`` (templated).
    :param challenger_alias: Default ``[mlops] challenger_alias`` (templated).
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    :param require_approval: A candidate that passes the rules is not promoted but left ``awaiting_approval``
        (decision in the summary and on the version) for a downstream
        :class:`~airflow_mlops.operators.approval.MlflowApproveModelOperator`.
    """

    moves_alias = True
    template_fields: Sequence[str] = (
        "name",
        "version",
        "rules",
        "champion_alias",
        "challenger_alias",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        name: str,
        version: str | int,
        rules: Sequence[dict[str, Any]] | dict[str, Any] | str,
        on_reject: OnReject | str = OnReject.FAIL,
        champion_alias: str | None = None,
        challenger_alias: str | None = None,
        mlflow_conn_id: str | None = None,
        require_approval: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, mlflow_conn_id=mlflow_conn_id, **kwargs)
        self.require_approval = bool(require_approval)
        try:
            self.on_reject = OnReject(on_reject)
        except ValueError:
            raise MlopsConfigError(
                f"{self.task_id}: on_reject={on_reject!r}; use one of {[m.value for m in OnReject]}."
            ) from None
        if rules is None:
            raise MlopsConfigError(
                f"{self.task_id}: rules is required, e.g. [{{'metric': 'val_roc_auc', 'min_delta': 0.002}}]; "
                "pass rules=[] to promote every candidate."
            )
        if rules != "default" and not _is_templated(rules):
            from airflow_mlops.core.gate import parse_rules

            parse_rules(rules)  # a malformed literal rule fails when the DAG is parsed, not at 3 a.m.
        self.version = version
        self.rules = rules
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The candidate version in, the model out with the gate's decision (and the champion alias if moved)."""
        from airflow_mlops.core.openlineage import gate_lineage
        from airflow_mlops.settings import get_settings

        alias = summary.get("champion_alias") or optional_text(self.champion_alias)
        return gate_lineage(
            summary or {"name": self.name, "version": self.version},
            self._tracking_uri(),
            str(alias or get_settings().champion_alias),
        )

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.core.gate import GateDecision, promote_if_better
        from airflow_mlops.settings import get_settings

        settings = get_settings()
        identity = identity_from_context(context)
        hook = self.mlflow_hook
        with hook.session() as client:
            result = promote_if_better(
                client,
                self.name,
                self.version,
                self.rules,
                champion_alias=optional_text(self.champion_alias) or settings.champion_alias,
                challenger_alias=optional_text(self.challenger_alias) or settings.challenger_alias,
                by=identity.ti_key,
                require_approval=self.require_approval,
            )
        self._push_version_link(context, hook, result.name, result.version)
        summary = result.to_summary()
        self._mlops_summary = {**summary, "champion_alias": result.champion_alias}
        for reason in result.reasons:
            self.log.info("gate %s v%s: %s", result.name, result.version, reason)
        if result.decision is GateDecision.AWAITING_APPROVAL:
            self.log.info(
                "%r v%s passed the rules; %s stays v%s until a human approves it",
                result.name,
                result.version,
                result.champion_alias,
                result.champion_version,
            )
            return summary
        if result.promoted:
            self.log.info(
                "%r v%s is the %s (previous: %s)",
                result.name,
                result.version,
                result.champion_alias,
                result.previous_champion_version,
            )
            return summary
        self.log.warning(
            "%r v%s rejected; %s stays v%s",
            result.name,
            result.version,
            result.champion_alias,
            result.champion_version,
        )
        if self.on_reject is OnReject.WARN:
            return summary
        context["ti"].xcom_push(key="return_value", value=summary)
        if self.on_reject is OnReject.SKIP:
            raise AirflowSkipException(f"{result.name} v{result.version} rejected by the gate")
        failed = [r for r in result.reasons if r.endswith("fail")]
        raise ModelGateRejected(
            f"Model {result.name!r} v{result.version} was rejected by the gate; {result.champion_alias!r} stays "
            f"v{result.champion_version}. Failed checks: {'; '.join(failed) or 'see reasons'}. The decision is "
            f"recorded on the version (tag mlops.gate.reasons); use on_reject='skip' or 'warn' to not fail."
        )


class _AliasMoveOperator(_MlflowRegistryOperator):
    """What the rollback and the manual alias move share: an alias, a version, a recorded reason."""

    moves_alias = True
    template_fields: Sequence[str] = ("name", "alias", "version", "reason", "mlflow_conn_id")

    def __init__(
        self,
        *,
        name: str,
        alias: str | None = None,
        version: str | int | None = None,
        reason: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alias = alias
        self.version = version
        self.reason = reason

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """An alias move: the model in, the model with the alias on its new version out."""
        from airflow_mlops.core.openlineage import alias_move_lineage

        return alias_move_lineage(summary or {"name": self.name}, self._tracking_uri())


class MlflowRollbackModelOperator(_AliasMoveOperator):
    """
    Move an alias (default: the champion) back to the version it pointed to before, or to ``version``, in one step.

    The previous version comes from the model's alias history (rollbacks are walked back like an undo stack, so
    two rollbacks go two steps back). The rollback is recorded in the history too; a retry of the same task
    does not roll back twice.

    .. code-block:: python

        rollback = MlflowRollbackModelOperator(task_id="rollback", name="churn")

    Returns ``{"name", "alias", "version", "previous_version", "action": "rollback", "moved", "reason"}``.

    :param name: Registered model name (templated).
    :param alias: Alias to roll back; default ``[mlops] champion_alias`` (templated).
    :param version: Target version instead of the recorded previous one (templated).
    :param reason: Why; stored in the history (templated).
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.aliases import rollback_alias
        from airflow_mlops.settings import get_settings

        return self._move_alias(
            context,
            lambda client, by: rollback_alias(
                client,
                self.name,
                optional_text(self.alias) or get_settings().champion_alias,
                version=optional_text(self.version),
                reason=optional_text(self.reason) or "",
                by=by,
            ),
            ("Rolled back", "Already rolled back"),
        )


class MlflowSetModelAliasOperator(_AliasMoveOperator):
    """
    Point an alias of a registered model at a version (a manual move), recorded in the model's alias history.

    .. code-block:: python

        MlflowSetModelAliasOperator(
            task_id="pin_champion", name="churn", alias="champion", version="{{ params.version }}",
            reason="{{ params.reason }}",
        )

    Returns ``{"name", "alias", "version", "previous_version", "action": "set", "moved", "reason"}``; ``moved`` is
    false when the alias already pointed there.

    :param name: Registered model name (templated).
    :param alias: Alias to set (templated).
    :param version: Version to point it at (templated).
    :param reason: Why; stored in the history (templated).
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    alias: str  # required here (the rollback's defaults to the champion)

    def __init__(
        self, *, name: str, alias: str, version: str | int, reason: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name, alias=alias, version=version, reason=reason, **kwargs)

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.aliases import set_alias

        return self._move_alias(
            context,
            lambda client, by: set_alias(
                client, self.name, self.alias, self.version, reason=optional_text(self.reason) or "", by=by
            ),
            ("Moved", "Unchanged"),
        )
