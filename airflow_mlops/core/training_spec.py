"""The training spec: what to train, on which data, how to evaluate it and where to log it.

One JSON-friendly dataclass shared by the training operators (which check it before starting any process or
pod) and the training entrypoint (which runs it). Static checks need no data and no heavy import; the estimator
check (:mod:`airflow_mlops.core.estimators`) imports only the estimator's module. Never imports Airflow.

About 530 lines: the spec, its model and MLP parameter dataclasses and their checks are one contract (the JSON
the operators write and the entrypoint reads), kept in one file so a field and its check change together.

.. code-block:: python

    spec = TrainingSpec.from_obj(
        {
            "experiment": "churn",
            "dataset_uri": "s3://lake/churn/2026-11-01.parquet",
            "target": "churned",
            "model": {"family": "torch_mlp", "params": {"hidden_layers": [64, 32], "epochs": 30}},
            "metrics": ["roc_auc", "accuracy"],
        }
    )
    spec.validate_static()
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any

from airflow_mlops.core.estimators import check_estimator
from airflow_mlops.core.storage import check_uri
from airflow_mlops.core.tags import (
    RESERVED_TAGS,
)
from airflow_mlops.exceptions import TrainingSpecError, UnsafeUriError

log = logging.getLogger(__name__)

MAX_TAG_VALUE = 8000  # MLflow's limit on a tag value


class ModelFamily(StrEnum):
    """Which trainer runs the spec."""

    SKLEARN = "sklearn"  # any scikit-learn compatible estimator, by import path
    TORCH_MLP = "torch_mlp"  # the built-in PyTorch tabular MLP


class TaskType(StrEnum):
    """What the model predicts. ``auto``: the estimator's type (sklearn) or the target column (MLP)."""

    AUTO = "auto"
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class AmpMode(StrEnum):
    """Mixed precision of the MLP on CUDA: ``auto`` picks bf16 when the GPU supports it, else fp16."""

    AUTO = "auto"
    OFF = "off"
    BF16 = "bf16"
    FP16 = "fp16"


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


# metric name -> (task, greater_is_better)
CLASSIFICATION_METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "roc_auc": True,
    "log_loss": False,
}
REGRESSION_METRICS: dict[str, bool] = {
    "rmse": False,
    "mse": False,
    "mae": False,
    "r2": True,
    "mape": False,
}
DEFAULT_METRICS = {
    TaskType.CLASSIFICATION: ["accuracy", "f1", "roc_auc"],
    TaskType.REGRESSION: ["rmse", "mae", "r2"],
}
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
OPTIMIZERS = ("adamw", "adam", "sgd")

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def metric_task(name: str) -> TaskType | None:
    if name in CLASSIFICATION_METRICS:
        return TaskType.CLASSIFICATION
    if name in REGRESSION_METRICS:
        return TaskType.REGRESSION
    return None


def greater_is_better(name: str) -> bool:
    """Direction of a metric (``loss`` is lower-is-better)."""
    if name in CLASSIFICATION_METRICS:
        return CLASSIFICATION_METRICS[name]
    if name in REGRESSION_METRICS:
        return REGRESSION_METRICS[name]
    return False


