"""The checks of a lifecycle's training spec made when the config loads, and what they infer from it.

:func:`check_training_spec` finds unknown keys (``targt``), a missing target or model, bad estimator parameters
and mistyped values before any DAG runs, naming the YAML path of each; templated values that only render at run
time are left for then. :func:`training_task` and :func:`produced_metrics` say what task a spec trains and
which metrics its run will log, which the gate rules are checked against. Used by
:mod:`airflow_mlops.templates.config`; imports nothing from it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from airflow_mlops.core.training_spec import (
    DEFAULT_METRICS,
    ModelFamily,
    TaskType,
    TorchMlpParams,
    TrainingSpec,
    metric_task,
)
from airflow_mlops.exceptions import TemplateConfigError, TrainingSpecError


def config_error(path: str, message: str) -> TemplateConfigError:
    """The one error of a bad config field: ``<path>: <message>``."""
    return TemplateConfigError(f"{path}: {message}")


_TEMPLATED = re.compile(r"{{|{%")
# Spec fields whose (templated) strings are only rendered at run time; their values are not checked here.
_RUN_TIME_FIELDS = ("dataset_uri", "checkpoint_uri", "tags", "run_name", "experiment")


def unknown_key(key: Any, allowed: Any) -> str:
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
        raise config_error("training.spec", "is required: at least target and model (see docs/training.md).")
    allowed = {f.name for f in dataclasses.fields(TrainingSpec)}
    for key in spec:
        if key not in allowed:
            raise config_error(f"training.spec.{key}", unknown_key(key, allowed))
    for key in ("target", "model"):
        if spec.get(key) in (None, ""):
            raise config_error(f"training.spec.{key}", "is required.")
    model = spec["model"]
    if isinstance(model, Mapping):
        for key in model:
            if key not in ("family", "estimator", "params"):
                raise config_error(
                    f"training.spec.model.{key}", unknown_key(key, ("family", "estimator", "params"))
                )
    for path, value in _templated_non_text(spec):
        raise config_error(
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
                    raise config_error(f"training.spec.model.params.{key}", unknown_key(key, names))
            parsed.torch_params()
        parsed.validate_static(check_estimator=False)
    except TrainingSpecError as err:
        raise config_error(_spec_error_path(str(err)), str(err)) from None


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
