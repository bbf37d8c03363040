"""Deferrable trigger that waits until a model's drift history (the retraining-policy state) shows confirmed drift.

The state lives on the registered model in MLflow (see :mod:`airflow_mlops.core.policy`). Every MLflow call
runs in a worker thread through ``asyncio.to_thread`` so the triggerer's event loop never blocks, and
:meth:`DriftConfirmedTrigger.run` never raises: it yields ``{"status": "success", "drift": {...}}`` or
``{"status": "error", "message": ...}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def confirmed_drift_since(
    mlflow_conn_id: str, model_name: str, since: float, *, require_emitted: bool = False
) -> dict[str, Any] | None:
    """The newest confirmed drift of ``model_name`` recorded at or after ``since`` (epoch seconds), else None."""
    from airflow_mlops.core.policy import MlflowPolicyStore
    from airflow_mlops.hooks.mlflow import MlflowHook

    # get_conn()'s client carries this connection's credentials itself (no os.environ), so it is safe next to
    # other triggers polling other servers in the same triggerer.
    state = MlflowPolicyStore(MlflowHook(mlflow_conn_id).get_conn(), model_name).load()
    confirmed = state.last_confirmed
    if not confirmed or float(confirmed.get("at", 0)) < since:
        return None
    if require_emitted and not confirmed.get("emitted"):
        return None
    return {"model_name": model_name, **confirmed}


class DriftConfirmedTrigger(BaseTrigger):
    """
    Fire once ``model_name`` has a confirmed drift recorded at or after ``since``.

    :param model_name: Registered model name.
    :param since: Epoch seconds; older confirmations do not count.
    :param require_emitted: Only count confirmations that emitted a retraining event.
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param poll_interval: Seconds between checks.
    :param max_consecutive_errors: Transient errors tolerated in a row before an error event.
    """

    def __init__(
        self,
        *,
        model_name: str,
        since: float,
        require_emitted: bool = False,
        mlflow_conn_id: str = "mlflow_default",
        poll_interval: float = 60.0,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.since = float(since)
        self.require_emitted = bool(require_emitted)
        self.mlflow_conn_id = mlflow_conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_errors = int(max_consecutive_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_mlops.triggers.drift.DriftConfirmedTrigger",
            {
                "model_name": self.model_name,
                "since": self.since,
                "require_emitted": self.require_emitted,
                "mlflow_conn_id": self.mlflow_conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _check(self) -> dict[str, Any] | None:
        return confirmed_drift_since(
            self.mlflow_conn_id, self.model_name, self.since, require_emitted=self.require_emitted
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound

        failures = 0
        while True:
            try:
                found = await asyncio.to_thread(self._check)
            except (ModelNotFound, MlopsConfigError) as err:  # will not fix itself
                yield TriggerEvent({"status": "error", "model_name": self.model_name, "message": str(err)})
                return
            except Exception as err:
                failures += 1
                if failures >= self.max_consecutive_errors:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "model_name": self.model_name,
                            "message": f"gave up watching drift of model {self.model_name!r} after {failures} "
                            f"failed checks in a row; last error: {type(err).__name__}: {err}",
                        }
                    )
                    return
                self.log.warning("Drift check %d of %r failed, retrying: %s", failures, self.model_name, err)
                await asyncio.sleep(self.poll_interval)
                continue
            failures = 0
            if found is not None:
                yield TriggerEvent({"status": "success", "model_name": self.model_name, "drift": found})
                return
            await asyncio.sleep(self.poll_interval)
