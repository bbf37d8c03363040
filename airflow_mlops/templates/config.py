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
from airflow_mlops.exceptions import (
    GateRuleError,
    MlopsConfigError,
    TemplateConfigError,
)
from airflow_mlops.templates.spec_checks import (
    check_training_spec,
    config_error,
    produced_metrics,
    training_task,
    unknown_key,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


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
            raise config_error("training.kubernetes.gpu_count", f"must be >= 0, got {self.gpu_count}")


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
    :param approval: ``none`` (default: the rules decide) or ``required``: after the rules pass, an approver
        answers in the Airflow UI (Required Actions) before the champion moves; see docs/registry.md.
    :param approval_timeout_hours: With ``approval: required``: no answer within this many hours rejects.
    :param approvers: With ``approval: required``: the user ids that may answer (default: anyone who may edit
        the DAG).

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
    approval: Literal["none", "required"] = "none"
    approval_timeout_hours: float = 24.0
    approvers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._check_approval()
        self._normalise_rules()

    def _check_approval(self) -> None:
        if not (0 < self.approval_timeout_hours <= 24 * 365):
            raise config_error(
                "gate.approval_timeout_hours",
                f"{self.approval_timeout_hours} is not a number of hours between 0 and a year",
            )
        for i, user in enumerate(self.approvers):
            if not isinstance(user, str) or not user.strip():
                raise config_error(f"gate.approvers[{i}]", f"{user!r} is not a user id")

    def _normalise_rules(self) -> None:
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
                            raise config_error(f"{where}.{key}", unknown_key(key, GateRule.KEYS))
                try:
                    normalised.append(GateRule.from_obj(rule, i).to_dict())
                except GateRuleError as err:
                    raise config_error(where, str(err)) from None
            object.__setattr__(self, section, normalised)  # GateRule objects become plain data

    @property
    def is_default(self) -> bool:
        return self.rules is None and self.floors is None


@dataclass(frozen=True)
class SparkConfig:
    """Where the Spark scoring job runs (used when ``inference.backend`` is ``spark``; see docs/spark.md).

    :param conn_id: the Spark connection (type ``spark``; host ``local[4]``, ``yarn``, ``spark://…``, ``k8s://…``).
    :param conf: Spark configuration of the job, e.g. ``{"spark.executor.instances": "20"}``.
    :param python: the driver's and executors' interpreter (default: the worker's on a local master).
    :param application: the application file, e.g. ``local:///opt/mlops/spark_job.py`` in a cluster image.
    """

    conn_id: str = "spark_default"
    conf: dict[str, Any] = field(default_factory=dict)
    python: str | None = None
    application: str | None = None
    driver_memory: str | None = None
    executor_memory: str | None = None
    executor_cores: int | None = None
    num_executors: int | None = None


@dataclass(frozen=True)
class InferenceConfig:
    """Batch scoring with the champion.

    :param schedule: cron or preset for the inference DAG (``None``: triggered only).
    :param input_uri: the batch to score (templated, e.g. ``.../batches/{{ mlops_run_date(dag_run) }}.parquet``).
    :param output_uri: where predictions go (templated; make it unique per run, e.g.
        ``.../predictions/{{ mlops_run_slug(run_id) }}.parquet``); a folder of parts with the Spark backend.
    :param passthrough_columns: input columns copied next to the predictions (ids).
    :param backend: ``local`` (streamed on the worker) or ``spark`` (a Spark job, see ``spark``).
    """

    input_uri: str = ""
    output_uri: str = ""
    schedule: str | None = None
    passthrough_columns: list[str] = field(default_factory=list)
    batch_size: int | None = None
    backend: Literal["local", "spark"] = "local"
    spark: SparkConfig = field(default_factory=SparkConfig)


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
            raise config_error("drift.policy", str(err)) from None


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
            raise config_error("drift.drift_share", f"must be in (0, 1], got {self.drift_share}")


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
            raise config_error(
                "model_name",
                f"{self.model_name!r} is not a valid name; use letters, digits, '_', '-', '.' (max 200).",
            )
        if not self.data.train_uri:
            raise config_error("data.train_uri", "is required: the URI of the training dataset.")
        if self.inference.input_uri and not self.inference.output_uri:
            raise config_error("inference.output_uri", "is required when inference.input_uri is set.")
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
                raise config_error(
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
        raise config_error(path, f"expected {expected}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise config_error(path, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise config_error(
                path, f"expected a mapping of {tp.__name__} fields, got {type(value).__name__}"
            )
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise config_error(path, f"expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise config_error(path, f"expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise config_error(path, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise config_error(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise config_error(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise config_error(path, f"expected a string, got {type(value).__name__} {value!r}")
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
                raise config_error(
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
        raise config_error(
            where,
            f"unknown key(s) {unknown}; allowed: {sorted(k for k in fields_by_name if k != 'source')}",
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields_by_name.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise config_error(path, "is required")
            continue
        kwargs[name] = _coerce(hints[name], data[name], path)
    return cls(**kwargs)  # __post_init__ errors already name their full field path
