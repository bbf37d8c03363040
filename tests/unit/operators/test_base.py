"""MlflowBaseOperator: every MLflow-touching operator and sensor gets its connection id and hook one way."""

from __future__ import annotations

import pytest

import airflow_mlops
from airflow_mlops.operators.base import MlflowBaseOperator, default_mlflow_conn_id

MLFLOW_CLASSES = [
    "MlflowRegisterModelOperator",
    "MlflowPromoteModelOperator",
    "MlflowRollbackModelOperator",
    "MlflowSetModelAliasOperator",
    "BatchInferenceOperator",
    "BatchInferencePlanOperator",
    "BatchInferenceCombineOperator",
    "EvidentlyDetectDriftOperator",
    "LocalTrainModelOperator",
    "KubernetesTrainModelOperator",
    "MlflowModelAliasSensor",
    "DriftSensor",
]


@pytest.mark.parametrize("name", MLFLOW_CLASSES)
def test_every_mlflow_operator_and_sensor_is_an_mlflow_base_operator_with_a_templated_conn_id(name):
    cls = getattr(airflow_mlops, name)
    assert issubclass(cls, MlflowBaseOperator)
    assert "mlflow_conn_id" in cls.template_fields


def test_conn_id_defaults_to_the_mlops_option_which_defaults_to_the_hook_default_name(monkeypatch):
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.settings import get_settings

    assert default_mlflow_conn_id() == MlflowHook.default_conn_name == "mlflow_default"
    op = airflow_mlops.MlflowSetModelAliasOperator(task_id="t", name="m", alias="a", version=1)
    assert op.mlflow_conn_id == "mlflow_default"  # concrete at construction: the UI shows it
    get_settings.cache_clear()
    monkeypatch.setenv("AIRFLOW__MLOPS__MLFLOW_CONN_ID", "mlflow_team")
    try:
        op = airflow_mlops.MlflowSetModelAliasOperator(task_id="t", name="m", alias="a", version=1)
        assert op.mlflow_conn_id == "mlflow_team"
        explicit = airflow_mlops.DriftSensor(task_id="s", model_name="m", mlflow_conn_id="mine")
        assert explicit.mlflow_conn_id == "mine"
    finally:
        get_settings.cache_clear()


def test_the_hook_is_built_once_from_the_rendered_conn_id():
    op = airflow_mlops.MlflowModelAliasSensor(task_id="s", name="m", mlflow_conn_id="{{ params.conn }}")
    op.mlflow_conn_id = "rendered"  # what template rendering does before execute
    hook = op.mlflow_hook
    assert hook.mlflow_conn_id == "rendered" and op.mlflow_hook is hook
    empty = airflow_mlops.BatchInferenceCombineOperator(task_id="c", output_uri="/tmp/x", shards=[])
    empty.mlflow_conn_id = ""  # a template that rendered empty means the default
    assert empty.mlflow_hook.mlflow_conn_id == "mlflow_default"