@dataclass(frozen=True)
class TorchMlpParams:
    """Hyperparameters of the built-in PyTorch tabular MLP (``model.params`` of a ``torch_mlp`` spec).

    ``monitor`` is the validation metric early stopping watches (a name from ``metrics``, or ``loss``); empty
    means the spec's first metric. ``patience=0`` turns early stopping off.
    """

    hidden_layers: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    dropout: float = 0.0
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    patience: int = 5
    min_delta: float = 0.0
    monitor: str = ""
    amp: AmpMode = AmpMode.AUTO
    device: Device = Device.AUTO
    standardize: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TorchMlpParams:
        """Parse and check ``params``; raise TrainingSpecError naming the bad hyperparameter."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TrainingSpecError(
                f"unknown torch_mlp hyperparameter(s) {unknown}; allowed: {sorted(known)}."
            )
        values = dict(params)
        if "hidden_layers" in values:
            layers = values["hidden_layers"]
            if isinstance(layers, int) and not isinstance(layers, bool):
                layers = [layers]
            if not isinstance(layers, list | tuple) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in layers
            ):
                raise TrainingSpecError(
                    f"torch_mlp hyperparameter hidden_layers={values['hidden_layers']!r} is invalid; "
                    "give a list of positive layer widths such as [64, 32] (an empty list is a linear model)."
                )
            values["hidden_layers"] = tuple(layers)
        for name, enum in (("amp", AmpMode), ("device", Device)):
            if name in values:
                values[name] = _enum(enum, values[name], f"torch_mlp hyperparameter {name}")
        parsed = cls(**values)
        parsed._check()
        return parsed

    def _check(self) -> None:  # noqa: C901 - one branch per field of the model spec, each with its own message
        def bad(name: str, rule: str) -> TrainingSpecError:
            return TrainingSpecError(
                f"torch_mlp hyperparameter {name}={getattr(self, name)!r} is invalid: {rule}."
            )

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise bad(name, "give an integer >= 1")
        if not _is_int(self.patience) or self.patience < 0:
            raise bad("patience", "give an integer >= 0 (0 turns early stopping off)")
        if not _is_number(self.learning_rate) or not self.learning_rate > 0:
            raise bad("learning_rate", "give a number > 0, e.g. 0.001")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "give a number >= 0")
        if not _is_number(self.min_delta) or self.min_delta < 0:
            raise bad("min_delta", "give a number >= 0")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise bad("dropout", "give a number in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise bad("activation", f"use one of {list(ACTIVATIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"use one of {list(OPTIMIZERS)}")
        if not isinstance(self.standardize, bool):
            raise bad("standardize", "give true or false")
        if not isinstance(self.monitor, str):
            raise bad("monitor", "give a metric name from 'metrics', or 'loss'")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden_layers"] = list(self.hidden_layers)
        data["amp"] = self.amp.value
        data["device"] = self.device.value
        return data


@dataclass
class ModelSpec:
    """The model family, the estimator import path (``sklearn`` family) and its parameters."""

    family: ModelFamily
    estimator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: Any) -> ModelSpec:
        """A dict, a ModelSpec, ``"torch_mlp"``, or an estimator import path string (sklearn family)."""
        if isinstance(obj, ModelSpec):
            return copy.deepcopy(obj)
        if isinstance(obj, str):
            if obj == ModelFamily.TORCH_MLP.value:
                return cls(ModelFamily.TORCH_MLP)
            return cls(ModelFamily.SKLEARN, estimator=obj)
        if not isinstance(obj, Mapping):
            raise TrainingSpecError(
                f"training spec field 'model' must be an object like "
                '{"family": "sklearn", "estimator": "sklearn.ensemble.RandomForestClassifier", "params": {}}, '
                f"not {type(obj).__name__}."
            )
        unknown = sorted(set(obj) - {"family", "estimator", "params"})
        if unknown:
            raise TrainingSpecError(
                f"unknown key(s) {unknown} in training spec field 'model'; allowed: family, estimator, params."
            )
        family_raw = obj.get("family") or (ModelFamily.SKLEARN.value if obj.get("estimator") else None)
        if family_raw is None:
            raise TrainingSpecError(
                "training spec field 'model' has no 'family'; use 'sklearn' (with 'estimator') or 'torch_mlp'."
            )
        params = obj.get("params") or {}
        if not isinstance(params, Mapping):
            raise TrainingSpecError(
                f"training spec field 'model.params' must be an object of hyperparameters, not {params!r}."
            )
        return cls(
            family=_enum(ModelFamily, family_raw, "model.family"),
            estimator=obj.get("estimator"),
            params=dict(params),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"family": self.family.value, "params": self.params}
        if self.estimator is not None:
            data["estimator"] = self.estimator
        return data


@dataclass
class TrainingSpec:
    """
    Everything the training entrypoint needs, as plain JSON-friendly data.

    :param experiment: MLflow experiment name (created when missing).
    :param dataset_uri: Training data (parquet file or folder, CSV; local path or fsspec URI).
    :param target: The label column.
    :param model: Model family, estimator import path and hyperparameters (:class:`ModelSpec`).
    :param features: Feature columns; ``None`` means every column except the target.
    :param task: ``classification``, ``regression`` or ``auto``.
    :param validation_fraction: Share of rows held out for validation metrics and early stopping.
    :param seed: Seed of the split, the weight initialisation and the data order.
    :param metrics: Metrics to compute on the validation split (logged as ``val_<name>``); ``None`` gives the
        task's defaults.
    :param checkpoint_uri: Where the MLP checkpoints every epoch; a restarted run resumes from it.
    :param tags: Extra MLflow run tags.
    :param run_name: MLflow run name.
    """

    experiment: str
    dataset_uri: str
    target: str
    model: ModelSpec
    features: list[str] | None = None
    task: TaskType = TaskType.AUTO
    validation_fraction: float = 0.2
    seed: int = 42
    metrics: list[str] | None = None
    checkpoint_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_name: str | None = None

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_obj(cls, obj: Any) -> TrainingSpec:  # noqa: C901 - one branch per accepted input form (spec, mapping, JSON, YAML, file path)
        """Build a spec from a dict, a JSON string, a path/URI of a JSON file, or a TrainingSpec (copied)."""
        if isinstance(obj, TrainingSpec):
            return copy.deepcopy(obj)
        if isinstance(obj, bytes):
            obj = obj.decode("utf-8")
        if isinstance(obj, str):
            obj = load_spec_json(obj)
        if not isinstance(obj, Mapping):
            raise TrainingSpecError(
                f"a training spec must be a JSON object (dict), not {type(obj).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise TrainingSpecError(f"unknown training spec field(s) {unknown}; allowed: {sorted(known)}.")
        missing = [
            name for name in ("experiment", "dataset_uri", "target", "model") if obj.get(name) in (None, "")
        ]
        if missing:
            raise TrainingSpecError(
                f"training spec is missing required field(s) {missing}; "
                "give experiment, dataset_uri, target and model."
            )
        values = dict(obj)
        values["model"] = ModelSpec.from_obj(values["model"])
        if "task" in values and values["task"] is not None:
            values["task"] = _enum(TaskType, values["task"], "task")
        else:
            values.pop("task", None)
        for name in ("features", "metrics"):
            value = values.get(name)
            if isinstance(value, str):
                values[name] = [value]
            elif isinstance(value, list | tuple):
                values[name] = list(value)
        if values.get("tags") is None:
            values["tags"] = {}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "dataset_uri": self.dataset_uri,
            "target": self.target,
            "model": self.model.to_dict(),
            "features": self.features,
            "task": self.task.value if isinstance(self.task, TaskType) else self.task,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "metrics": self.metrics,
            "checkpoint_uri": self.checkpoint_uri,
            "tags": dict(self.tags),
            "run_name": self.run_name,
        }

    def to_json(self) -> str:
        """Compact, key-sorted JSON that :meth:`from_obj` reads back."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    # ------------------------------------------------------------------ checks
    def validate_static(self, *, check_estimator: bool = True) -> TrainingSpec:  # noqa: C901 - one check per spec field, each naming its field and fix
        """
        Every check that needs no data; returns ``self``. Raises TrainingSpecError naming the field and the fix.

        With ``check_estimator`` the sklearn estimator is imported and its parameters are checked against its
        own constraints (unknown names, wrong types or ranges). An estimator from a package missing here (but
        present in a training image) is left to the trainer.
        """
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise TrainingSpecError(
                "training spec field 'experiment' must be a non-empty MLflow experiment name."
            )
        try:
            check_uri(self.dataset_uri, what="training dataset_uri")
            if self.checkpoint_uri is not None:
                check_uri(self.checkpoint_uri, what="training checkpoint_uri")
        except UnsafeUriError as err:
            raise TrainingSpecError(str(err)) from None
        if not isinstance(self.target, str) or not self.target:
            raise TrainingSpecError("training spec field 'target' must name the label column.")
        if self.features is not None:
            if not self.features or not all(isinstance(c, str) and c for c in self.features):
                raise TrainingSpecError(
                    f"training spec field 'features' must be a non-empty list of column names (or null for "
                    f"every column but the target), not {self.features!r}."
                )
            dupes = sorted({c for c in self.features if self.features.count(c) > 1})
            if dupes:
                raise TrainingSpecError(f"training spec 'features' lists column(s) {dupes} more than once.")
            if self.target in self.features:
                raise TrainingSpecError(
                    f"target column {self.target!r} is also listed in 'features'; remove it from the features."
                )
        if not isinstance(self.task, TaskType):
            raise TrainingSpecError(
                f"training spec field 'task' must be one of {[t.value for t in TaskType]}."
            )
        if not _is_number(self.validation_fraction) or not 0 < self.validation_fraction < 1:
            raise TrainingSpecError(
                f"training spec field 'validation_fraction'={self.validation_fraction!r} must be between 0 and 1 "
                "(exclusive), e.g. 0.2."
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise TrainingSpecError(
                f"training spec field 'seed'={self.seed!r} must be a non-negative integer."
            )
        self._check_metrics()
        self._check_tags()
        if self.run_name is not None and not isinstance(self.run_name, str):
            raise TrainingSpecError("training spec field 'run_name' must be a string.")
        if self.model.family is ModelFamily.SKLEARN:
            self._check_sklearn(import_it=check_estimator)
        else:
            if self.model.estimator:
                raise TrainingSpecError(
                    f"model.estimator={self.model.estimator!r} is only for the sklearn family; "
                    "the torch_mlp family takes its hyperparameters in model.params."
                )
            monitor = self.torch_params().monitor
            unknown_monitor = metric_task(monitor) is None or (
                self.metrics is not None and monitor not in self.metrics
            )
            if monitor and monitor != "loss" and unknown_monitor:
                raise TrainingSpecError(
                    f"torch_mlp hyperparameter monitor={monitor!r} is not one of the spec's metrics "
                    f"{self.metrics or 'defaults'}; use one of them or 'loss'."
                )
        return self

    def _check_metrics(self) -> None:
        if self.metrics is None:
            return
        if not self.metrics or not all(isinstance(m, str) for m in self.metrics):
            raise TrainingSpecError("training spec field 'metrics' must be a non-empty list of metric names.")
        unknown = [m for m in self.metrics if metric_task(m) is None]
        if unknown:
            raise TrainingSpecError(
                f"unknown metric(s) {unknown}; classification: {sorted(CLASSIFICATION_METRICS)}, "
                f"regression: {sorted(REGRESSION_METRICS)}."
            )
        tasks = {metric_task(m) for m in self.metrics}
        if len(tasks) > 1:
            raise TrainingSpecError(
                f"metrics {self.metrics} mix classification and regression metrics; pick the ones of your task."
            )
        if self.task is not TaskType.AUTO and tasks != {self.task}:
            raise TrainingSpecError(
                f"metrics {self.metrics} do not fit task {self.task.value!r}; "
                f"use {DEFAULT_METRICS[self.task]} or others of that task."
            )

    def _check_tags(self) -> None:
        if not isinstance(self.tags, Mapping):
            raise TrainingSpecError(
                "training spec field 'tags' must be an object of tag name -> string value."
            )
        for key, value in self.tags.items():
            if not isinstance(key, str) or not key:
                raise TrainingSpecError(f"training spec tag name {key!r} must be a non-empty string.")
            if key in RESERVED_TAGS:
                raise TrainingSpecError(
                    f"training spec tag {key!r} is written by the trainer itself (lineage); remove it from 'tags'."
                )
            if len(str(value)) > MAX_TAG_VALUE:
                raise TrainingSpecError(
                    f"training spec tag {key!r} is {len(str(value))} characters long; MLflow allows "
                    f"{MAX_TAG_VALUE}. Store large values in storage and tag their URI."
                )

    def _check_sklearn(self, *, import_it: bool) -> None:
        path = self.model.estimator
        if not path or not isinstance(path, str) or not _IMPORT_PATH.match(path):
            raise TrainingSpecError(
                f"model.estimator={path!r} is not an import path; give one like "
                "'sklearn.ensemble.RandomForestClassifier'."
            )
        bad_keys = [k for k in self.model.params if not isinstance(k, str) or not k.isidentifier()]
        if bad_keys:
            raise TrainingSpecError(f"model.params of {path} has invalid parameter name(s) {bad_keys}.")
        if import_it:
            check_estimator(path, self.model.params, task=self.task)

    # ------------------------------------------------------------------ derived values
    def torch_params(self) -> TorchMlpParams:
        return TorchMlpParams.from_params(self.model.params)

    def resolved_metrics(self, task: TaskType) -> list[str]:
        """The metrics to compute once the task is known (the spec's, or the task's defaults)."""
        return list(self.metrics) if self.metrics else list(DEFAULT_METRICS[task])

    def metrics_task(self) -> TaskType | None:
        """The task implied by the spec's metrics, if any."""
        if not self.metrics:
            return None
        return metric_task(self.metrics[0])


def load_spec_json(text: str) -> Any:
    """The raw object of a spec given as JSON text or as the path/URI of a JSON file (TrainingSpecError if bad)."""
    stripped = text.strip()
    if not stripped:
        raise TrainingSpecError("training spec is empty; give a JSON object or the path of a JSON file.")
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as err:
            raise TrainingSpecError(f"training spec is not valid JSON: {err}.") from None
    from airflow_mlops.core.storage import read_json

    try:
        return read_json(check_uri(stripped, what="training spec path"))
    except UnsafeUriError as err:
        raise TrainingSpecError(str(err)) from None
    except FileNotFoundError:
        raise TrainingSpecError(
            f"training spec file {stripped!r} does not exist; give a JSON object or an existing JSON file path."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrainingSpecError(f"training spec file {stripped!r} is not valid JSON: {err}.") from None


def _enum(enum: type[Enum], value: Any, what: str) -> Any:
    raw = value.value if isinstance(value, Enum) else value
    try:
        return enum(raw)
    except ValueError:
        raise TrainingSpecError(
            f"{what}={value!r} is invalid; use one of {[m.value for m in enum]}."  # type: ignore[attr-defined, unused-ignore]
        ) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
