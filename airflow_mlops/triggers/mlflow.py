"""Deferrable trigger that waits for an MLflow registered-model alias to appear or to move.

The poll loop is :class:`~airflow_mlops.triggers.base.MlflowPollTrigger`'s: MLflow calls run in a worker thread,
the trigger never raises and yields ``{"status": "success", "version": ...}`` or
``{"status": "error", "message": ...}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_mlops.triggers.base import MlflowPollTrigger


class MlflowModelAliasTrigger(MlflowPollTrigger):
    """
    Fire when ``alias`` of registered model ``name`` exists and points to a version other than ``not_version``.

    :param name: Registered model name.
    :param alias: Alias to watch, e.g. ``champion``.
    :param not_version: Fire only once the alias points to a different version (None: fire once it exists).
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param poll_interval: Seconds between checks.
    :param max_consecutive_errors: Transient errors tolerated in a row before an error event.
    """

    serialized_fields: ClassVar[tuple[str, ...]] = ("name", "alias", "not_version")
    event_fields: ClassVar[tuple[str, ...]] = ("name", "alias")

    def __init__(
        self,
        *,
        name: str,
        alias: str,
        not_version: str | None = None,
        poll_interval: float = 30.0,
        **poll: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, **poll)  # mlflow_conn_id, max_consecutive_errors
        self.name = name
        self.alias = alias
        self.not_version = not_version

    def describe(self) -> str:
        return f"alias {self.alias!r} of model {self.name!r}"

    def check(self) -> dict[str, Any] | None:
        from airflow_mlops.core.registry import alias_moved

        version = alias_moved(self.client(), self.name, self.alias, self.not_version)
        return None if version is None else {"version": version}
