"""core/openlineage.py: how datasets and models are named, and each operator's summary -> inputs and outputs."""

from __future__ import annotations

import os

import pytest

from airflow_mlops.core import openlineage as ol
from airflow_mlops.core.lineage_graph import LineageGraph


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/data/in.parquet", ("file", "/data/in.parquet")),
        ("file:///data/in.parquet", ("file", "/data/in.parquet")),
        ("file:///data/part/", ("file", "/data/part")),
        ("file://nas/data/in.csv", ("file://nas", "/data/in.csv")),
        ("s3://bucket/k/in.parquet", ("s3://bucket", "k/in.parquet")),
        ("s3://aws_prod@bucket/k/in.parquet", ("s3://bucket", "k/in.parquet")),  # the connection is not data
        ("gs://b/dir/", ("gs://b", "dir")),
        (
            "abfs://container@account.dfs.core.windows.net/p/x",
            ("abfs://container@account.dfs.core.windows.net", "p/x"),
        ),
        ("file://localhost/tmp/x.parquet", ("file", "/tmp/x.parquet")),
        ("s3://bucket", ("s3://bucket", "/")),
    ],
)
def test_data_uris_follow_the_openlineage_naming_spec(uri: str, expected: tuple[str, str]) -> None:
    assert ol.dataset_name(uri) == expected


def test_a_relative_path_is_named_by_its_absolute_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ol.dataset_name("data/in.parquet") == ("file", os.path.join(str(tmp_path), "data", "in.parquet"))
    assert ol.dataset_name("local://rel/x") == ("file", os.path.join(str(tmp_path), "rel", "x"))


@pytest.mark.parametrize(
    ("tracking_uri", "namespace"),
    [
        ("http://127.0.0.1:5000", "mlflow://127.0.0.1:5000"),
        ("https://user:secret@mlflow.example.com/prefix/", "mlflow://mlflow.example.com/prefix"),
        ("sqlite:////srv/mlflow.db", "mlflow+sqlite:////srv/mlflow.db"),
        ("postgresql://u:p@db1:5432/mlflow", "mlflow+postgresql://db1:5432/mlflow"),
        ("databricks://profile", "mlflow+databricks://profile"),
        ("http://h:abc", "mlflow://h:abc"),
        (None, "mlflow"),
    ],
)
def test_the_model_namespace_is_the_tracking_server_without_credentials(tracking_uri, namespace) -> None:
    assert ol.mlflow_namespace(tracking_uri) == namespace
    assert "secret" not in ol.mlflow_namespace(tracking_uri)


def test_alias_of_a_model_uri() -> None:
    assert ol.alias_of("models:/churn@champion") == "champion"
    assert ol.alias_of("models:/churn/3") is None
    assert ol.alias_of(None) is None


TRACKING = "http://127.0.0.1:5000"


def test_validation_reports_the_dataset_with_its_fingerprint_and_assertions() -> None:
    checks = (ol.Assertion("expect_column_values_to_not_be_null(age)", True, "age"),)
    spec = ol.validation_lineage(
        {
            "dataset_uri": "/d/train.parquet",
            "fingerprint": "xxh3:abc",
            "report_uri": "/r/v.html",
            "report_json_uri": None,
        },
        checks,
    )
    (data,) = spec.inputs
    assert (data.namespace, data.name, data.version, data.assertions) == (
        "file",
        "/d/train.parquet",
        "xxh3:abc",
        checks,
    )
    assert [(o.name, o.kind) for o in spec.outputs] == [("/r/v.html", "report")]


