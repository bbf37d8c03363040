"""Run one training spec end to end: data, MLflow run (new, resumed or reused), training, metrics, model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.tags import TAG_PRECISION, TAG_RESUMED_FROM_EPOCH
from airflow_mlops.core.training_result import model_uri_of
from airflow_mlops.core.training_spec import ModelFamily, TaskType, TrainingSpec
from airflow_mlops.exceptions import TrainingSpecError
from airflow_mlops.training import checkpoint as ckpt
from airflow_mlops.training.data import PreparedData, load_and_split

if TYPE_CHECKING:
    from airflow_mlops.core.lineage import AirflowIdentity

log = logging.getLogger(__name__)

EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float]
    reused: bool = False
    resumed_from_epoch: int = 0


def run_training(spec: TrainingSpec, identity: AirflowIdentity | None = None) -> RunOutcome:
    """Train ``spec`` and log everything to the active MLflow tracking server (``MLFLOW_*`` env).

    Data and spec problems surface before MLflow (or torch) is imported, so bad input fails fast.
    """
    spec.validate_static(check_estimator=False)
    spec_json = spec.to_json()
    estimator = None
    if spec.model.family is ModelFamily.SKLEARN:
        from airflow_mlops.training.sklearn_trainer import make_estimator

        estimator = make_estimator(spec)
    else:
        spec.torch_params()
    data = load_and_split(spec, estimator)
    _check_task(spec, data, estimator)
    metrics = spec.resolved_metrics(data.task)
    log.info(
        "Dataset %s (%s): %s rows, %s features, task %s, metrics %s",
        data.dataset_uri,
        data.fingerprint,
        data.rows,
        len(data.features),
        data.task.value,
        metrics,
    )

    import mlflow

    from airflow_mlops.training import mlflow_logging as mlog

    experiment_id = mlog.ensure_experiment(spec.experiment)
    reusable = mlog.find_reusable_run(experiment_id, identity, spec_json, data.fingerprint)
    if reusable is not None:
        run_id = reusable.info.run_id
        log.info("An earlier try already trained this spec on this data: reusing MLflow run %s", run_id)
        mlog.claim_run_for_try(run_id, identity)
        return RunOutcome(
            run_id=run_id,
            experiment_id=experiment_id,
            model_uri=str(model_uri_of(reusable)),
            metrics={k: v for k, v in reusable.data.metrics.items() if k.startswith("val_")},
            reused=True,
        )

    tags = mlog.run_tags(
        spec, spec_json, identity, data.dataset_uri, data.fingerprint, data.task.value, data.classes
    )
    digest = ckpt.spec_hash(spec_json)
    ti_key = identity.ti_key if identity is not None else ""
    resume: dict[str, Any] | None = None
    if spec.model.family is ModelFamily.TORCH_MLP:
        resume = ckpt.matching_checkpoint(
            spec.checkpoint_uri, ti_key=ti_key, spec_digest=digest, fingerprint=data.fingerprint
        )
        if resume is not None and (resume.get("done") or not _run_exists(resume.get("run_id"))):
            log.info("Checkpoint %s is from a finished or deleted run; starting over", spec.checkpoint_uri)
            resume = None

    run_kwargs: dict[str, Any] = {"experiment_id": experiment_id}
    if resume is not None:
        run_kwargs["run_id"] = resume["run_id"]
    else:
        run_kwargs.update(run_name=spec.run_name, tags=tags)
    with mlflow.start_run(**run_kwargs) as active:
        run_id = active.info.run_id
        if resume is not None:
            mlflow.set_tags({**tags, TAG_RESUMED_FROM_EPOCH: str(resume["epoch"])})
            _log_missing_epochs(run_id, resume.get("history", []))
        else:
            log.info("Started MLflow run %s in experiment %r", run_id, spec.experiment)
            mlog.log_spec_artifact(spec_json)
            mlflow.log_params(
                mlog.flat_params(
                    spec,
                    {"task": data.task.value, "n_features": len(data.features), "n_rows": data.rows},
                )
            )
        x_example = data.x_val.head(EXAMPLE_ROWS)
        if spec.model.family is ModelFamily.SKLEARN:
            from airflow_mlops.training.sklearn_trainer import train_sklearn

            outcome = train_sklearn(spec, estimator, data, metrics)
            final = outcome.metrics
            mlflow.log_metrics({f"val_{k}": v for k, v in final.items()})
            assert spec.model.estimator is not None
            model_uri = mlog.log_sklearn_model(outcome.estimator, spec.model.estimator, x_example)
            resumed_from = 0
        else:
            final, model_uri, resumed_from = _train_torch(spec, data, metrics, resume, run_id, ti_key, digest)
        mlog.set_model_tag(model_uri)
        log.info("Logged model %s; validation metrics %s", model_uri, final)
    return RunOutcome(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        metrics={f"val_{k}": v for k, v in final.items()},
        resumed_from_epoch=resumed_from,
    )


def _train_torch(
    spec: TrainingSpec,
    data: PreparedData,
    metrics: list[str],
    resume: dict[str, Any] | None,
    run_id: str,
    ti_key: str,
    digest: str,
) -> tuple[dict[str, float], str, int]:
    import mlflow

    from airflow_mlops.training import mlflow_logging as mlog
    from airflow_mlops.training.torch_model import predict_frame
    from airflow_mlops.training.torch_trainer import train_mlp

    params = spec.torch_params()
    monitor = params.monitor or metrics[0]
    if monitor != "loss" and monitor not in metrics:
        raise TrainingSpecError(
            f"torch_mlp hyperparameter monitor={monitor!r} is not among the metrics {metrics}; "
            "add it to 'metrics' or monitor 'loss'."
        )
    identity_meta = {"run_id": run_id, "ti_key": ti_key, "spec_hash": digest, "fingerprint": data.fingerprint}
    checkpoint_uri = spec.checkpoint_uri

    def save(state: dict[str, Any]) -> None:
        if checkpoint_uri:
            ckpt.save_checkpoint(checkpoint_uri, {**state, **identity_meta})

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        mlflow.log_metrics(values, step=epoch)

    outcome = train_mlp(
        data, params, metrics, seed=spec.seed, resume=resume, on_epoch=on_epoch, save_checkpoint=save
    )
    mlflow.log_metrics({f"val_{k}": v for k, v in outcome.metrics.items()})
    mlflow.log_metrics({"epochs_completed": outcome.epochs_completed, "best_epoch": outcome.best_epoch})
    mlflow.set_tag(TAG_PRECISION, outcome.precision)
    import torch

    net_preds = None
    from airflow_mlops.training.torch_model import build_network

    net = build_network(outcome.config)
    net.load_state_dict(outcome.state_dict)
    x_example = data.x_val.head(EXAMPLE_ROWS)
    with torch.no_grad():
        net_preds = predict_frame(net, outcome.config, x_example)
    model_uri = mlog.log_torch_model(outcome.state_dict, outcome.config, x_example, net_preds)
    if checkpoint_uri:
        # Mark the checkpoint finished so a later start with it never resumes a completed run.
        ckpt.save_checkpoint(
            checkpoint_uri,
            {**identity_meta, "epoch": outcome.epochs_completed, "done": True, "model_uri": model_uri},
        )
    return outcome.metrics, model_uri, outcome.resumed_from_epoch


def _check_task(spec: TrainingSpec, data: PreparedData, estimator: Any | None) -> None:
    if estimator is None:
        return
    from sklearn.base import is_classifier, is_regressor

    if data.task is TaskType.CLASSIFICATION and is_regressor(estimator):
        raise TrainingSpecError(
            f"model.estimator {spec.model.estimator} is a regressor but the task is classification "
            "(from 'task' or 'metrics'); use a classifier or regression metrics."
        )
    if data.task is TaskType.REGRESSION and is_classifier(estimator):
        raise TrainingSpecError(
            f"model.estimator {spec.model.estimator} is a classifier but the task is regression "
            "(from 'task' or 'metrics'); use a regressor or classification metrics."
        )


def _run_exists(run_id: Any) -> bool:
    if not run_id:
        return False
    from mlflow import MlflowClient

    try:
        run = MlflowClient().get_run(str(run_id))
    except Exception:  # noqa: BLE001 - a run that cannot be read is treated as gone: the runner starts a new one
        return False
    return run.info.lifecycle_stage != "deleted"


def _log_missing_epochs(run_id: str, history: list[dict[str, Any]]) -> None:
    """Log epochs a killed process checkpointed but did not get to log (no step is ever logged twice)."""
    if not history:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    logged = {m.step for m in client.get_metric_history(run_id, "epoch_train_loss")}
    missing = [h for h in history if h["epoch"] not in logged]
    if not missing:
        return
    import time

    now = int(time.time() * 1000)
    batch = [
        Metric(key=k, value=float(v), timestamp=now, step=int(h["epoch"]))
        for h in missing
        for k, v in h["metrics"].items()
    ]
    client.log_batch(run_id, metrics=batch)
    log.info("Logged %s checkpointed epoch(s) the previous process did not log", len(missing))
