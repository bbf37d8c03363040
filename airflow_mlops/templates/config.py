"""Lifecycle configuration: documented dataclasses, validated on creation, loadable from YAML.

One :class:`LifecycleConfig` describes a model's whole lifecycle: its data, validation suite, training spec and
backend, promotion gate, batch inference and drift/retraining policy. The builders in
:mod:`airflow_mlops.templates.builders` turn it into DAGs. Every wrong field raises one
:class:`~airflow_mlops.exceptions.TemplateConfigError` that names the field (and the YAML file).

Configs are frozen: share one between DAGs freely, derive variants with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from airflow_mlops.core.gate import DEFAULT_GATE, GateRule, default_gate_rules

# The core modules the config checks use are light (no heavy library at module level); importing them here puts
# them in what a process pre-importing the DAG file's imports already has.
from airflow_mlops.core.policy import RetrainingPolicy
from airflow_mlops.core.training_spec import (
    DEFAULT_METRICS,
    ModelFamily,
    TaskType,
    TorchMlpParams,
    TrainingSpec,
    metric_task,
)
from airflow_mlops.exceptions import (
    GateRuleError,
    MlopsConfigError,
    TemplateConfigError,
    TrainingSpecError,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def _fail(path: str, message: str) -> TemplateConfigError:
    return TemplateConfigError(f"{path}: {message}")


@dataclass(frozen=True)
class ValidationConfig:
    """Great Expectations validation of the training data and of each scoring batch.

    :param suite: a path to a GX suite JSON file, or a list of ``{"type": "expect_...", "kwargs": {...}}``.
        Empty means no validation step.
    :param on_failure: ``fail`` (stop the DAG), ``warn`` (log and go on) or ``skip`` (skip downstream tasks).
    :param allow_empty: whether an empty dataset passes.
    :param batch_suite: the suite for scoring batches (they have no target column); empty means none.
    """

    suite: str | list[dict[str, Any]] | None = None
    batch_suite: str | list[dict[str, Any]] | None = None
    on_failure: Literal["fail", "warn", "skip"] = "fail"
    allow_empty: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.suite)


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and how training pods run (used when ``training.backend`` is ``kubernetes``)."""

    image: str | None = None
    namespace: str = "default"
    kubernetes_conn_id: str | None = None
    gpu_count: int = 1
    gpu_type: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    cpu: str = "2"
    memory: str = "8Gi"
    mlflow_secret_name: str | None = None
    deferrable: bool = False
    schedule_timeout_seconds: int = 1800

    def __post_init__(self) -> None:
        if self.gpu_count < 0:
            raise _fail("training.kubernetes.gpu_count", f"must be >= 0, got {self.gpu_count}")


@dataclass(frozen=True)
class TrainingConfig:
    """The training spec (see docs/training.md) and the backend that runs it.

    :param spec: a TrainingSpec mapping: ``model`` (family + params), ``target``, ``features``, ... The
        dataset URI and experiment default to the lifecycle's ``data.train_uri`` and ``experiment``.
    :param backend: ``local`` (a subprocess on the worker) or ``kubernetes`` (a GPU pod).
    """

    spec: dict[str, Any] = field(default_factory=dict)
    backend: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    retries: int = 1

    def __post_init__(self) -> None:
        check_training_spec(self.spec)


