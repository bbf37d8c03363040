"""The example lifecycle end to end: the demo command with the real scheduler for the drift -> retrain hop,
then lineage walked backwards from a predictions manifest to the validation report of the training data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.core.scoring import manifest_uri_for
from airflow_mlops.core.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_TRAINING_RUN,
    TAG_VALIDATION,
    TAG_VALIDATION_REPORT,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(root: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_demo_story(demo_root):
    root, output = demo_root
    assert "1/4 training DAG" in output and "v1: promoted" in output
    assert "no drift" in output
    assert "DRIFT, drift Asset event emitted" in output
    assert "run type: asset_triggered" in output  # the scheduler started retraining from the event
    client = _client(root)
    model = client.get_registered_model("churn")
    versions = client.search_model_versions("name = 'churn'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert model.aliases["challenger"] == 2
    assert model.aliases["champion"] in (1, 2)  # moved or kept, with the reason printed
    assert "retraining after drift: v2" in output
    # nothing left running: the scheduler and API server were stopped with their process groups
    leftovers = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_lineage_walks_back_from_predictions_to_validation_report(demo_root):
    root, _ = demo_root
    predictions = root / "storage" / "example" / "churn" / "predictions" / "batch_normal.parquet"
    manifest = json.loads(Path(manifest_uri_for(str(predictions))).read_text())
    assert manifest["rows"] == 2000
    assert manifest["model_name"] == "churn"
    assert manifest["input_fingerprint"] == fingerprint(manifest["input_uri"])

    client = _client(root)
    version = client.get_model_version("churn", str(manifest["model_version"]))
    assert version.run_id == manifest["model_run_id"]
    training_run_id = version.tags[TAG_TRAINING_RUN]
    assert training_run_id == version.run_id
    run = client.get_run(training_run_id)
    train_uri = run.data.tags[TAG_DATASET_URI]
    assert train_uri.endswith("train.parquet")
    assert (
        run.data.tags[TAG_DATASET_FINGERPRINT]
        == fingerprint(train_uri)
        == version.tags[TAG_DATASET_FINGERPRINT]
    )

    validation = json.loads(version.tags[TAG_VALIDATION])
    assert validation["success"] is True
    assert validation["fingerprint"] == run.data.tags[TAG_DATASET_FINGERPRINT]
    report_html = version.tags[TAG_VALIDATION_REPORT]
    assert Path(report_html).is_file()
    report_json = json.loads(Path(validation_json_of(report_html)).read_text())
    assert report_json["fingerprint"] == validation["fingerprint"]


def validation_json_of(report_html: str) -> str:
    """The JSON report sits next to the HTML one."""
    candidate = Path(report_html).with_name("validation.json")
    assert candidate.is_file(), f"no JSON report next to {report_html}"
    return str(candidate)
