"""TrainingSpec parsing and static checks, and the pure parts of the training result contract."""

from __future__ import annotations

import json

import pytest

from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.core.tags import TAG_DATASET_URI, TAG_TI_KEY
from airflow_mlops.core.training_result import (
    TrainingResult,
    entrypoint_args,
    error_from_lines,
    identity_filter,
)
from airflow_mlops.core.training_spec import (
    AmpMode,
    ModelFamily,
    TaskType,
    TorchMlpParams,
    TrainingSpec,
)
from airflow_mlops.exceptions import TrainingSpecError

BASE = {"experiment": "churn", "dataset_uri": "/data/churn.parquet", "target": "churned"}


def spec(**overrides):
    body = {**BASE, "model": "sklearn.linear_model.LogisticRegression", **overrides}
    return TrainingSpec.from_obj(body)


def test_round_trip_through_json_string_file_and_copy(tmp_path):
    original = spec(
        features=["a", "b"], metrics=["roc_auc"], tags={"team": "growth"}, model={"estimator": "x.y.Z"}
    )
    assert original.model.family is ModelFamily.SKLEARN
    again = TrainingSpec.from_obj(original.to_json())
    assert again == original
    path = tmp_path / "spec.json"
    path.write_text(original.to_json())
    assert TrainingSpec.from_obj(str(path)) == original
    copied = TrainingSpec.from_obj(original)
    copied.tags["x"] = "1"
    assert "x" not in original.tags
    assert json.loads(original.to_json())["model"] == {
        "family": "sklearn",
        "estimator": "x.y.Z",
        "params": {},
    }


def test_model_shorthands_and_torch_params():
    mlp = spec(model="torch_mlp")
    assert mlp.model.family is ModelFamily.TORCH_MLP
    params = TrainingSpec.from_obj(
        {**BASE, "model": {"family": "torch_mlp", "params": {"hidden_layers": 16, "amp": "bf16"}}}
    ).torch_params()
    assert params.hidden_layers == (16,) and params.amp is AmpMode.BF16
    assert TorchMlpParams.from_params(params.to_dict()) == params


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model": "torch_mlp", "epochz": 3}, r"unknown training spec field\(s\) \['epochz'\]"),
        ({"model": None}, r"missing required field\(s\) \['model'\]"),
        ({"model": {"family": "xgb"}}, r"model.family='xgb' is invalid"),
        ({"model": {"family": "sklearn", "estimator": "not a path"}}, "is not an import path"),
        ({"task": "ranking"}, "task='ranking' is invalid"),
    ],
)
def test_parse_errors_name_the_field(body, match):
    with pytest.raises(TrainingSpecError, match=match):
        TrainingSpec.from_obj({**BASE, "model": "torch_mlp", **body}).validate_static()


def test_bad_json_and_missing_file():
    with pytest.raises(TrainingSpecError, match="not valid JSON"):
        TrainingSpec.from_obj("{not json")
    with pytest.raises(TrainingSpecError, match="does not exist"):
        TrainingSpec.from_obj("/nope/spec.json")


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("sklearn.linear_model.LogisticRegresion", "has no class 'LogisticRegresion'"),
        ("sklearn.linear_modl.LogisticRegression", "cannot be imported"),
        ("sklearn.base.clone", "has no class 'clone'"),
        ({"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": -1}}, "bad hyperparameter"),
        ({"estimator": "sklearn.linear_model.LogisticRegression", "params": {"Cee": 1}}, "Cee"),
        (
            {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": "many"}},
            "n_estimators",
        ),
    ],
)
def test_estimator_checks_need_no_data(model, match):
    with pytest.raises(TrainingSpecError, match=match):
        spec(model=model).validate_static()


def test_estimator_check_can_be_skipped_and_task_conflicts_are_caught():
    spec(model="sklearn.linear_model.LogisticRegresion").validate_static(check_estimator=False)
    with pytest.raises(TrainingSpecError, match="is a regressor but the spec says task='classification'"):
        spec(model="sklearn.linear_model.Ridge", task="classification").validate_static()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"epochs": 0}, "epochs=0 is invalid"),
        ({"hidden_layers": [64, -1]}, "hidden_layers"),
        ({"dropout": 1.5}, "dropout=1.5"),
        ({"learning_rate": "fast"}, "learning_rate='fast'"),
        ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
        ({"amp": "fp8"}, "amp='fp8' is invalid"),
        ({"lr": 0.1}, r"unknown torch_mlp hyperparameter\(s\) \['lr'\]"),
        ({"monitor": "rmse"}, "monitor='rmse' is not one of the spec's metrics"),
    ],
)
def test_bad_mlp_hyperparameters(params, match):
    with pytest.raises(TrainingSpecError, match=match):
        spec(model={"family": "torch_mlp", "params": params}, metrics=["accuracy"]).validate_static()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"metrics": ["accuracy", "rmse"]}, "mix classification and regression"),
        ({"metrics": ["auc"]}, r"unknown metric\(s\) \['auc'\]"),
        ({"metrics": ["rmse"], "task": "classification"}, "do not fit task 'classification'"),
        ({"tags": {TAG_DATASET_URI: "x"}}, "written by the trainer itself"),
        ({"tags": {"big": "x" * 9000}}, "MLflow allows"),
        ({"dataset_uri": "s3://b/../etc"}, "'..' segment"),
        ({"features": ["a", "churned"]}, "also listed in 'features'"),
        ({"features": ["a", "a"]}, "more than once"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_static_checks(overrides, match):
    with pytest.raises(TrainingSpecError, match=match):
        spec(model="torch_mlp", **overrides).validate_static()


def test_defaults_and_metric_resolution():
    s = spec(model="torch_mlp").validate_static()
    assert s.task is TaskType.AUTO and s.validation_fraction == 0.2 and s.checkpoint_uri is None
    assert s.resolved_metrics(TaskType.REGRESSION) == ["rmse", "mae", "r2"]
    assert spec(metrics="r2").metrics_task() is TaskType.REGRESSION


def test_identity_filter_result_dict_and_error_lines():
    identity = AirflowIdentity("d", "manual__2026-01-01T00:00:00+00:00", "train", try_number=3, map_index=2)
    text = identity_filter(identity)
    assert f"tags.`{TAG_TI_KEY}` = '{identity.ti_key}'" in text and "= '3'" in text
    assert "'" in identity_filter(AirflowIdentity("it's", "r", "t"))
    result = TrainingResult("r1", "7", "models:/m-1", {"val_accuracy": 0.9}, "/d.parquet", "sha256:x")
    assert result.to_summary("http://ui/")["run_url"] == "http://ui/#/experiments/7/runs/r1"
    assert set(result.to_summary()) == {
        "run_id",
        "experiment_id",
        "model_uri",
        "metrics",
        "dataset_uri",
        "dataset_fingerprint",
        "run_url",
    }
    assert error_from_lines(["x", "MLOPS_TRAINING_ERROR SchemaMismatch: column 'y' missing", "y"]) == (
        "SchemaMismatch: column 'y' missing"
    )
    assert error_from_lines(["nothing"]) is None
    assert entrypoint_args("{}") == ["-m", "airflow_mlops.training", "--spec", "{}"]