@dataclass(frozen=True)
class GateConfig:
    """Champion/challenger promotion rules (see docs/registry.md).

    :param rules: comparisons with the champion, e.g. ``{"metric": "val_roc_auc", "min_delta": 0.002,
        "greater_is_better": true}``.
    :param floors: absolute bounds, e.g. ``{"metric": "val_roc_auc", "min": 0.8}``.
    :param on_reject: ``warn`` (keep the champion, the DAG succeeds; ``succeed`` is read as ``warn``), ``skip``
        or ``fail``: the :class:`~airflow_mlops.operators.common.OnFailure` of the gate task.
    :param pool: Airflow pool of the alias moves; None (default) uses ``[mlops] promotion_pool``
        (``mlops_promotion``, one slot, created by the provider when the scheduler starts).

    Leaving out both ``rules`` and ``floors`` applies the default gate of the model's task
    (:func:`airflow_mlops.core.gate.default_gate_rules`): for classification ``val_roc_auc`` not worse
    than the champion and at least 0.65, for regression ``val_rmse`` not worse than the champion and
    ``val_r2`` at least 0 (better than predicting the mean). Give ``rules: []`` and ``floors: []`` to promote
    every candidate.
    """

    rules: list[dict[str, Any]] | None = None
    floors: list[dict[str, Any]] | None = None
    on_reject: Literal["warn", "succeed", "skip", "fail"] = "warn"
    pool: str | None = None

    def __post_init__(self) -> None:

        for section in ("rules", "floors"):
            rules = getattr(self, section)
            if rules is None:
                continue
            normalised = []
            for i, rule in enumerate(rules):
                where = f"gate.{section}[{i}]"
                if isinstance(rule, Mapping):
                    for key in rule:
                        if key not in GateRule.KEYS:
                            raise _fail(f"{where}.{key}", _unknown_key(key, GateRule.KEYS))
                try:
                    normalised.append(GateRule.from_obj(rule, i).to_dict())
                except GateRuleError as err:
                    raise _fail(where, str(err)) from None
            object.__setattr__(self, section, normalised)  # GateRule objects become plain data

    @property
    def is_default(self) -> bool:
        return self.rules is None and self.floors is None


@dataclass(frozen=True)
class InferenceConfig:
    """Batch scoring with the champion.

    :param schedule: cron or preset for the inference DAG (``None``: triggered only).
    :param input_uri: the batch to score (templated, e.g. ``.../batches/{{ mlops_run_date(dag_run) }}.parquet``).
    :param output_uri: where predictions go (templated; make it unique per run, e.g.
        ``.../predictions/{{ mlops_run_slug(run_id) }}.parquet``).
    :param passthrough_columns: input columns copied next to the predictions (ids).
    """

    input_uri: str = ""
    output_uri: str = ""
    schedule: str | None = None
    passthrough_columns: list[str] = field(default_factory=list)
    batch_size: int | None = None


@dataclass(frozen=True)
class RetrainPolicyConfig:
    """When confirmed drift may start a retrain (state lives in MLflow, see docs/drift.md).

    :param persistence: drift must be seen on this many consecutive checks.
    :param cooldown: no new retrain for this long after the last one (seconds or ``"12h"``, ``"1d"``).
    :param max_retrains: at most this many retrains per ``window`` (0 = no limit).
    :param window: the budget's sliding window (seconds or ``"7d"``).
    """

    persistence: int = 1
    cooldown: str | float = "1d"
    max_retrains: int = 3
    window: str | float = "7d"

    def __post_init__(self) -> None:

        try:
            RetrainingPolicy.from_obj(dataclasses.asdict(self))
        except MlopsConfigError as err:
            raise _fail("drift.policy", str(err)) from None


@dataclass(frozen=True)
class DriftConfig:
    """Evidently drift check after each scoring batch.

    :param drift_share: share of drifted columns at or above which drift is confirmed (the operator's and
        Evidently's ``drift_share``; ``threshold`` is the older key).
    :param columns: columns compared (default: the model's input columns).
    :param reference_uri: reference data (default: the training data recorded on the model version).
    """

    enabled: bool = True
    drift_share: float = 0.5
    columns: list[str] | None = None
    reference_uri: str | None = None
    sample_size: int | None = None
    policy: RetrainPolicyConfig = field(default_factory=RetrainPolicyConfig)

    def __post_init__(self) -> None:
        if not 0 < self.drift_share <= 1:
            raise _fail("drift.drift_share", f"must be in (0, 1], got {self.drift_share}")


@dataclass(frozen=True)
class DataConfig:
    """Data locations (templated).

    :param train_uri: what the training DAG reads.
    :param retrain_uri: what the drift-triggered retraining reads (default: ``train_uri``): the newest
        labelled data.
    """

    train_uri: str = ""
    retrain_uri: str | None = None


