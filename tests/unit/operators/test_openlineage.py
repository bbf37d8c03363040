"""operators/openlineage.py: the provider's OperatorLineage of each operator, as the OpenLineage client sends it."""

from __future__ import annotations

import json

import pytest
from openlineage.client.serde import Serde

from airflow_mlops.core import openlineage as ol
from airflow_mlops.operators.approval import MlflowApproveModelOperator
from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator
from airflow_mlops.operators.inference import (
    BatchInferenceCombineOperator,
    BatchInferenceOperator,
    BatchInferencePlanOperator,
)
from airflow_mlops.operators.mlflow import (
    MlflowPromoteModelOperator,
    MlflowRegisterModelOperator,
    MlflowRollbackModelOperator,
    MlflowSetModelAliasOperator,
)
from airflow_mlops.operators.openlineage import OpenLineageMixin, to_operator_lineage
from airflow_mlops.operators.spark import SparkBatchInferenceOperator
from airflow_mlops.operators.training import LocalTrainModelOperator
from airflow_mlops.operators.validation import GXValidateDatasetOperator
from airflow_mlops.sensors.drift import DriftSensor
from airflow_mlops.sensors.mlflow import MlflowModelAliasSensor


def _sent(lineage) -> dict:
    """The inputs and outputs as the client serialises them into a run event."""
    return {
        "inputs": [json.loads(Serde.to_json(d)) for d in lineage.inputs],
        "outputs": [json.loads(Serde.to_json(d)) for d in lineage.outputs],
    }


def test_a_model_is_a_model_dataset_with_its_version_and_the_mlops_facet() -> None:
    spec = ol.gate_lineage(
        {"name": "churn", "version": "7", "decision": "promoted", "promoted": True},
        "http://h:5000",
        "champion",
    )
    sent = _sent(to_operator_lineage(spec))
    model = sent["outputs"][0]
    assert (model["namespace"], model["name"]) == ("mlflow://h:5000", "models/churn")
    assert model["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert model["facets"]["version"]["datasetVersion"] == "7"
    mlops = model["facets"]["mlops"]
    assert {k: mlops[k] for k in ("name", "version", "alias", "gateDecision")} == {
        "name": "churn", "version": "7", "alias": "champion", "gateDecision": "promoted"
    }  # fmt: skip
    assert mlops["_schemaURL"].endswith("#the-mlops-facet") and mlops["_producer"]
    assert "driftShare" not in mlops  # unknown facts are left out, not sent as null


def test_gx_results_are_the_data_quality_assertions_input_facet() -> None:
    spec = ol.validation_lineage(
        {"dataset_uri": "s3://b/k.parquet", "fingerprint": "xxh3:1"},
        (ol.Assertion("not_null(age)", True, "age"), ol.Assertion("row_count_between", False)),
    )
    (data,) = _sent(to_operator_lineage(spec))["inputs"]
    assert (data["namespace"], data["name"], data["facets"]["version"]["datasetVersion"]) == (
        "s3://b",
        "k.parquet",
        "xxh3:1",
    )
    assertions = data["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert [{k: v for k, v in a.items() if k != "params"} for a in assertions] == [
        {"assertion": "not_null(age)", "success": True, "column": "age"},
        {"assertion": "row_count_between", "success": False},
    ]


OPERATORS = [
    lambda: GXValidateDatasetOperator(task_id="v", dataset_uri="/d/in.parquet", suite={"expectations": []}),
    lambda: LocalTrainModelOperator(
        task_id="t",
        training={
            "experiment": "e",
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "target": "y",
        },
        dataset_uri="/d/t.parquet",
    ),
    lambda: MlflowRegisterModelOperator(task_id="r", name="churn", run_id="abc"),
    lambda: MlflowPromoteModelOperator(task_id="g", name="churn", version="3", rules=[]),
    lambda: MlflowRollbackModelOperator(task_id="rb", name="churn"),
    lambda: MlflowSetModelAliasOperator(task_id="s", name="churn", alias="champion", version="2"),
    lambda: BatchInferenceOperator(
        task_id="b", model_uri="models:/churn@champion", input_uri="/d/b.parquet", output_uri="/p/b.parquet"
    ),
    lambda: BatchInferencePlanOperator(
        task_id="p", model_uri="models:/churn@champion", input_uri="/d/b", output_uri="/p/b.parquet"
    ),
    lambda: BatchInferenceCombineOperator(task_id="c", output_uri="/p/b.parquet", shards=[]),
    lambda: SparkBatchInferenceOperator(
        task_id="sp", model_uri="models:/churn@champion", input_uri="/d/b", output_uri="/p/b.parquet"
    ),
    lambda: EvidentlyDetectDriftOperator(task_id="d", model_name="churn", current_uri="/d/b.parquet"),
    lambda: MlflowModelAliasSensor(task_id="w", name="churn", alias="champion"),
    lambda: DriftSensor(task_id="ds", model_name="churn"),
    lambda: MlflowApproveModelOperator(task_id="a", name="churn", version="3", rules=[]),
]


@pytest.mark.parametrize("build", OPERATORS)
def test_every_operator_reports_lineage_before_and_after_a_result(build, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "http://h:5000"})
    )
    operator = build()
    assert isinstance(operator, OpenLineageMixin)
    start = operator.get_openlineage_facets_on_start()
    assert _sent(start) is not None  # serialisable, even with nothing known yet
    failed = operator.get_openlineage_facets_on_failure(None)
    assert _sent(failed) == _sent(start), "a task that failed before a result reports what it was given"


