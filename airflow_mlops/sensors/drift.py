"""DriftSensor: wait until a model's drift history shows confirmed drift (deferrable)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_mlops.exceptions import DriftDetectionError, MlopsConfigError
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.openlineage import LineageSpec


def _since_epoch(since: Any, context: Context) -> float:
    if since is None or since == "":
        dag_run = context.get("dag_run")
        start = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        return start.timestamp() if isinstance(start, datetime) else 0.0
    if isinstance(since, datetime):
        return since.timestamp()
    if isinstance(since, int | float):
        return float(since)
    text = str(since).strip()
    try:  # a templated epoch renders as text: "1796238371.65"
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise MlopsConfigError(
            f"since={since!r} is not an ISO-8601 timestamp or epoch seconds, e.g. '{{{{ data_interval_start }}}}'."
        ) from None


class DriftSensor(OpenLineageMixin, BaseSensorOperator, MlflowBaseOperator):
    """
    Wait until the drift history of ``model_name`` shows a confirmed drift (persistence met) after ``since``.

    The history is the retraining-policy state that EvidentlyDetectDriftOperator keeps on the registered model
    in MLflow. Returns (XCom) the confirmed check: ``model_name, key, at, version, share, report_uri, emitted,
    current_uri, mlflow_run_id``. With ``deferrable=True`` (the default) the wait runs in the triggerer.

    .. code-block:: python

        wait = DriftSensor(task_id="wait_for_drift", model_name="churn", poke_interval=3600, timeout=7 * 86400)

    :param model_name: Registered model name (templated).
    :param since: Only confirmations at or after this time count (templated; ISO-8601 or epoch seconds);
        default: the start of this DAG run.
    :param require_emitted: Only count confirmations that emitted a retraining event (not suppressed by the
        cool-down or the budget).
    :param deferrable: Wait in the triggerer instead of a worker slot.
    :param mlflow_conn_id: MLflow connection (templated); default ``[mlops] mlflow_conn_id``.
    """

    template_fields: Sequence[str] = ("model_name", "since", "mlflow_conn_id")
    ui_color = "#f4d3b8"

    def __init__(
        self,
        *,
        model_name: str,
        since: str | float | datetime | None = None,
        require_emitted: bool = False,
        deferrable: bool = True,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        self.model_name = model_name
        self.since = since
        self.require_emitted = require_emitted
        self.deferrable = deferrable

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The watched model in, with the drift share of the confirmed check once found."""
        from airflow_mlops.core.openlineage import watched_model_lineage

        return watched_model_lineage(summary or {"name": self.model_name}, self._tracking_uri())

    def _check(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.core.policy import confirmed_drift_since

        found = confirmed_drift_since(
            self.mlflow_hook.get_conn(),
            self.model_name,
            _since_epoch(self.since, context),
            require_emitted=self.require_emitted,
        )
        if found is not None:
            self._mlops_summary = {"model_name": self.model_name, **found}
        return found

    def poke(self, context: Context) -> PokeReturnValue:
        found = self._check(context)
        return PokeReturnValue(is_done=found is not None, xcom_value=found)

    @fail_fast
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self._check(context)
        if found is not None:
            return found
        from airflow_mlops.triggers.drift import DriftConfirmedTrigger

        self.defer(
            trigger=DriftConfirmedTrigger(
                model_name=self.model_name,
                since=_since_epoch(self.since, context),
                require_emitted=self.require_emitted,
                mlflow_conn_id=self.mlflow_hook.mlflow_conn_id,
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    @fail_fast
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            message = (event or {}).get("message", "no event")
            raise DriftDetectionError(
                f"waiting for confirmed drift of model {self.model_name!r} failed: {message}"
            )
        self._mlops_summary = {"model_name": self.model_name, **dict(event["drift"])}
        return dict(event["drift"])