@dataclass(frozen=True)
class LifecycleConfig:
    """A model's whole lifecycle.

    :param model_name: the MLflow registered-model name; also prefixes every DAG id.
    :param experiment: MLflow experiment (default: the model name).
    :param schedule: schedule of the training DAG (``None``: triggered only).
    """

    model_name: str
    data: DataConfig
    training: TrainingConfig
    experiment: str | None = None
    schedule: str | None = None
    owner: str = "mlops"
    tags: list[str] = field(default_factory=list)
    mlflow_conn_id: str | None = None
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    source: str | None = None  # the YAML file it came from, for error messages

    def __post_init__(self) -> None:
        if not _NAME.match(self.model_name or ""):
            raise _fail(
                "model_name",
                f"{self.model_name!r} is not a valid name; use letters, digits, '_', '-', '.' (max 200).",
            )
        if not self.data.train_uri:
            raise _fail("data.train_uri", "is required: the URI of the training dataset.")
        if self.inference.input_uri and not self.inference.output_uri:
            raise _fail("inference.output_uri", "is required when inference.input_uri is set.")
        self.gate_rules()  # a gate metric training cannot produce is an error now, not at run time

    def gate_rules(self) -> list[dict[str, Any]] | str:
        """
        The rules the promotion gate applies: ``gate.rules`` + ``gate.floors``, or the default gate of the
        model's task. When the task is only known after training (an MLP with ``task: auto``), the string
        ``"default"``: the gate then picks the default of the task the trainer recorded on the run.
        """

        task = training_task(self.training.spec)
        if self.gate.is_default:
            # Resolved by the gate from the task and metrics the trainer recorded on the run; checked here
            # against what the spec says it will log, when the spec says it.
            rules = default_gate_rules(task) if task is not None else []
            sections = [("gate", rule) for rule in rules]
            result: list[dict[str, Any]] | str = DEFAULT_GATE
        else:
            rules = [*(self.gate.rules or []), *(self.gate.floors or [])]
            sections = [(f"gate.rules[{i}]", r) for i, r in enumerate(self.gate.rules or [])]
            sections += [(f"gate.floors[{i}]", r) for i, r in enumerate(self.gate.floors or [])]
            result = rules
        produced = produced_metrics(self.training.spec, task)
        for where, rule in sections:
            metric = rule.get("metric")
            if produced is not None and metric not in produced:
                what = f"a {task} model" if task else "the model"
                hint = (
                    "no gate: section, so the default gate applies, and it needs "
                    if where == "gate"
                    else "it is not one of "
                )
                raise _fail(
                    f"{where}.metric" if where != "gate" else "gate",
                    f"{hint}metric {metric!r}, but training.spec trains {what} that logs {sorted(produced)}. "
                    "Use one of those metrics, or add the metric to training.spec.metrics.",
                )
        return result

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model_name

    @property
    def dag_prefix(self) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", self.model_name)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> LifecycleConfig:
        """Build from plain data; unknown keys and wrong types raise TemplateConfigError naming the field."""
        try:
            obj: LifecycleConfig = _build(cls, data, "")
        except TemplateConfigError as err:
            if source:
                raise TemplateConfigError(f"{source}: {err}") from None
            raise
        return dataclasses.replace(obj, source=source) if source else obj

    @classmethod
    def from_yaml(cls, path: str | Path) -> LifecycleConfig:
        """Load one YAML file (a mapping at the top level)."""
        import yaml

        path = Path(path)
        # libyaml's loader when PyYAML was built with it: the same safe subset, ~10x faster (the YAML parse was
        # most of a warm DAG parse)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            raw = yaml.load(path.read_text(), Loader=loader)  # a safe loader (C or Python)
        except FileNotFoundError:
            raise TemplateConfigError(f"{path}: lifecycle config file does not exist.") from None
        except yaml.YAMLError as err:
            raise TemplateConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]}).") from None
        if not isinstance(raw, Mapping):
            raise TemplateConfigError(f"{path}: the top level must be a mapping of lifecycle fields.")
        return cls.from_dict(raw, source=str(path))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, path: str) -> Any:  # noqa: C901 - one branch per annotation kind the config dataclasses use
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except TemplateConfigError as err:
                errors.append(str(err))
        expected = " or ".join(_type_name(a) for a in args if a is not type(None))
        raise _fail(path, f"expected {expected}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise _fail(path, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected a mapping of {tp.__name__} fields, got {type(value).__name__}")
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise _fail(path, f"expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# Keys renamed so config, operators and core say the same word: the older key still reads (not both at once).
_RENAMED: dict[str, dict[str, str]] = {
    "KubernetesConfig": {"cpu_request": "cpu", "memory_request": "memory"},
    "DriftConfig": {"threshold": "drift_share"},
}


def _renamed(cls: type, data: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    renames = _RENAMED.get(cls.__name__, {})
    if not renames.keys() & data.keys():
        return data
    out = dict(data)
    for old, new in renames.items():
        if old in out:
            if new in out:
                raise _fail(
                    f"{prefix}.{old}" if prefix else old, f"is the older name of {new!r}; give only {new!r}"
                )
            out[new] = out.pop(old)
    return out


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    data = _renamed(cls, data, prefix)
    fields_by_name = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields_by_name) - {"source"})
    if unknown:
        where = prefix or "lifecycle config"
        raise _fail(
            where,
            f"unknown key(s) {unknown}; allowed: {sorted(k for k in fields_by_name if k != 'source')}",
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields_by_name.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _fail(path, "is required")
            continue
        kwargs[name] = _coerce(hints[name], data[name], path)
    return cls(**kwargs)  # __post_init__ errors already name their full field path


# ------------------------------------------------------------------------------------ training spec checks
_TEMPLATED = re.compile(r"{{|{%")
# Spec fields whose (templated) strings are only rendered at run time; their values are not checked here.
_RUN_TIME_FIELDS = ("dataset_uri", "checkpoint_uri", "tags", "run_name", "experiment")


def _unknown_key(key: Any, allowed: Any) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}.{hint} Allowed: {sorted(allowed)}."


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_TEMPLATED.search(value))
    if isinstance(value, Mapping):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_templated(v) for v in value)
    return False


