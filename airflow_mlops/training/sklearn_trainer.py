"""Train any scikit-learn compatible estimator named by import path, and score it on the validation split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_mlops.core.estimators import build_estimator
from airflow_mlops.core.training_spec import TaskType, TrainingSpec
from airflow_mlops.exceptions import TrainingFailed
from airflow_mlops.training.metrics import compute_metrics

if TYPE_CHECKING:
    from airflow_mlops.training.data import PreparedData

log = logging.getLogger(__name__)


@dataclass
class SklearnOutcome:
    estimator: Any
    metrics: dict[str, float]


def make_estimator(spec: TrainingSpec) -> Any:
    """The unfitted estimator with the spec's params; ``random_state`` defaults to the spec's seed."""
    assert spec.model.estimator is not None
    params = dict(spec.model.params)
    estimator = build_estimator(spec.model.estimator, params)
    if "random_state" not in params and "random_state" in estimator.get_params(deep=False):
        estimator.set_params(random_state=spec.seed)
    return estimator


def probabilities(estimator: Any, x: Any, classes: list[Any]) -> np.ndarray | None:
    """Class probabilities in ``classes`` order (None when the estimator has no predict_proba)."""
    if not hasattr(estimator, "predict_proba"):
        return None
    try:
        proba = np.asarray(estimator.predict_proba(x))
    except (AttributeError, NotImplementedError):
        return None
    fitted = list(getattr(estimator, "classes_", classes))
    if fitted == list(classes):
        return proba
    out = np.zeros((len(proba), len(classes)))
    for j, label in enumerate(fitted):
        if label in classes:
            out[:, classes.index(label)] = proba[:, j]
    return out


def train_sklearn(
    spec: TrainingSpec, estimator: Any, data: PreparedData, metrics: list[str]
) -> SklearnOutcome:
    """Fit on the training split; compute ``metrics`` on the validation split."""
    log.info(
        "Fitting %s on %s rows x %s features", spec.model.estimator, len(data.x_train), len(data.features)
    )
    try:
        estimator.fit(data.x_train, data.y_train)
    except (ValueError, TypeError) as err:
        raise TrainingFailed(
            f"{spec.model.estimator} could not be fitted on dataset {data.dataset_uri}: {str(err)[:500]}. "
            "Check the feature types (encode text columns, e.g. with an sklearn Pipeline) and the params."
        ) from None
    y_pred = estimator.predict(data.x_val)
    proba = None
    if data.task is TaskType.CLASSIFICATION and data.classes is not None:
        proba = probabilities(estimator, data.x_val, data.classes)
    values = compute_metrics(metrics, data.task, data.y_val, y_pred, proba, data.classes)
    return SklearnOutcome(estimator=estimator, metrics=values)
