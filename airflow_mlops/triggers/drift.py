"""Deferrable trigger that waits until a model's drift history (the retraining-policy state) shows confirmed drift.

The state lives on the registered model in MLflow (see :mod:`airflow_mlops.core.policy`). The poll loop is
:class:`~airflow_mlops.triggers.base.MlflowPollTrigger`'s (MLflow calls in a worker thread, never raises): it yields ``{"status": "success", "drift": {...}}`` or
``{"status": "error", "message": ...}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_mlops.triggers.base import MlflowPollTrigger


class DriftConfirmedTrigger(MlflowPollTrigger):
    """
    Fire once ``model_name`` has a confirmed drift recorded at or after ``since``.

    :param model_name: Registered model name.
    :param since: Epoch seconds; older confirmations do not count.
    :param require_emitted: Only count confirmations that emitted a retraining event.
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param poll_interval: Seconds between checks.
    :param max_consecutive_errors: Transient errors tolerated in a row before an error event.
    """

    serialized_fields: ClassVar[tuple[str, ...]] = ("model_name", "since", "require_emitted")
    event_fields: ClassVar[tuple[str, ...]] = ("model_name",)

    def __init__(
        self,
        *,
        model_name: str,
        since: float,
        require_emitted: bool = False,
        poll_interval: float = 60.0,
        **poll: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, **poll)  # mlflow_conn_id, max_consecutive_errors
        self.model_name = model_name
        self.since = float(since)
        self.require_emitted = bool(require_emitted)

    def describe(self) -> str:
        return f"drift of model {self.model_name!r}"

    def check(self) -> dict[str, Any] | None:
        from airflow_mlops.core.policy import confirmed_drift_since

        found = confirmed_drift_since(
            self.client(), self.model_name, self.since, require_emitted=self.require_emitted
        )
        return None if found is None else {"drift": found}