# Spec fields that are text after rendering: templates are fine there (checked as the strings they are).
_TEXT_FIELDS = ("target", "features")


def _templated_non_text(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(field path, value)`` of templated values in spec fields that must not be text."""
    found: list[tuple[str, Any]] = []
    for key, value in spec.items():
        if key in _RUN_TIME_FIELDS or key in _TEXT_FIELDS or not _templated(value):
            continue
        if key == "model" and isinstance(value, Mapping):
            params = value.get("params")
            for name, param in params.items() if isinstance(params, Mapping) else []:
                if _templated(param):
                    found.append((f"model.params.{name}", param))
            for name in ("family", "estimator"):
                if _templated(value.get(name)):
                    found.append((f"model.{name}", value.get(name)))
            if isinstance(params, str):
                found.append(("model.params", params))
        else:
            found.append((str(key), value))
    return found


def check_training_spec(spec: Mapping[str, Any]) -> None:  # noqa: C901 - one check per spec field, each naming its YAML path
    """
    Check ``training.spec`` when the config loads: unknown keys (``targt``), a missing target or model, bad
    metrics, bad MLP hyperparameters. Needs no data and imports no estimator (DAG parsing stays cheap); the
    training operator checks the estimator's own parameters before it starts anything.
    """

    if not spec:
        raise _fail("training.spec", "is required: at least target and model (see docs/training.md).")
    allowed = {f.name for f in dataclasses.fields(TrainingSpec)}
    for key in spec:
        if key not in allowed:
            raise _fail(f"training.spec.{key}", _unknown_key(key, allowed))
    for key in ("target", "model"):
        if spec.get(key) in (None, ""):
            raise _fail(f"training.spec.{key}", "is required.")
    model = spec["model"]
    if isinstance(model, Mapping):
        for key in model:
            if key not in ("family", "estimator", "params"):
                raise _fail(
                    f"training.spec.model.{key}", _unknown_key(key, ("family", "estimator", "params"))
                )
    for path, value in _templated_non_text(spec):
        raise _fail(
            f"training.spec.{path}",
            f"{value!r} is a template, but templates render as text and this field needs "
            f"{'an object' if path == 'model' else 'a number, list or fixed name'}. Give per-run "
            "hyperparameters through the training DAG's `hyperparameters` Param (or the operator's "
            "hyperparameters= argument) instead.",
        )
    checked = {k: v for k, v in spec.items() if k not in _RUN_TIME_FIELDS}
    try:
        parsed = TrainingSpec.from_obj({**checked, "experiment": "check", "dataset_uri": "check.parquet"})
        if parsed.model.family is ModelFamily.TORCH_MLP:
            names = {f.name for f in dataclasses.fields(TorchMlpParams)}
            for key in parsed.model.params:
                if key not in names:
                    raise _fail(f"training.spec.model.params.{key}", _unknown_key(key, names))
            parsed.torch_params()
        parsed.validate_static(check_estimator=False)
    except TrainingSpecError as err:
        raise _fail(_spec_error_path(str(err)), str(err)) from None


def _spec_error_path(message: str) -> str:
    """The ``training.spec...`` field a TrainingSpecError message is about."""
    for pattern in (
        r"torch_mlp hyperparameter (\w+)=",
        r"field '([\w.]+)'",
        r"^(model\.\w+)=",
        r"^model\.params of ",
        r"^(?:unknown )?metric",
        r"^metrics ",
    ):
        found = re.search(pattern, message)
        if found is None:
            continue
        if pattern.startswith("torch"):
            return f"training.spec.model.params.{found.group(1)}"
        if "metric" in pattern:
            return "training.spec.metrics"
        if pattern.startswith("^model\\.params"):
            return "training.spec.model.params"
        return f"training.spec.{found.group(1)}"
    return "training.spec"


_CLASSIFIER_NAMES = re.compile(r"(Classifier|NB|SVC|LogisticRegression|LogisticRegressionCV)$")
_REGRESSOR_NAMES = re.compile(r"(Regressor|SVR|Regression|RegressionCV|Ridge|RidgeCV|Lasso|LassoCV|"
                              r"ElasticNet|ElasticNetCV|Lars|LassoLars)$")  # fmt: skip


def training_task(spec: Mapping[str, Any]) -> str | None:
    """
    ``classification`` / ``regression`` when the spec says it without data (its ``task``, its metrics, or a
    scikit-learn estimator whose class name says it), else None (an MLP with ``task: auto`` learns it from
    the target column).
    """

    task = spec.get("task")
    if task in ("classification", "regression"):
        return str(task)
    metrics = spec.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, list) and metrics and isinstance(metrics[0], str):
        found = metric_task(metrics[0])
        if found is not None:
            return found.value
    model = spec.get("model")
    estimator = model if isinstance(model, str) else (model or {}).get("estimator")
    if isinstance(estimator, str) and estimator != "torch_mlp":
        cls = estimator.rsplit(".", 1)[-1]
        if _CLASSIFIER_NAMES.search(cls):
            return "classification"
        if _REGRESSOR_NAMES.search(cls):
            return "regression"
    return None


def produced_metrics(spec: Mapping[str, Any], task: str | None) -> set[str] | None:
    """The run metrics training logs for ``spec`` (``val_<metric>``...), or None when it depends on the data."""

    metrics = spec.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, list) and metrics:
        names = [str(m) for m in metrics]
    elif task is not None:
        names = list(DEFAULT_METRICS[TaskType(task)])
    else:
        return None
    produced = {f"val_{m}" for m in names}
    model = spec.get("model")
    family = model if isinstance(model, str) else (model or {}).get("family")
    if family == "torch_mlp":
        produced |= {"epochs_completed", "best_epoch"}
    return produced
