"""The MLP training loop without MLflow: precision choice, learning, early stopping, exact resume."""

from __future__ import annotations

import pytest
import torch

from airflow_mlops.core.training_spec import TaskType, TorchMlpParams, TrainingSpec
from airflow_mlops.training.checkpoint import load_checkpoint, matching_checkpoint, save_checkpoint
from airflow_mlops.training.data import load_and_split
from airflow_mlops.training.torch_trainer import choose_precision, train_mlp


def prepared(uri, **params):
    spec = TrainingSpec.from_obj(
        {
            "experiment": "e",
            "dataset_uri": uri,
            "target": "label",
            "model": {"family": "torch_mlp", "params": params},
        }
    ).validate_static()
    return spec, load_and_split(spec)


def test_cpu_precision_is_fp32_unless_bf16_is_asked_for():
    assert choose_precision(TorchMlpParams()).label == (
        "cuda-bf16" if torch.cuda.is_available() else "cpu-fp32"
    )
    assert choose_precision(TorchMlpParams.from_params({"device": "cpu"})).label == "cpu-fp32"
    assert choose_precision(TorchMlpParams.from_params({"device": "cpu", "amp": "bf16"})).label == "cpu-bf16"
    assert (
        choose_precision(TorchMlpParams.from_params({"device": "cpu", "amp": "fp16"})).autocast_dtype is None
    )


def test_classification_with_string_labels_learns(cls_uri):
    spec, data = prepared(cls_uri)
    assert data.task is TaskType.CLASSIFICATION and data.classes == ["no", "yes"]
    params = TorchMlpParams.from_params({"epochs": 8, "hidden_layers": [16], "learning_rate": 0.01})
    seen = []
    out = train_mlp(data, params, ["accuracy", "roc_auc"], seed=1, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == list(range(1, 9))
    assert {"epoch_train_loss", "epoch_val_loss", "epoch_val_accuracy", "epoch_samples_per_s"} <= set(
        seen[0][1]
    )
    assert out.metrics["accuracy"] > 0.85 and out.metrics["roc_auc"] > 0.9
    assert (
        out.epochs_completed == 8 and out.precision == "cpu-fp32" and out.config["classes"] == ["no", "yes"]
    )


def test_regression_and_bf16_autocast_on_cpu(reg_uri):
    spec, data = prepared(reg_uri)
    assert data.task is TaskType.REGRESSION
    params = TorchMlpParams.from_params({"epochs": 6, "learning_rate": 0.01, "device": "cpu", "amp": "bf16"})
    out = train_mlp(data, params, ["rmse", "r2"], seed=0)
    assert out.precision == "cpu-bf16" and out.metrics["r2"] > 0.8


def test_early_stopping_stops_after_patience(cls_uri):
    _, data = prepared(cls_uri)
    params = TorchMlpParams.from_params(
        {"epochs": 20, "learning_rate": 1e-9, "patience": 2, "min_delta": 10.0, "monitor": "loss"}
    )
    out = train_mlp(data, params, ["accuracy"], seed=0)
    assert out.stopped_early and out.epochs_completed == 3 and out.best_epoch == 1


def test_resume_from_a_checkpoint_gives_the_same_model(cls_uri, tmp_path):
    """Training 2 epochs, then resuming for 2 more equals 4 epochs in one go (model, RNG and optimizer state)."""
    _, data = prepared(cls_uri)
    params = TorchMlpParams.from_params({"epochs": 4, "hidden_layers": [8], "dropout": 0.2, "patience": 0})
    straight = train_mlp(data, params, ["accuracy"], seed=3)

    uri = str(tmp_path / "ck" / "checkpoint.pt")
    meta = {"ti_key": "k", "spec_hash": "s", "fingerprint": data.fingerprint, "run_id": "r"}

    class Stop(Exception):
        pass

    def save_then_die(state):
        save_checkpoint(uri, {**state, **meta})
        if state["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train_mlp(data, params, ["accuracy"], seed=3, save_checkpoint=save_then_die)
    resume = matching_checkpoint(uri, ti_key="k", spec_digest="s", fingerprint=data.fingerprint)
    assert resume is not None and resume["epoch"] == 2
    epochs = []
    resumed = train_mlp(
        data, params, ["accuracy"], seed=3, resume=resume, on_epoch=lambda e, m: epochs.append(e)
    )
    assert epochs == [3, 4] and resumed.resumed_from_epoch == 2 and resumed.epochs_completed == 4
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert matching_checkpoint(uri, ti_key="other", spec_digest="s", fingerprint=data.fingerprint) is None
    assert load_checkpoint(str(tmp_path / "none.pt")) is None
