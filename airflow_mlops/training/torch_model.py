"""The built-in PyTorch tabular MLP and its MLflow pyfunc wrapper.

This file is also logged with the model ("models from code"), so a loaded model needs torch, numpy, pandas
and mlflow but not airflow-mlops: it imports nothing from this package. ``predict`` takes a DataFrame with the
feature columns and returns class labels (classification) or values (regression), like a scikit-learn model.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class TabularMLP(nn.Module):
    """Standardise the inputs, then a stack of Linear + activation (+ dropout) layers."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_layers: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_layers:
            layers.append(nn.Linear(width, hidden))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, n_outputs))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        scale: torch.Tensor = self.scale  # type: ignore[assignment]
        out: torch.Tensor = self.body((x - mean) / scale)
        return out


def build_network(config: dict[str, Any]) -> TabularMLP:
    """The network described by a model config (see :func:`model_config`)."""
    return TabularMLP(
        n_features=len(config["features"]),
        n_outputs=len(config["classes"]) if config["task"] == "classification" else 1,
        hidden_layers=list(config["hidden_layers"]),
        activation=config["activation"],
        dropout=float(config["dropout"]),
    )


def model_config(
    *,
    features: list[str],
    task: str,
    classes: list[Any] | None,
    hidden_layers: list[int],
    activation: str,
    dropout: float,
    target_mean: float = 0.0,
    target_scale: float = 1.0,
) -> dict[str, Any]:
    return {
        "features": list(features),
        "task": task,
        "classes": list(classes) if classes is not None else None,
        "hidden_layers": list(hidden_layers),
        "activation": activation,
        "dropout": dropout,
        "target_mean": target_mean,
        "target_scale": target_scale,
    }


def predict_frame(
    net: nn.Module, config: dict[str, Any], frame: pd.DataFrame, batch_size: int = 65536
) -> Any:
    """Labels or values for ``frame`` (only the config's features, in order), batched, on the net's device."""
    device = next(net.parameters()).device
    x = frame[config["features"]].to_numpy(dtype=np.float32)
    outputs = []
    net.eval()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            outputs.append(net(torch.from_numpy(x[start : start + batch_size]).to(device)).float().cpu())
    out = torch.cat(outputs) if outputs else torch.zeros((0, 1))
    if config["task"] == "classification":
        classes = np.asarray(config["classes"])
        return classes[out.argmax(dim=1).numpy()]
    return out[:, 0].numpy().astype(np.float64) * config["target_scale"] + config["target_mean"]


class TabularMlpPyfunc(PythonModel):
    """MLflow pyfunc of the MLP: artifacts ``config`` (JSON) and ``weights`` (state dict)."""

    # No annotations on these two: MLflow reads predict's type hints as a signature.
    def load_context(self, context):  # type: ignore[no-untyped-def]
        with open(context.artifacts["config"]) as handle:
            self.config = json.load(handle)
        self.net = build_network(self.config)
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.Series(predict_frame(self.net, self.config, frame), name="prediction")


with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
    mlflow.models.set_model(TabularMlpPyfunc())