def test_a_kept_summary_becomes_the_complete_event(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "http://h:5000"})
    )
    operator = BatchInferenceOperator(
        task_id="b", model_uri="models:/churn@champion", input_uri="/d/b.parquet", output_uri="/p/b.parquet"
    )
    assert operator.mlflow_hook.tracking_uri == "http://h:5000"  # what execute resolved
    operator._mlops_summary = {
        "input_uri": "/d/b.parquet", "input_fingerprint": "xxh3:9", "model_name": "churn", "model_version": "5",
        "output_uri": "/p/b.parquet", "manifest_uri": "/p/_b.parquet.manifest.json",
    }  # fmt: skip
    sent = _sent(operator.get_openlineage_facets_on_complete(None))
    assert [(d["name"], d["facets"].get("version", {}).get("datasetVersion")) for d in sent["inputs"]] == [
        ("/d/b.parquet", "xxh3:9"),
        ("models/churn", "5"),
    ]
    assert sent["inputs"][1]["facets"]["mlops"]["alias"] == "champion"
    assert [d["name"] for d in sent["outputs"]] == ["/p/b.parquet", "/p/_b.parquet.manifest.json"]


def test_every_public_operator_reports_lineage() -> None:
    """docs/contributing.md, adding an operator, step 1: an operator or sensor mixes in OpenLineageMixin."""
    import airflow_mlops

    operators = [n for n in airflow_mlops._LAZY if n.endswith(("Operator", "Sensor"))]
    assert len(operators) >= 15
    missing = [n for n in operators if not issubclass(getattr(airflow_mlops, n), OpenLineageMixin)]
    assert not missing, f"operators without OpenLineage: {missing}"


def test_lineage_never_looks_a_connection_up(monkeypatch) -> None:
    """Before execute resolved the MLflow connection, models are left out rather than named without a server."""
    operator = MlflowRegisterModelOperator(task_id="r", name="churn", run_id="abc")
    operator._mlops_summary = {"name": "churn", "version": "2", "run_id": "abc"}

    def no_lookup(*args, **kwargs):
        raise AssertionError("a lineage method looked a connection up")

    monkeypatch.setattr("airflow_mlops.hooks.mlflow.MlflowHook.get_connection", no_lookup)
    sent = _sent(operator.get_openlineage_facets_on_complete(None))
    assert sent == {"inputs": [], "outputs": []}
    start = _sent(
        BatchInferenceOperator(
            task_id="b", model_uri="models:/m@champion", input_uri="/d/b", output_uri="/p/b"
        ).get_openlineage_facets_on_start()
    )
    assert [d["name"] for d in start["inputs"]] == ["/d/b"]