def test_the_lifecycle_names_one_model_node_across_operators() -> None:
    train = ol.training_lineage(
        {"dataset_uri": "/d/t.parquet", "dataset_fingerprint": "f", "run_id": "r1"}, TRACKING
    )
    register = ol.registration_lineage({"name": "churn", "version": "3", "run_id": "r1"}, TRACKING)
    gate = ol.gate_lineage(
        {"name": "churn", "version": "3", "decision": "promoted", "promoted": True}, TRACKING, "champion"
    )
    score = ol.scoring_lineage(
        {"input_uri": "/d/b.parquet", "model_name": "churn", "model_version": "3", "output_uri": "/p/b.parquet",
         "manifest_uri": "/p/_b.manifest.json"},
        TRACKING, "champion",
    )  # fmt: skip
    drift = ol.drift_lineage(
        {"reference_uri": "/d/t.parquet", "current_uri": "/d/b.parquet", "model_name": "churn", "model_version": "3",
         "drift_share": 0.4, "report_uri": "/r/d.html"},
        TRACKING,
    )  # fmt: skip
    assert train.outputs[0].key == register.inputs[0].key == ("mlflow://127.0.0.1:5000", "runs/r1/model")
    assert register.outputs[0].key == gate.outputs[0].key == score.inputs[1].key == drift.inputs[2].key
    assert all(d.kind == "model" for d in (train.outputs[0], register.outputs[0], score.inputs[1]))
    assert register.outputs[0].model == ol.ModelFacts("churn", "3", run_id="r1")
    assert gate.outputs[0].model == ol.ModelFacts("churn", "3", alias="champion", gate_decision="promoted")
    assert score.inputs[1].model is not None and score.inputs[1].model.alias == "champion"
    assert drift.inputs[2].model is not None and drift.inputs[2].model.drift_share == 0.4
    assert [o.kind for o in score.outputs] == ["predictions", "report"]


def test_a_rejected_candidate_does_not_carry_the_champion_alias() -> None:
    gate = ol.gate_lineage(
        {"name": "churn", "version": "4", "decision": "rejected", "promoted": False}, TRACKING, "champion"
    )
    assert gate.outputs[0].model == ol.ModelFacts("churn", "4", gate_decision="rejected")


def test_an_alias_move_goes_from_the_previous_to_the_new_version() -> None:
    spec = ol.alias_move_lineage(
        {"name": "churn", "alias": "champion", "version": "2", "previous_version": "3"}, TRACKING
    )
    assert (spec.inputs[0].version, spec.outputs[0].version) == ("3", "2")


def test_before_a_result_only_known_inputs_are_reported() -> None:
    assert not ol.validation_lineage({})
    assert not ol.registration_lineage({}, TRACKING)
    spec = ol.training_lineage({"dataset_uri": "/d/t.parquet"}, TRACKING)
    assert spec.inputs and not spec.outputs


def _event(job: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> dict:
    def ds(ns_name: tuple[str, str]) -> dict:
        return {"namespace": ns_name[0], "name": ns_name[1], "facets": {}}

    return {"eventType": "COMPLETE", "job": {"namespace": "n", "name": job},
            "inputs": [ds(i) for i in inputs], "outputs": [ds(o) for o in outputs]}  # fmt: skip


def test_the_graph_finds_the_chain_and_tells_a_split_graph() -> None:
    a, m, p, x = ("file", "/a"), ("mlflow", "models/m"), ("file", "/p"), ("file", "/x")
    graph = LineageGraph.from_events([_event("train", [a], [m]), _event("score", [m], [p])])
    chain = graph.path(("dataset", *a), ("dataset", *p))
    assert [n[2] for n in chain or []] == ["/a", "train", "models/m", "score", "/p"]
    assert graph.path(("dataset", *p), ("dataset", *a)) is None  # lineage is directed
    assert graph.is_connected()
    split = LineageGraph.from_events([_event("train", [a], [m]), _event("other", [x], [p])])
    assert not split.is_connected()
    assert split.path(("dataset", *a), ("dataset", *p)) is None


def test_a_sensor_reports_the_model_it_watched() -> None:
    spec = ol.watched_model_lineage({"name": "churn", "alias": "champion", "version": "4"}, TRACKING)
    assert not spec.outputs and spec.inputs[0].model == ol.ModelFacts("churn", "4", alias="champion")
    drift = ol.watched_model_lineage(
        {"model_name": "churn", "model_version": "4", "drift_share": 0.5}, TRACKING
    )
    assert drift.inputs[0].key == spec.inputs[0].key and drift.inputs[0].model.drift_share == 0.5
