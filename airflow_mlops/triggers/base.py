"""The poll loop every airflow-mlops trigger shares.

A subclass says what one check is (:meth:`MlflowPollTrigger.check`, blocking, run in a worker thread through
``asyncio.to_thread`` so the triggerer's event loop never blocks) and which of its attributes it serializes;
the loop does the rest. :meth:`~MlflowPollTrigger.run` never raises: it yields ``{"status": "success", ...}``
once a check finds something, or ``{"status": "error", "message": ...}`` for an error no retry can fix (an
unknown model, a bad argument) or after ``max_consecutive_errors`` transient failures in a row (server
restarting, network blip).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_mlops.hooks.mlflow import MlflowHook

DEFAULT_MLFLOW_CONN_ID = "mlflow_default"


class MlflowPollTrigger(BaseTrigger):
    """
    Poll MLflow until :meth:`check` returns a payload, then fire once.

    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param poll_interval: Seconds between checks.
    :param max_consecutive_errors: Transient errors tolerated in a row before an error event.
    """

    #: The constructor arguments of the subclass that :meth:`serialize` writes (besides the three below).
    serialized_fields: ClassVar[tuple[str, ...]] = ()
    #: The attributes every event carries, so a sensor can tell which watch fired.
    event_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        poll_interval: float = 30.0,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ is unannotated
        self.mlflow_conn_id = mlflow_conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_errors = int(max_consecutive_errors)
        self._hook: MlflowHook | None = None

    # ------------------------------------------------------------------------ what a subclass provides
    def check(self) -> dict[str, Any] | None:
        """One blocking check: the success payload, or None to keep waiting. Raise for errors."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is watched, for messages (``alias 'champion' of model 'churn'``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ shared
    @property
    def hook(self) -> MlflowHook:
        """One hook per trigger, built in the worker thread on first use."""
        if self._hook is None:
            from airflow_mlops.hooks.mlflow import MlflowHook

            self._hook = MlflowHook(self.mlflow_conn_id)
        return self._hook

    def client(self) -> Any:
        # get_conn()'s client carries this connection's credentials itself: no os.environ, no lock, so triggers
        # of other connections in the same triggerer can poll at the same time.
        return self.hook.get_conn()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        fields = (*self.serialized_fields, "mlflow_conn_id", "poll_interval", "max_consecutive_errors")
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {name: getattr(self, name) for name in fields},
        )

    def event(self, status: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, **{f: getattr(self, f) for f in self.event_fields}, **extra})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound

        failures = 0
        while True:
            try:
                found = await asyncio.to_thread(self.check)
            except (ModelNotFound, MlopsConfigError) as err:  # will not fix itself: report now
                yield self.event("error", message=str(err))
                return
            except Exception as err:  # noqa: BLE001 - transient until proven otherwise: retried up to the limit
                failures += 1
                message = f"{type(err).__name__}: {err}"
                if failures >= self.max_consecutive_errors:
                    yield self.event(
                        "error",
                        message=f"Gave up watching {self.describe()} after {failures} failed checks in a row; "
                        f"last error: {message}",
                    )
                    return
                self.log.warning(
                    "Check %d/%d of %s failed, retrying: %s",
                    failures,
                    self.max_consecutive_errors,
                    self.describe(),
                    message,
                )
                await asyncio.sleep(self.poll_interval)
                continue
            failures = 0
            if found is not None:
                yield self.event("success", **found)
                return
            await asyncio.sleep(self.poll_interval)
