"""Validation metrics by name (logged as ``val_<name>``), for classification and regression."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_mlops.core.training_spec import TaskType

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)


def compute_metrics(
    names: Sequence[str],
    task: TaskType,
    y_true: Any,
    y_pred: Any,
    proba: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """
    Compute ``names`` on the validation split; ``proba`` has one column per class in ``classes`` order.

    A metric that cannot be computed (roc_auc without probabilities, or with one class in the split) is left
    out with a warning rather than failing a finished training.
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    out: dict[str, float] = {}
    binary = classes is not None and len(classes) == 2
    average_kw: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]}
        if binary and classes is not None
        else {"average": "macro"}
    )
    for name in names:
        try:
            if task is TaskType.CLASSIFICATION:
                value = _classification(name, skm, y_true, y_pred, proba, classes, binary, average_kw)
            else:
                value = _regression(name, skm, y_true, y_pred)
        except ValueError as err:
            log.warning("Metric %s could not be computed on the validation split: %s", name, err)
            continue
        if value is not None and np.isfinite(value):
            out[name] = float(value)
    return out


def _classification(
    name: str,
    skm: Any,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
    binary: bool,
    average_kw: dict[str, Any],
) -> float | None:
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y_true, y_pred))
    if name == "f1":
        return float(skm.f1_score(y_true, y_pred, zero_division=0, **average_kw))
    if name == "precision":
        return float(skm.precision_score(y_true, y_pred, zero_division=0, **average_kw))
    if name == "recall":
        return float(skm.recall_score(y_true, y_pred, zero_division=0, **average_kw))
    if name in ("roc_auc", "log_loss"):
        if proba is None:
            log.warning(
                "Metric %s needs class probabilities; the model gives none, so it is not logged", name
            )
            return None
        labels = list(classes) if classes is not None else None
        if name == "log_loss":
            return float(skm.log_loss(y_true, proba, labels=labels))
        if binary:
            return float(skm.roc_auc_score(y_true == labels[1] if labels else y_true, proba[:, 1]))
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
    raise ValueError(f"unknown classification metric {name!r}")


def _regression(name: str, skm: Any, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name == "mse":
        return float(skm.mean_squared_error(y_true, y_pred))
    if name == "mae":
        return float(skm.mean_absolute_error(y_true, y_pred))
    if name == "r2":
        return float(skm.r2_score(y_true, y_pred))
    if name == "mape":
        return float(skm.mean_absolute_percentage_error(y_true, y_pred))
    raise ValueError(f"unknown regression metric {name!r}")
