"""LocalTrainModelOperator (operators/training.py): a real training subprocess against the SQLite MLflow store.

``MlflowHook.check_reachable`` only probes http(s) servers, so a ``sqlite://`` connection needs no server: the
child process gets ``MLFLOW_TRACKING_URI=sqlite:///...`` and logs its run into the same store the test reads.
The spec and argument checks that fail before any process starts are tested on their own.
"""

from __future__ import annotations

import json

import pytest

from airflow_mlops.core.tags import TAG_TI_KEY, TAG_TRY_NUMBER, TAG_VALIDATION, TAG_VALIDATION_REPORT
from airflow_mlops.exceptions import MlopsConfigError, TrainingSpecError
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.training import LocalTrainModelOperator, MlflowTrainingRunLink
from tests.helpers.frames import make_frame
from tests.unit.operators._support import UI_URL

VALIDATION = {
    "success": True,
    "status": "passed",
    "suite": "churn",
    "rows": 300,
    "report_uri": "/r/validation.html",
}


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "train.parquet"
    make_frame(rows=300).to_parquet(path)
    return path


@pytest.fixture
def spec(mlflow_conn, name, dataset, tmp_path, monkeypatch):
    """A small sklearn spec on ``dataset``; its experiment exists with artifacts under the store's folder."""
    mlflow_conn.experiment(name)
    monkeypatch.chdir(tmp_path)  # whatever the child writes relative to its working directory stays here
    return {
        "experiment": name,
        "dataset_uri": str(dataset),
        "target": "label",
        "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        "metrics": ["roc_auc", "accuracy"],
    }


def test_trains_in_a_subprocess_and_returns_the_run_it_logged(mlflow_conn, name, spec, dataset, runtime):
    op = LocalTrainModelOperator(
        task_id="train", training=spec, hyperparameters='{"max_iter": 300}', validation=VALIDATION
    )
    ctx = runtime.context("train")

    out = op.execute(ctx)

    run = mlflow_conn.client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert out["experiment_id"] == mlflow_conn.experiment(name) == run.info.experiment_id
    assert out["model_uri"].startswith("models:/m-")
    assert set(out["metrics"]) == {"val_roc_auc", "val_accuracy"} and out["metrics"]["val_roc_auc"] > 0.9
    assert out["dataset_uri"] == str(dataset) and out["dataset_fingerprint"].startswith("xxh3:")
    assert out["run_url"] == f"{UI_URL}/#/experiments/{out['experiment_id']}/runs/{out['run_id']}"
    assert ctx["ti"].pushed(MlflowTrainingRunLink.xcom_url_key) == out["run_url"]
    tags = run.data.tags
    assert tags[TAG_TI_KEY] == "unit_dag/manual__unit/train/-1" and tags[TAG_TRY_NUMBER] == "1"
    assert json.loads(tags[TAG_VALIDATION])["suite"] == "churn"
    assert tags[TAG_VALIDATION_REPORT] == "/r/validation.html"
    assert run.data.params["model.max_iter"] == "300"  # the run's hyperparameters override model.params


def test_bad_data_fails_the_task_for_good_with_the_trainers_message(spec, runtime):
    op = LocalTrainModelOperator(task_id="train", training={**spec, "target": "churned"})

    with pytest.raises(MlopsPermanentFailure) as info:
        op.execute(runtime.context("train"))

    assert isinstance(info.value.error, TrainingSpecError)
    assert "the trainer rejected the spec or data" in str(info.value) and "churned" in str(info.value)


# ---------------------------------------------------------------------------- checks before any process starts
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epochs": 3}, r"unknown training spec field\(s\) \['epochs'\]"),
        ({"target": ""}, r"missing required field\(s\) \['target'\]"),
        ({"metrics": ["roc_auc", "rmse"]}, "mix classification and regression metrics"),
        ({"validation_fraction": 1.5}, "'validation_fraction'=1.5 must be between 0 and 1"),
        ({"dataset_uri": "/data/../etc/passwd"}, "contains a '..' segment"),
        ({"model": {"family": "sklearn", "estimator": "sklearn.linear_model.NoSuchModel"}}, "NoSuchModel"),
        ({"model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"C": "high"}}}, "C"),
    ],
)  # fmt: skip
def test_a_bad_spec_fails_with_a_clear_error_before_starting_a_process(
    mlflow_conn, spec, runtime, monkeypatch, change, match
):
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))  # a tripwire, never reached
    op = LocalTrainModelOperator(task_id="train", training={**spec, **change})

    with pytest.raises(MlopsPermanentFailure, match=match) as info:
        op.execute(runtime.context("train"))

    assert isinstance(info.value.error, TrainingSpecError)
    assert started == []


def test_hyperparameters_that_render_to_no_json_object_are_refused(spec, runtime):
    op = LocalTrainModelOperator(task_id="train", training=spec, hyperparameters="max_iter=300")

    with pytest.raises(MlopsPermanentFailure, match="which is not a JSON object; render it with the tojson"):
        op.execute(runtime.context("train"))


def test_a_missing_interpreter_is_named(spec, runtime):
    op = LocalTrainModelOperator(task_id="train", training=spec, python="/no/such/python3")

    with pytest.raises(MlopsPermanentFailure) as info:
        op.execute(runtime.context("train"))

    assert isinstance(info.value.error, MlopsConfigError)
    assert "training interpreter '/no/such/python3' was not found" in str(info.value)
