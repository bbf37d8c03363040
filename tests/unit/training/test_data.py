"""Column checks, task inference and metric computation of the trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core.training_spec import TaskType, TrainingSpec
from airflow_mlops.exceptions import SchemaMismatch
from airflow_mlops.training.data import infer_task, load_and_split
from airflow_mlops.training.metrics import compute_metrics


def spec_for(uri, model="torch_mlp", **extra):
    return TrainingSpec.from_obj(
        {"experiment": "e", "dataset_uri": uri, "target": "label", "model": model, **extra}
    )


def test_missing_target_and_features_name_the_columns(cls_uri):
    with pytest.raises(SchemaMismatch, match=r"target column 'churn' missing from dataset .*cls.parquet"):
        load_and_split(
            TrainingSpec.from_obj(
                {"experiment": "e", "dataset_uri": cls_uri, "target": "churn", "model": "torch_mlp"}
            )
        )
    with pytest.raises(SchemaMismatch, match=r"feature column\(s\) \['zz'\] missing"):
        load_and_split(spec_for(cls_uri, features=["a", "zz"]))


def test_mlp_rejects_text_features_and_nulls(tmp_path):
    frame = pd.DataFrame({"a": np.arange(50.0), "city": ["x", "y"] * 25, "label": [0, 1] * 25})
    uri = str(tmp_path / "t.parquet")
    frame.to_parquet(uri)
    with pytest.raises(
        SchemaMismatch, match=r"\{'city': '(object|str)'\} .* not numeric.*Encode them upstream"
    ):
        load_and_split(spec_for(uri))
    data = load_and_split(spec_for(uri, features=["a"]))
    assert data.features == ["a"] and len(data.x_train) == 40
    frame.loc[3, "a"] = None
    frame.to_parquet(uri)
    with pytest.raises(SchemaMismatch, match="missing values"):
        load_and_split(spec_for(uri, features=["a"]))


def test_infer_task():
    s = spec_for("x")
    assert infer_task(s, pd.Series(["a", "b"])) is TaskType.CLASSIFICATION
    assert infer_task(s, pd.Series([0, 1, 2])) is TaskType.CLASSIFICATION
    assert infer_task(s, pd.Series(np.linspace(0, 1, 50))) is TaskType.REGRESSION
    assert infer_task(s, pd.Series(range(100))) is TaskType.REGRESSION
    assert infer_task(spec_for("x", metrics=["rmse"]), pd.Series([0, 1])) is TaskType.REGRESSION


def test_metrics():
    y = np.array(["n", "y", "y", "n"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    values = compute_metrics(
        ["accuracy", "f1", "roc_auc", "log_loss"],
        TaskType.CLASSIFICATION,
        y,
        np.array(["n", "y", "y", "y"]),
        proba,
        ["n", "y"],
    )
    assert values["accuracy"] == 0.75 and values["roc_auc"] == 0.75 and values["f1"] == pytest.approx(0.8)
    assert "roc_auc" not in compute_metrics(["roc_auc"], TaskType.CLASSIFICATION, y, y, None, ["n", "y"])
    reg = compute_metrics(["rmse", "mae", "r2"], TaskType.REGRESSION, [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert reg["mae"] == pytest.approx(1 / 3) and reg["rmse"] == pytest.approx((1 / 3) ** 0.5)
