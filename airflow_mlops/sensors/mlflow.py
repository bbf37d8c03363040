"""Sensor that waits for an MLflow registered-model alias to exist or to point to a new version."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_mlops.exceptions import ModelRegistryError
from airflow_mlops.links.base import mlflow_model_version_url, push_link
from airflow_mlops.links.mlflow import MlflowModelVersionLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast, optional_text
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.openlineage import LineageSpec


class MlflowModelAliasSensor(OpenLineageMixin, BaseSensorOperator, MlflowBaseOperator):
    """
    Wait until ``alias`` of a registered model exists, or points to a version other than ``not_version``.

    Returns the version (a string, e.g. ``"4"``) and links to its MLflow page. With ``deferrable=True`` the wait
    runs in the triggerer (:class:`~airflow_mlops.triggers.mlflow.MlflowModelAliasTrigger`), freeing the worker
    slot; when the condition already holds, the sensor returns at once without deferring.

    .. code-block:: python

        # "a new champion appeared": fire when champion is no longer the version we scored with
        wait = MlflowModelAliasSensor(
            task_id="wait_for_new_champion",
            name="churn",
            alias="champion",
            not_version="{{ ti.xcom_pull('score')['model_version'] }}",
            deferrable=True,
            poke_interval=60,
            timeout=24 * 3600,
        )

    :param name: Registered model name (templated).
    :param alias: Alias to watch; default ``[mlops] champion_alias`` (templated).
    :param not_version: Fire only once the alias points to a different version; empty = once it exists
        (templated).
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    :param deferrable: Wait in the triggerer; default ``[operators] default_deferrable``.
    :param max_consecutive_errors: (deferrable) transient MLflow errors tolerated in a row.

    An unknown registered model fails the task at once (ModelNotFound naming the models that exist).
    """

    template_fields: Sequence[str] = ("name", "alias", "not_version", "mlflow_conn_id")
    operator_extra_links = (MlflowModelVersionLink(),)

    def __init__(
        self,
        *,
        name: str,
        alias: str | None = None,
        not_version: str | int | None = None,
        mlflow_conn_id: str | None = None,
        deferrable: bool | None = None,
        max_consecutive_errors: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        self.name = name
        self.alias = alias
        self.not_version = not_version
        if deferrable is None:
            from airflow.sdk import conf

            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self.deferrable = deferrable
        self.max_consecutive_errors = max_consecutive_errors

    # ------------------------------------------------------------------ resolved arguments
    def _target(self) -> tuple[str, str, str | None]:
        from airflow_mlops.core.registry import check_alias, check_model_name, check_version
        from airflow_mlops.settings import get_settings

        name = check_model_name(self.name)
        alias = check_alias(optional_text(self.alias) or get_settings().champion_alias)
        not_version = optional_text(self.not_version)
        return name, alias, None if not_version is None else check_version(not_version, what="not_version")

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The watched model in: the version its alias points to once found."""
        from airflow_mlops.core.openlineage import watched_model_lineage

        return watched_model_lineage(
            summary or {"name": self.name, "alias": self.alias}, self._tracking_uri()
        )

    def _found(self, context: Context, name: str, alias: str, version: str) -> str:
        self.log.info("Alias %r of model %r points to version %s", alias, name, version)
        self._mlops_summary = {"name": name, "alias": alias, "version": version}
        push_link(
            context, MlflowModelVersionLink, mlflow_model_version_url(self.mlflow_hook.ui_url, name, version)
        )
        return version

    # ------------------------------------------------------------------ poke / defer
    def _check(self, name: str, alias: str, not_version: str | None) -> str | None:
        from airflow_mlops.core.registry import alias_moved

        return alias_moved(self.mlflow_hook.get_conn(), name, alias, not_version)

    def poke(self, context: Context) -> PokeReturnValue:
        name, alias, not_version = self._target()
        version = self._check(name, alias, not_version)
        if version is None:
            self.log.info(
                "Waiting for alias %r of %r%s",
                alias,
                name,
                f" to leave v{not_version}" if not_version else "",
            )
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._found(context, name, alias, version))

    @fail_fast
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        name, alias, not_version = self._target()
        version = self._check(name, alias, not_version)
        if version is not None:  # already true: no need to occupy the triggerer
            return self._found(context, name, alias, version)
        from airflow_mlops.triggers.mlflow import MlflowModelAliasTrigger

        self.log.info("Deferring until alias %r of %r moves (not v%s)", alias, name, not_version)
        self.defer(
            trigger=MlflowModelAliasTrigger(
                name=name,
                alias=alias,
                not_version=not_version,
                mlflow_conn_id=self.mlflow_hook.mlflow_conn_id,
                poll_interval=float(self.poke_interval),
                max_consecutive_errors=self.max_consecutive_errors,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    @fail_fast
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: return the version, or fail with the trigger's message."""
        if not event or event.get("status") != "success":
            message = (event or {}).get("message") or f"no event from the trigger ({event!r})"
            raise ModelRegistryError(f"Waiting for an alias of model {self.name!r} failed: {message}")
        return self._found(context, str(event["name"]), str(event["alias"]), str(event["version"]))
