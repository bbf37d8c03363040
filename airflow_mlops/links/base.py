"""Extra-link base class and URL builders shared by every airflow-mlops operator.

In Airflow 3 the worker evaluates extra links when the task finishes and stores them; ``get_link`` here reads
the URL the operator pushed to XCom under ``xcom_url_key`` for that task instance (``ti_key``), so the link
works for every try and map index and never depends on the operator object's runtime state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context
    from airflow.sdk.types import TaskInstanceKey

REPORT_VIEW_PATH = "/mlops/reports/view"


class XComUrlLink(BaseOperatorLink):
    """A link whose URL the operator pushed to XCom under ``xcom_url_key`` during ``execute``."""

    name: ClassVar[str] = "MLOps"
    xcom_url_key: ClassVar[str] = "mlops_link"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=self.xcom_url_key)
        return value if isinstance(value, str) else ""


def push_link(context: Context, link: type[XComUrlLink], url: str | None) -> None:
    """Store ``url`` where ``link`` will read it; an empty string when there is no URL (the link is hidden)."""
    context["ti"].xcom_push(key=link.xcom_url_key, value=url or "")


def report_view_url(report_uri: str) -> str:
    """Browser URL of a report: http(s) URIs as they are, anything else through the plugin's report viewer.

    The viewer (:mod:`airflow_mlops.plugins.api`) serves it to logged-in users who may read the DAG named in
    the report folder's owner record, so the writing operator must call
    :func:`airflow_mlops.core.report_owner.write_owner` for it.
    """
    if report_uri.startswith(("http://", "https://")):
        return report_uri
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or "http://localhost:8080"
    return f"{base.rstrip('/')}{REPORT_VIEW_PATH}?uri={quote(report_uri, safe='')}"


def models_view_url(name: str) -> str:
    """Browser URL of a model's page in the Models view (the plugin's ``/mlops/models/<name>``)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or "http://localhost:8080"
    return f"{base.rstrip('/')}/mlops/models/{quote(name, safe='')}"


def mlflow_run_url(ui_url: str | None, experiment_id: str, run_id: str) -> str | None:
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_model_version_url(ui_url: str | None, name: str, version: str | int) -> str | None:
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"
