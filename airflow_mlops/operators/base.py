"""MlflowBaseOperator: the one way an airflow-mlops operator or sensor gets its MLflow hook.

``mlflow_conn_id`` is templated and concrete from construction on: the argument when given, else the
``[mlops] mlflow_conn_id`` option, whose default is the hook's own default connection name (``mlflow_default``).
So the UI's rendered fields show which connection a task uses. :attr:`MlflowBaseOperator.mlflow_hook` is built
once per task run, after rendering, and reused by everything the task does.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_mlops.hooks.mlflow import MlflowHook


def default_mlflow_conn_id() -> str:
    """The ``[mlops] mlflow_conn_id`` option (default ``mlflow_default``, the hook's default name)."""
    from airflow_mlops.settings import get_settings

    return get_settings().mlflow_conn_id


class MlflowBaseOperator(BaseOperator):
    """
    Base of every operator and sensor that talks to MLflow: a templated connection id and one cached hook.

    Subclasses list ``"mlflow_conn_id"`` in their own ``template_fields``. A sensor combines it with the
    sensor base: ``class MySensor(BaseSensorOperator, MlflowBaseOperator)``.

    :param mlflow_conn_id: Airflow connection of type ``mlflow`` (templated); default ``[mlops] mlflow_conn_id``.
    """

    template_fields: Sequence[str] = ("mlflow_conn_id",)

    def __init__(self, *, mlflow_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id or default_mlflow_conn_id()

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        """The hook of the rendered ``mlflow_conn_id`` (a template that rendered empty means the default)."""
        from airflow_mlops.hooks.mlflow import MlflowHook

        return MlflowHook(str(self.mlflow_conn_id or "").strip() or default_mlflow_conn_id())
