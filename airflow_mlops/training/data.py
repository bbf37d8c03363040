"""Load the training data of a spec, decide the task, check the columns and split train/validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from airflow_mlops.core.data import DatasetRef, column_names, read_frame, resolve_dataset
from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.core.training_spec import ModelFamily, TaskType, TrainingSpec
from airflow_mlops.exceptions import EmptyDatasetError, SchemaMismatch, TrainingSpecError

MAX_CLASSES_FOR_AUTO = 20
MIN_ROWS = 10


@dataclass
class PreparedData:
    """The split data, the task and the lineage of the dataset."""

    dataset_uri: str
    fingerprint: str
    task: TaskType
    features: list[str]
    target: str
    x_train: pd.DataFrame
    x_val: pd.DataFrame
    y_train: pd.Series
    y_val: pd.Series
    classes: list[Any] | None  # sorted labels of a classification target

    @property
    def rows(self) -> int:
        return len(self.x_train) + len(self.x_val)


def resolve_columns(spec: TrainingSpec, ref: DatasetRef) -> list[str]:
    """The feature columns: the spec's, or every column but the target. Raises SchemaMismatch when missing."""
    have = column_names(ref)
    if spec.target not in have:
        raise SchemaMismatch(
            f"target column {spec.target!r} missing from dataset {ref.uri}; it has {have}. "
            "Fix 'target' in the training spec or the data."
        )
    if spec.features is None:
        features = [c for c in have if c != spec.target]
        if not features:
            raise SchemaMismatch(
                f"dataset {ref.uri} has only the target column {spec.target!r}; it needs feature columns."
            )
        return features
    missing = [c for c in spec.features if c not in have]
    if missing:
        raise SchemaMismatch(
            f"feature column(s) {missing} missing from dataset {ref.uri}; it has {have}. "
            "Fix 'features' in the training spec or the data."
        )
    return list(spec.features)


def infer_task(spec: TrainingSpec, y: pd.Series, estimator: Any | None = None) -> TaskType:
    """The spec's task, else the metrics', else the estimator's type, else a look at the target column."""
    if spec.task is not TaskType.AUTO:
        return spec.task
    implied = spec.metrics_task()
    if implied is not None:
        return implied
    if estimator is not None:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(estimator):
            return TaskType.CLASSIFICATION
        if is_regressor(estimator):
            return TaskType.REGRESSION
    dtype = y.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return TaskType.CLASSIFICATION
    values = y.dropna()
    if pd.api.types.is_float_dtype(dtype) and not np.all(np.mod(values.to_numpy(), 1) == 0):
        return TaskType.REGRESSION
    return TaskType.CLASSIFICATION if values.nunique() <= MAX_CLASSES_FOR_AUTO else TaskType.REGRESSION


def check_mlp_features(frame: pd.DataFrame, features: list[str], uri: str) -> None:
    """The MLP needs numeric (or boolean) features without missing values."""
    bad = {c: str(frame[c].dtype) for c in features if not _numeric(frame[c])}
    if bad:
        raise SchemaMismatch(
            f"feature column(s) {bad} of dataset {uri} are not numeric; the torch_mlp family takes numeric "
            "features only. Encode them upstream (one-hot or ordinal), drop them from 'features', or train an "
            "sklearn Pipeline with an encoder."
        )
    nulls = [c for c in features if frame[c].isna().any()]
    if nulls:
        raise SchemaMismatch(
            f"feature column(s) {nulls} of dataset {uri} have missing values; the torch_mlp family needs "
            "complete rows. Impute or drop them upstream."
        )


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype))


def load_and_split(spec: TrainingSpec, estimator: Any | None = None) -> PreparedData:
    """Read the spec's columns, check them, decide the task and split with the spec's seed."""
    from sklearn.model_selection import train_test_split

    ref = resolve_dataset(spec.dataset_uri)
    features = resolve_columns(spec, ref)
    frame = read_frame(ref, [*features, spec.target])
    if frame.empty:
        raise EmptyDatasetError(f"dataset {ref.uri} is empty (0 rows); there is nothing to train on.")
    if len(frame) < MIN_ROWS:
        raise EmptyDatasetError(
            f"dataset {ref.uri} has {len(frame)} rows; training needs at least {MIN_ROWS}."
        )
    y = frame[spec.target]
    if y.isna().any():
        raise SchemaMismatch(
            f"target column {spec.target!r} of dataset {ref.uri} has {int(y.isna().sum())} missing value(s); "
            "drop or fill those rows upstream."
        )
    task = infer_task(spec, y, estimator)
    if task is TaskType.REGRESSION and not _numeric(y):
        raise TrainingSpecError(
            f"task is regression but target column {spec.target!r} of dataset {ref.uri} is {y.dtype}; "
            "use a numeric target or task 'classification'."
        )
    if spec.model.family is ModelFamily.TORCH_MLP:
        check_mlp_features(frame, features, ref.uri)
    classes = sorted(pd.unique(y).tolist()) if task is TaskType.CLASSIFICATION else None
    if classes is not None and len(classes) < 2:
        raise SchemaMismatch(
            f"target column {spec.target!r} of dataset {ref.uri} has a single class {classes}; "
            "classification needs at least two."
        )
    stratify = None
    if classes is not None and y.value_counts().min() >= 2:
        stratify = y
    x_train, x_val, y_train, y_val = train_test_split(
        frame[features],
        y,
        test_size=spec.validation_fraction,
        random_state=spec.seed,
        stratify=stratify,
    )
    return PreparedData(
        dataset_uri=ref.uri,
        fingerprint=fingerprint(ref),
        task=task,
        features=features,
        target=spec.target,
        x_train=x_train.reset_index(drop=True),
        x_val=x_val.reset_index(drop=True),
        y_train=y_train.reset_index(drop=True),
        y_val=y_val.reset_index(drop=True),
        classes=classes,
    )
