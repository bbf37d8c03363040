"""MLflow side of a training: experiment, run start/resume, lineage tags, params, models.

Uses MLflow's fluent API with the ``MLFLOW_*`` environment the operator hands to the process or pod.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient

from airflow_mlops.core.tags import (
    TAG_CLASSES,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_MODEL_FAMILY,
    TAG_MODEL_URI,
    TAG_SPEC,
    TAG_TASK,
    TAG_TRY_NUMBER,
)
from airflow_mlops.core.training_result import identity_filter, model_uri_of
from airflow_mlops.core.training_spec import MAX_TAG_VALUE, TrainingSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_mlops.core.lineage import AirflowIdentity

log = logging.getLogger(__name__)

MODEL_NAME = "model"
SPEC_ARTIFACT = "training_spec.json"


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created when missing (safe when two trainings race to create it)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def run_tags(
    spec: TrainingSpec,
    spec_json: str,
    identity: AirflowIdentity | None,
    dataset_uri: str,
    fingerprint: str,
    task: str,
    classes: list[Any] | None,
) -> dict[str, str]:
    """Lineage tags of a training run; the spec's own ``tags`` come first so lineage always wins."""
    tags = {str(k): str(v) for k, v in spec.tags.items()}
    tags.update(
        {
            TAG_DATASET_URI: dataset_uri,
            TAG_DATASET_FINGERPRINT: fingerprint,
            TAG_SPEC: spec_json if len(spec_json) <= MAX_TAG_VALUE else f"artifact:{SPEC_ARTIFACT}",
            TAG_MODEL_FAMILY: spec.model.family.value,
            TAG_TASK: task,
        }
    )
    if classes is not None:
        text = json.dumps([_plain(c) for c in classes])
        if len(text) <= MAX_TAG_VALUE:
            tags[TAG_CLASSES] = text
    if identity is not None:
        tags.update(identity.to_tags())
    return tags


def flat_params(spec: TrainingSpec, extra: Mapping[str, Any]) -> dict[str, str]:
    """Run params: the model's hyperparameters (``model.<name>``) and the training settings."""
    params: dict[str, Any] = {
        "family": spec.model.family.value,
        "validation_fraction": spec.validation_fraction,
        "seed": spec.seed,
    }
    if spec.model.estimator:
        params["estimator"] = spec.model.estimator
    for key, value in spec.model.params.items():
        params[f"model.{key}"] = json.dumps(value) if isinstance(value, list | dict) else value
    params.update(extra)
    return {k: str(v)[:6000] for k, v in params.items()}


def find_reusable_run(
    experiment_id: str, identity: AirflowIdentity | None, spec_json: str, fingerprint: str
) -> Any | None:
    """A FINISHED run with a model from an earlier try of this task instance, on the same spec and data."""
    if identity is None:
        return None
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        filter_string=identity_filter(identity, with_try=False),
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        tags = run.data.tags
        if (
            run.info.status == "FINISHED"
            and model_uri_of(run)
            and tags.get(TAG_SPEC) == spec_json
            and tags.get(TAG_DATASET_FINGERPRINT) == fingerprint
        ):
            return run
    return None


def claim_run_for_try(run_id: str, identity: AirflowIdentity | None) -> None:
    """Re-tag a run (reused or resumed) with the current try so the operator finds it."""
    if identity is None:
        return
    client = MlflowClient()
    for key, value in identity.to_tags().items():
        client.set_tag(run_id, key, value)
    log.info("Run %s now carries %s=%s", run_id, TAG_TRY_NUMBER, identity.try_number)


def log_spec_artifact(spec_json: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mlops-spec-") as tmp:
        path = os.path.join(tmp, SPEC_ARTIFACT)
        with open(path, "w") as handle:
            handle.write(json.dumps(json.loads(spec_json), indent=2, sort_keys=True))
        mlflow.log_artifact(path)


def pinned(*dists: str) -> list[str]:
    """``name==version`` for installed distributions (local version suffixes such as ``+cpu`` dropped)."""
    out = []
    for dist in dists:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out.append(dist)
            continue
        out.append(f"{dist}=={version.split('+')[0]}")
    return out


def estimator_distributions(estimator_path: str) -> list[str]:
    """The installed distribution(s) that provide the estimator's top-level package (besides sklearn)."""
    top = estimator_path.split(".", 1)[0]
    if top == "sklearn":
        return []
    return sorted(set(importlib.metadata.packages_distributions().get(top, [])))


def _own_skops_types(estimator: Any) -> list[str] | None:
    """
    The types skops does not trust by default in the estimator this process just fitted.

    The trainer built the object itself from the spec's estimator class, so its types are trusted; recording
    them in the MLmodel makes the skops save (and later loads) succeed deterministically instead of depending
    on which helper types skops happens to meet.
    """
    try:
        import skops.io

        return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(estimator))) or None
    except Exception:  # noqa: BLE001 - skops missing or unable to dump: log_model decides (cloudpickle fallback below)
        return None


def log_sklearn_model(estimator: Any, estimator_path: str, x_example: Any) -> str:
    """Log a fitted estimator (skops, falling back to cloudpickle) with signature, example and requirements."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(x_example, estimator.predict(x_example))
    requirements = [*pinned("scikit-learn", "skops"), *pinned(*estimator_distributions(estimator_path))]
    try:
        info = mlflow.sklearn.log_model(
            estimator,
            name=MODEL_NAME,
            signature=signature,
            input_example=x_example,
            pip_requirements=requirements,
            skops_trusted_types=_own_skops_types(estimator),
        )
    except Exception as err:  # noqa: BLE001 - skops refusing for any reason falls back to cloudpickle, logged
        log.warning(
            "skops could not serialise %s (%s); logging it with cloudpickle instead", estimator_path, err
        )
        info = mlflow.sklearn.log_model(
            estimator,
            name=MODEL_NAME,
            signature=signature,
            input_example=x_example,
            pip_requirements=[*requirements, *pinned("cloudpickle")],
            serialization_format="cloudpickle",
        )
    return str(info.model_uri)


def log_torch_model(
    state_dict: Mapping[str, Any], config: dict[str, Any], x_example: Any, predictions: Any
) -> str:
    """Log the MLP as a pyfunc "model from code" (needs torch, not airflow-mlops, to load)."""
    import torch
    from mlflow.models import infer_signature

    from airflow_mlops.training import torch_model

    signature = infer_signature(x_example, predictions)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        weights = os.path.join(tmp, "weights.pt")
        torch.save(dict(state_dict), weights)
        config_path = os.path.join(tmp, "config.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle, default=_plain)
        with warnings.catch_warnings():
            # The wrapper's predict has no type hints on purpose (the signature comes from the data).
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=torch_model.__file__,
                artifacts={"weights": weights, "config": config_path},
                signature=signature,
                input_example=x_example,
                pip_requirements=pinned("torch", "mlflow", "numpy", "pandas"),
            )
    return str(info.model_uri)


def set_model_tag(model_uri: str) -> None:
    mlflow.set_tag(TAG_MODEL_URI, model_uri)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
