"""Airflow Assets published by airflow-mlops, named in one place so producers and consumers agree.

``drift_asset("churn")`` is the per-model drift Asset: :class:`~airflow_mlops.operators.drift.EvidentlyDetectDriftOperator`
adds an event to it (through :func:`drift_asset_alias`, so that only confirmed drift emits) and a retraining
DAG schedules on it:

.. code-block:: python

    from airflow_mlops.assets import drift_asset

    with DAG("churn_retrain", schedule=[drift_asset("churn")]):
        ...  # context["triggering_asset_events"][drift_asset("churn")][-1].extra has the drift details
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow_mlops.exceptions import MlopsConfigError

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

DRIFT_ASSET_PREFIX = "mlops-drift-"
DRIFT_ALIAS_NAME = "mlops-drift-events"


def _check_model_name(model_name: str) -> str:
    if not isinstance(model_name, str) or not model_name.strip():
        raise MlopsConfigError(
            "model_name is empty; give the registered model name, e.g. drift_asset('churn')."
        )
    if "{{" in model_name:
        raise MlopsConfigError(
            f"model_name {model_name!r} is a Jinja template; the drift Asset needs the literal model name "
            "when the DAG is parsed (schedule=[drift_asset('churn')])."
        )
    return model_name.strip()


def drift_asset_name(model_name: str) -> str:
    return f"{DRIFT_ASSET_PREFIX}{_check_model_name(model_name)}"


def drift_asset_uri(model_name: str) -> str:
    return f"x-mlops://models/{quote(_check_model_name(model_name), safe='-_.~')}/drift"


def drift_asset(model_name: str) -> Asset:
    """The drift Asset of a registered model: name ``mlops-drift-<model>``, uri ``x-mlops://models/<model>/drift``."""
    from airflow.sdk import Asset

    return Asset(name=drift_asset_name(model_name), uri=drift_asset_uri(model_name))


def drift_asset_alias() -> AssetAlias:
    """
    The alias the drift operator emits through.

    Events go through an alias because a plain outlet Asset gets an event on every successful run, and a
    drift check must emit only when the retraining policy says so.
    """
    from airflow.sdk import AssetAlias

    return AssetAlias(name=DRIFT_ALIAS_NAME)
