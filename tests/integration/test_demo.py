"""``./dev demo`` end to end: the story and its summary fit on one screen, with no third-party warning floods.

The demo runs with the OpenLineage provider's file transport on, so the same lifecycle run also proves what
issue 20 promises: the events of one lifecycle form one connected graph from the training data to the
predictions, with the model as a MODEL dataset and the GX results as data-quality assertions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_mlops.core.lineage_graph import LineageGraph, dataset_node, load_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class DemoRun:
    output: str
    root: Path
    events: Path


@pytest.fixture(scope="module")
def demo(demo_root: tuple[Path, str]) -> DemoRun:
    """The session's demo run (conftest's ``demo_root``: rc 0 already checked), with OpenLineage's file transport."""
    root, output = demo_root
    return DemoRun(output, root, root.parent / "openlineage" / "events.jsonl")


def test_demo_runs_the_lifecycle_and_fits_on_one_screen(demo: DemoRun) -> None:
    output = demo.output
    lines = output.splitlines()
    assert len(lines) < 80, f"the demo printed {len(lines)} lines:\n" + "\n".join(lines[:120])
    assert not re.search(r"\w+Warning", output), output
    assert "4/4" in output and "champion" in output and "DRIFT, drift Asset event emitted" in output


def _model_facets(graph: LineageGraph, job_suffix: str) -> list[dict]:
    """The ``mlops`` facets of the MODEL datasets the tasks named ``*job_suffix`` saw, oldest run first."""
    found = []
    for (job, node, _), facets in graph.seen_by.items():
        if job[2].endswith(job_suffix) and (facets.get("datasetType") or {}).get("datasetType") == "MODEL":
            found.append({"node": node, **(facets.get("mlops") or {})})
    return found


def test_the_lifecycle_lineage_is_one_connected_graph_from_training_data_to_predictions(
    demo: DemoRun,
) -> None:
    graph = LineageGraph.from_events(load_events(str(demo.events)))
    example = demo.root / "storage" / "example" / "churn"
    train = dataset_node(str(example / "train.parquet"))
    for batch in ("batch_normal", "batch_drifted"):
        predictions = dataset_node(str(example / "predictions" / f"{batch}.parquet"))
        chain = graph.path(train, predictions)
        assert chain is not None, f"no lineage path to {batch} predictions:\n{graph.render()}"
        jobs = [n[2] for n in chain if n[0] == "job"]
        assert jobs == ["churn_training.training.train", "churn_training.training.register",
                        "churn_inference.inference.score"], graph.render(chain)  # fmt: skip
        model = [n for n in chain if n[2] == "models/churn"]
        assert model and model[0][1].startswith("mlflow"), graph.render(chain)
    # the retraining DAG's candidate joins the same model node: one graph, not one per DAG
    retrained = dataset_node(str(example / "train_recent.parquet"))
    assert graph.path(retrained, dataset_node(str(example / "predictions" / "batch_normal.parquet")))
    assert graph.is_connected(), graph.render()


def test_models_are_model_datasets_with_the_mlops_facet(demo: DemoRun) -> None:
    graph = LineageGraph.from_events(load_events(str(demo.events)))
    gates = _model_facets(graph, "training.promote")
    assert {(g["version"], g.get("gateDecision"), g.get("alias")) for g in gates} >= {
        ("1", "promoted", "champion"),
        ("2", "promoted", "champion"),
    }, gates
    registered = _model_facets(graph, "training.register")
    assert {g["version"] for g in registered if g["node"][2] == "models/churn"} == {"1", "2"}, registered
    scored = _model_facets(graph, "inference.score")
    assert scored and all(g["version"] == "1" and g["alias"] == "champion" for g in scored), scored
    drift = [g for g in _model_facets(graph, "inference.detect_drift")]
    assert drift and drift[0]["driftShare"] > 0.2, drift  # the newest check: the drifted batch
    model_facets = graph.facets[("dataset", gates[0]["node"][1], "models/churn")]
    assert model_facets["version"]["datasetVersion"] in {"1", "2"}
    assert model_facets["mlops"]["_schemaURL"].endswith("#the-mlops-facet")


def test_data_carries_its_fingerprint_and_the_gx_assertions(demo: DemoRun) -> None:
    graph = LineageGraph.from_events(load_events(str(demo.events)))
    train = dataset_node(str(demo.root / "storage" / "example" / "churn" / "train.parquet"))
    seen = graph.seen_by[(("job", "mlops_demo", "churn_training.training.validate_data"), train, "in")]
    assertions = seen["dataQualityAssertions"]["assertions"]
    assert assertions and all(a["success"] for a in assertions), assertions
    assert any(a.get("column") for a in assertions), assertions
    assert len(seen["version"]["datasetVersion"]) >= 16  # the content fingerprint, not a placeholder
    trained = graph.seen_by[(("job", "mlops_demo", "churn_training.training.train"), train, "in")]
    assert trained["version"] == seen["version"], "validation and training name the same content"
