"""Deferrable trigger that waits for an MLflow registered-model alias to appear or to move.

The trigger never blocks the triggerer's event loop (every MLflow call runs in a worker thread through
``asyncio.to_thread``) and never raises: it yields ``{"status": "success", "version": ...}`` or
``{"status": "error", "message": ...}``. Transient failures (server restarting, network blip) are retried up to
``max_consecutive_errors`` polls in a row before the trigger gives up with an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class MlflowModelAliasTrigger(BaseTrigger):
    """
    Fire when ``alias`` of registered model ``name`` exists and points to a version other than ``not_version``.

    :param name: Registered model name.
    :param alias: Alias to watch, e.g. ``champion``.
    :param not_version: Fire only once the alias points to a different version (None: fire once it exists).
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param poll_interval: Seconds between checks.
    :param max_consecutive_errors: Transient errors tolerated in a row before an error event.
    """

    def __init__(
        self,
        *,
        name: str,
        alias: str,
        not_version: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        poll_interval: float = 30.0,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.name = name
        self.alias = alias
        self.not_version = not_version
        self.mlflow_conn_id = mlflow_conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_errors = int(max_consecutive_errors)
        self._hook: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "alias": self.alias,
                "not_version": self.not_version,
                "mlflow_conn_id": self.mlflow_conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _check(self) -> str | None:
        """One blocking check (runs in a worker thread)."""
        from airflow_mlops.core.registry import alias_moved
        from airflow_mlops.hooks.mlflow import MlflowHook

        if self._hook is None:
            self._hook = MlflowHook(self.mlflow_conn_id)
        # get_conn()'s client carries this connection's credentials itself: no os.environ, no lock, so triggers
        # of other connections in the same triggerer can poll at the same time.
        return alias_moved(self._hook.get_conn(), self.name, self.alias, self.not_version)

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "name": self.name, "alias": self.alias, **extra})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound

        failures = 0
        while True:
            try:
                version = await asyncio.to_thread(self._check)
            except (ModelNotFound, MlopsConfigError) as err:  # will not fix itself: report now
                yield self._event("error", message=str(err))
                return
            except Exception as err:
                failures += 1
                message = f"{type(err).__name__}: {err}"
                if failures >= self.max_consecutive_errors:
                    yield self._event(
                        "error",
                        message=f"Gave up watching alias {self.alias!r} of model {self.name!r} after "
                        f"{failures} failed checks in a row; last error: {message}",
                    )
                    return
                self.log.warning(
                    "Check %d/%d of alias %r of %r failed, retrying: %s",
                    failures,
                    self.max_consecutive_errors,
                    self.alias,
                    self.name,
                    message,
                )
                await asyncio.sleep(self.poll_interval)
                continue
            failures = 0
            if version is not None:
                yield self._event("success", version=version)
                return
            await asyncio.sleep(self.poll_interval)
