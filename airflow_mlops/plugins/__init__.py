"""The airflow-mlops AirflowPlugin: template macros, an API app that serves stored reports to Airflow users, and the Models view.

Registered through the ``airflow.plugins`` entry point (the provider-info ``plugins`` key is only honoured
with ``[core] lazy_discover_providers=False``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.plugins import listeners as pool_listener
from airflow_mlops.plugins.api import LazyApp
from airflow_mlops.plugins.macros import champion_uri, model_uri
from airflow_mlops.plugins.models_view import EXTERNAL_VIEW
from airflow_mlops.templates.macros import run_date, run_slug


class MlopsPlugin(AirflowPlugin):
    """Macros under ``{{ macros.airflow_mlops.* }}``, the ``/mlops`` API (report viewer, health) and the Models view."""

    name = "airflow_mlops"
    macros = [model_uri, champion_uri, run_date, run_slug]
    listeners = [pool_listener]  # creates [mlops] promotion_pool when a scheduler starts
    fastapi_apps = [{"app": LazyApp(), "url_prefix": "/mlops", "name": "airflow-mlops reports"}]
    external_views = [
        dict(EXTERNAL_VIEW)
    ]  # "Models" in the UI's nav: /plugin/mlops-models frames /mlops/models
