"""scikit-learn style estimators named by import path: import, instantiate and check them without data.

What a training spec's ``model.estimator`` and ``model.params`` are checked with when the spec is validated
(:meth:`airflow_mlops.core.training_spec.TrainingSpec.validate_static`) and what the sklearn trainer builds its
model with. Imports only the estimator's own package, and only when called.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import TrainingSpecError

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)


def import_estimator(path: str) -> type:
    """Import the estimator class at ``path``; raise TrainingSpecError naming it and the fix."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise TrainingSpecError(
            f"model.estimator {path!r}: module {module_name!r} cannot be imported ({err}). Check the spelling, "
            "or install the package into the training environment."
        ) from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise TrainingSpecError(
            f"model.estimator {path!r}: {module_name!r} has no class {attr!r}. Check the spelling "
            "(e.g. sklearn.ensemble.RandomForestClassifier)."
        )
    if not (callable(getattr(cls, "fit", None)) and callable(getattr(cls, "predict", None))):
        raise TrainingSpecError(
            f"model.estimator {path!r} is not a scikit-learn style estimator (it needs fit and predict)."
        )
    return cls


def build_estimator(path: str, params: Mapping[str, Any]) -> Any:
    """Instantiate the estimator and check its parameters without data (scikit-learn's own constraints)."""
    cls = import_estimator(path)
    try:
        estimator = cls(**params)
    except TypeError as err:
        valid = _param_names(cls)
        raise TrainingSpecError(
            f"model.params of {path} rejected: {err}. Valid parameters: {valid}."
        ) from None
    get_params = getattr(estimator, "get_params", None)
    if callable(get_params):
        valid_names = set(get_params(deep=False))
        unknown = sorted(set(params) - valid_names)
        if unknown:
            raise TrainingSpecError(
                f"model.params of {path} has unknown parameter(s) {unknown}; valid: {sorted(valid_names)}."
            )
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise TrainingSpecError(f"model.params of {path} has a bad hyperparameter: {err}") from None
    return estimator


def check_estimator(path: str, params: Mapping[str, Any], *, task: str = "auto") -> None:
    """Import and instantiate the estimator to check it; skip packages that are not installed here."""
    top = path.split(".", 1)[0]
    if top != "sklearn" and importlib.util.find_spec(top) is None:
        log.warning("Estimator package %r is not installed here; the trainer will check %s", top, path)
        return
    estimator = build_estimator(path, params)
    kind = getattr(estimator, "_estimator_type", None)
    if kind is None:
        tags = getattr(estimator, "__sklearn_tags__", None)
        if callable(tags):
            try:
                kind = tags().estimator_type
            except Exception:  # noqa: BLE001 - estimator tags are a hint only; an estimator without them gets no task check
                kind = None
    expected = {"classifier": "classification", "regressor": "regression"}.get(str(kind))
    task = str(getattr(task, "value", task))
    if expected is not None and task != "auto" and expected != task:
        raise TrainingSpecError(
            f"model.estimator {path} is a {kind} but the spec says task={task!r}; "
            "pick an estimator of that task or fix 'task'."
        )


def _param_names(cls: type) -> list[str]:
    import inspect

    try:
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []
