"""Turn a :class:`~airflow_mlops.templates.config.LifecycleConfig` into Airflow objects, in one place.

Three DAGs per model, each built from TaskGroup builders that a company DAG can also embed on its own:

* ``<model>_training``: validate the training data -> train -> register -> gate (promote or keep champion);
* ``<model>_inference``: validate the batch -> score with the champion -> drift check (emits the drift Asset);
* ``<model>_retraining``: scheduled on the model's drift Asset; the training steps on the newest data.

Operators are imported here at module level (they are cheap, and ``airflow_mlops.templates`` imports this
module, so a process that pre-imports the DAG file's imports has them all); the Kubernetes operator is imported
only when a config asks for the ``kubernetes`` backend, because the provider module costs ~0.6 s to import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param, TaskGroup, chain

from airflow_mlops.assets import drift_asset
from airflow_mlops.exceptions import TemplateConfigError
from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator
from airflow_mlops.operators.inference import BatchInferenceOperator
from airflow_mlops.operators.mlflow import (
    MlflowPromoteModelOperator,
    MlflowRegisterModelOperator,
    MlflowSetModelAliasOperator,
)
from airflow_mlops.operators.spark import SparkBatchInferenceOperator
from airflow_mlops.operators.training import LocalTrainModelOperator
from airflow_mlops.operators.validation import GXValidateDatasetOperator
from airflow_mlops.settings import get_settings
from airflow_mlops.templates.config import LifecycleConfig
from airflow_mlops.templates.macros import run_date, run_slug, storage_uri

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

START_DATE = datetime(2026, 1, 1)
VALIDATE_TASK = "validate_data"
TRAIN_TASK = "train"
REGISTER_TASK = "register"
PROMOTE_TASK = "promote"
FORCE_TASK = "force_promote"
DECIDED_TASK = "decided"
APPROVE_TASK = "approve"
SCORE_TASK = "score"
DRIFT_TASK = "detect_drift"


# --------------------------------------------------------------------------------------------------- macros
def _param_or(param: str, default_template: str) -> str:
    """A template that renders the run's Param when set, else the config's (itself templated) value."""
    return (
        "{% if params.get('"
        + param
        + "') %}{{ params.get('"
        + param
        + "') }}{% else %}"
        + default_template
        + "{% endif %}"
    )


TEMPLATE_MACROS: dict[str, Callable[..., Any]] = {}  # filled below, after the functions exist


def _register_macros(group: TaskGroup) -> None:
    """Make the builders' macros available in the DAG a TaskGroup belongs to (user DAGs need not know them)."""
    dag = group.dag
    if dag is None:
        raise TemplateConfigError("build the TaskGroup inside a DAG context (`with DAG(...):`).")
    macros = dict(dag.user_defined_macros or {})
    for name, fn in TEMPLATE_MACROS.items():
        macros.setdefault(name, fn)
    dag.user_defined_macros = macros


def _output(task: BaseOperator, key: str) -> Any:
    """``task.output[key]``: one key of a ``multiple_outputs`` task's result, resolved in the same run."""
    return task.output[key]  # type: ignore[index]


# ------------------------------------------------------------------------------------------ stage builders
def build_validation_task(
    cfg: LifecycleConfig, *, task_id: str = VALIDATE_TASK, dataset_uri: str | None = None, batch: bool = False
) -> BaseOperator | None:
    """The Great Expectations step for the training data (or, with ``batch``, a scoring batch)."""
    suite = cfg.validation.batch_suite if batch else cfg.validation.suite
    if not suite:
        return None
    return GXValidateDatasetOperator(
        task_id=task_id,
        dataset_uri=dataset_uri or cfg.data.train_uri,
        suite=suite,
        on_failure=cfg.validation.on_failure,
        allow_empty=cfg.validation.allow_empty,
    )


def build_training_task(cfg: LifecycleConfig, *, validation: Any = None) -> BaseOperator:
    """
    The training step on the configured backend. ``training.spec`` goes in as a dict, so Airflow renders every
    templated string in it (``checkpoint_uri: s3://ckpt/{{ run_id }}``); the run's parts are the operator's
    own template fields: the dataset URI (the ``train_uri`` Param, else ``data.train_uri``), the
    ``hyperparameters`` Param, and ``validation`` (the validation task's output, recorded as lineage).
    """
    common: dict[str, Any] = {
        "task_id": TRAIN_TASK,
        "training": {"experiment": cfg.experiment_name, **cfg.training.spec},
        "dataset_uri": _param_or("train_uri", cfg.data.train_uri),
        "hyperparameters": "{{ (params.get('hyperparameters') or {}) | tojson }}",
        "validation": validation,
        "mlflow_conn_id": cfg.mlflow_conn_id,
        "retries": cfg.training.retries,
        "retry_delay": timedelta(seconds=30),
    }
    if cfg.training.backend == "kubernetes":
        from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

        k8s = cfg.training.kubernetes
        return KubernetesTrainModelOperator(
            **common,
            image=k8s.image,
            namespace=k8s.namespace,
            kubernetes_conn_id=k8s.kubernetes_conn_id,
            gpu_count=k8s.gpu_count,
            gpu_type=k8s.gpu_type,
            gpu_resource=k8s.gpu_resource,
            cpu=k8s.cpu,
            memory=k8s.memory,
            mlflow_secret_name=k8s.mlflow_secret_name,
            deferrable=k8s.deferrable,
            schedule_timeout_seconds=k8s.schedule_timeout_seconds,
        )
    return LocalTrainModelOperator(**common)


def build_training_group(cfg: LifecycleConfig, *, group_id: str = "training") -> TaskGroup:
    """validate -> train -> register -> promote (+ an optional forced promotion from the run's Params)."""
    with TaskGroup(group_id=group_id, tooltip=f"Train and gate {cfg.model_name}") as group:
        _register_macros(group)
        validate = build_validation_task(cfg, dataset_uri=_param_or("train_uri", cfg.data.train_uri))
        train = build_training_task(cfg, validation=validate.output if validate is not None else None)
        register = MlflowRegisterModelOperator(
            task_id=REGISTER_TASK,
            name=cfg.model_name,
            run_id=_output(train, "run_id"),
            model_uri=_output(train, "model_uri"),
            mlflow_conn_id=cfg.mlflow_conn_id,
        )
        promote = MlflowPromoteModelOperator(
            task_id=PROMOTE_TASK,
            name=cfg.model_name,
            version=_output(register, "version"),
            rules=cfg.gate_rules(),
            on_reject=cfg.gate.on_reject,
            mlflow_conn_id=cfg.mlflow_conn_id,
            pool=cfg.gate.pool,
            require_approval=cfg.gate.approval == "required",
        )
        force = MlflowSetModelAliasOperator(
            task_id=FORCE_TASK,
            name=cfg.model_name,
            alias=get_settings().champion_alias,
            version=_output(register, "version"),
            reason="forced from the UI: {{ params.get('force_reason') }}",
            mlflow_conn_id=cfg.mlflow_conn_id,
            pool=cfg.gate.pool,
        )
        gate_check = _forced_check(group_id)
        # The group ends in one task that succeeds whether or not a promotion was forced, so tasks a user
        # adds after the group run in both cases.
        decided = EmptyOperator(task_id=DECIDED_TASK, trigger_rule="none_failed_min_one_success")
        chain(*(t for t in (validate, train, register, promote) if t is not None))
        promote >> gate_check >> force >> decided  # type: ignore[operator, unused-ignore]
        if cfg.gate.approval == "required":
            promote >> _approval_task(cfg, promote) >> decided  # type: ignore[operator, unused-ignore]
        else:
            promote >> decided  # type: ignore[operator, unused-ignore]
    return group


def _approval_task(cfg: LifecycleConfig, promote: BaseOperator) -> BaseOperator:
    """``gate.approval: required``: an approver answers in the UI before the champion moves."""
    from airflow_mlops.operators.approval import MlflowApproveModelOperator

    return MlflowApproveModelOperator(
        task_id=APPROVE_TASK,
        name=cfg.model_name,
        version=_output(promote, "version"),
        rules=cfg.gate_rules(),
        on_reject=cfg.gate.on_reject,
        response_timeout=timedelta(hours=cfg.gate.approval_timeout_hours),
        assigned_users=[{"id": user, "name": user} for user in cfg.gate.approvers] or None,
        mlflow_conn_id=cfg.mlflow_conn_id,
        pool=cfg.gate.pool,
    )


def build_scoring_task(
    cfg: LifecycleConfig, *, model_uri: str, input_uri: str, output_uri: str
) -> BaseOperator:
    """The scoring step of ``inference.backend``: streamed on the worker, or a Spark job."""
    inference = cfg.inference
    if inference.backend == "spark":
        spark = inference.spark
        conf = dict(spark.conf)
        if inference.batch_size:  # the rows per Arrow batch the udf predicts on
            conf.setdefault("spark.sql.execution.arrow.maxRecordsPerBatch", str(inference.batch_size))
        return SparkBatchInferenceOperator(
            task_id=SCORE_TASK,
            model_uri=model_uri,
            input_uri=input_uri,
            output_uri=output_uri,
            passthrough_columns=list(inference.passthrough_columns),
            spark_conn_id=spark.conn_id,
            conf=conf,
            python=spark.python,
            application=spark.application,
            driver_memory=spark.driver_memory,
            executor_memory=spark.executor_memory,
            executor_cores=spark.executor_cores,
            num_executors=spark.num_executors,
            mlflow_conn_id=cfg.mlflow_conn_id,
        )
    return BatchInferenceOperator(
        task_id=SCORE_TASK,
        model_uri=model_uri,
        input_uri=input_uri,
        output_uri=output_uri,
        passthrough_columns=list(inference.passthrough_columns),
        batch_size=inference.batch_size,
        mlflow_conn_id=cfg.mlflow_conn_id,
    )


def build_inference_group(cfg: LifecycleConfig, *, group_id: str = "inference") -> TaskGroup:
    """validate the batch -> score with the champion -> drift check (which may emit the drift Asset)."""
    input_uri = _param_or("input_uri", cfg.inference.input_uri)
    output_uri = _param_or("output_uri", cfg.inference.output_uri)
    with TaskGroup(group_id=group_id, tooltip=f"Score a batch with {cfg.model_name}") as group:
        _register_macros(group)
        validate = build_validation_task(cfg, task_id="validate_batch", dataset_uri=input_uri, batch=True)
        score = build_scoring_task(
            cfg,
            model_uri="models:/"
            + cfg.model_name
            + "@"
            + _param_or("model_alias", get_settings().champion_alias),
            input_uri=input_uri,
            output_uri=output_uri,
        )
        steps: list[Any] = [validate, score]
        if cfg.drift.enabled:
            policy = dataclasses.asdict(cfg.drift.policy)
            steps.append(
                EvidentlyDetectDriftOperator(
                    task_id=DRIFT_TASK,
                    model_name=cfg.model_name,
                    model_version=_output(score, "model_version"),
                    current_uri=input_uri,
                    reference_uri=cfg.drift.reference_uri,
                    columns=cfg.drift.columns,
                    drift_share=cfg.drift.drift_share,
                    sample_size=cfg.drift.sample_size,
                    policy=policy,
                    mlflow_conn_id=cfg.mlflow_conn_id,
                )
            )
        chain(*(t for t in steps if t is not None))
    return group


def _forced_check(group_id: str) -> BaseOperator:
    def forced(params: Mapping[str, Any] | None = None, **_: Any) -> bool:
        params = params or {}
        if not params.get("force_promote"):
            return False
        if not str(params.get("force_reason") or "").strip():
            from airflow_mlops.exceptions import MlopsConfigError

            raise MlopsConfigError("force_promote is set but force_reason is empty; say why you force it.")
        return True

    return ShortCircuitOperator(
        task_id="if_forced", python_callable=forced, ignore_downstream_trigger_rules=False
    )


# -------------------------------------------------------------------------------------------------- DAGs
def _training_params(cfg: LifecycleConfig) -> dict[str, Param]:
    return {
        "train_uri": Param(
            "", type="string", description=f"Training dataset URI (empty: {cfg.data.train_uri})"
        ),
        "hyperparameters": Param(
            {}, type="object", description='Overrides of the model\'s params, e.g. {"max_iter": 300}'
        ),
        "force_promote": Param(False, type="boolean", description="Make this run's model champion anyway"),
        "force_reason": Param("", type="string", description="Why (required with force_promote)"),
    }


def _dag_kwargs(cfg: LifecycleConfig, kind: str, description: str) -> dict[str, Any]:
    return {
        "dag_id": f"{cfg.dag_prefix}_{kind}",
        "description": description,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["mlops", cfg.model_name, kind, *cfg.tags],
        "default_args": {"owner": cfg.owner},
        "user_defined_macros": dict(TEMPLATE_MACROS),
        "render_template_as_native_obj": False,
        "doc_md": f"{description}\n\nConfig: `{cfg.source or 'python'}`",
    }


def build_training_dag(cfg: LifecycleConfig) -> DAG:
    with DAG(
        schedule=cfg.schedule,
        params=_training_params(cfg),
        **_dag_kwargs(cfg, "training", f"Train, register and gate {cfg.model_name}"),
    ) as dag:
        build_training_group(cfg)
    return dag


def build_retraining_dag(cfg: LifecycleConfig) -> DAG:
    retrain_cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, train_uri=cfg.data.retrain_uri or cfg.data.train_uri)
    )
    with DAG(
        schedule=[drift_asset(cfg.model_name)],
        params=_training_params(retrain_cfg),
        **_dag_kwargs(retrain_cfg, "retraining", f"Retrain {cfg.model_name} when its drift Asset fires"),
    ) as dag:
        build_training_group(retrain_cfg)
    return dag


def build_inference_dag(cfg: LifecycleConfig) -> DAG:
    params = {
        "input_uri": Param(
            "", type="string", description=f"Batch to score (empty: {cfg.inference.input_uri})"
        ),
        "output_uri": Param(
            "", type="string", description=f"Where predictions go (empty: {cfg.inference.output_uri})"
        ),
        "model_alias": Param(get_settings().champion_alias, type="string", minLength=1),
    }
    with DAG(
        schedule=cfg.inference.schedule,
        params=params,
        **_dag_kwargs(cfg, "inference", f"Score a batch with {cfg.model_name} and check drift"),
    ) as dag:
        build_inference_group(cfg)
    return dag


TEMPLATE_MACROS.update({"mlops_storage": storage_uri, "mlops_run_date": run_date, "mlops_run_slug": run_slug})

Builder = Callable[[LifecycleConfig], DAG]
BUILDERS: dict[str, Builder] = {
    "training": build_training_dag,
    "inference": build_inference_dag,
    "retraining": build_retraining_dag,
}


def build_lifecycle(cfg: LifecycleConfig, *, include: tuple[str, ...] | None = None) -> dict[str, DAG]:
    """Every DAG of a lifecycle, keyed by dag_id (inference only when ``inference.input_uri`` is set)."""
    kinds = include or tuple(k for k in BUILDERS if k != "inference" or cfg.inference.input_uri)
    dags = [BUILDERS[k](cfg) for k in kinds]
    return {d.dag_id: d for d in dags}


def dags_from_yaml(path: str) -> dict[str, DAG]:
    """Load one lifecycle YAML file and build its DAGs (use from a DAG file: ``globals().update(...)``)."""
    return build_lifecycle(LifecycleConfig.from_yaml(path))
