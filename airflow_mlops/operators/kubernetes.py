"""KubernetesTrainModelOperator: the training entrypoint in a Kubernetes (GPU) pod, wired to MLflow.

A subclass of the unmodified ``KubernetesPodOperator`` that only sets its arguments (image, command, env,
resources, tolerations, node selector, security context, volumes) and uses its extension points
(``post_complete_action``, ``trigger_reentry``). Being a subclass, this module must import the Kubernetes
provider (which imports the ``kubernetes`` client itself; ~0.6 s of the 0.82 s cold parse of the GPU lifecycle
in ``bench/dag_parse.py``); the client models this module and ``kubernetes_pod`` build are imported inside
the functions that build them. The module is kept apart from
``operators/training.py`` and the templates import it only for ``backend: kubernetes``: DAGs that train locally
never pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from airflow_mlops.core.training_spec import ModelFamily, TrainingSpec
from airflow_mlops.exceptions import ConnectionConfigError, MlopsConfigError, MlopsError, TrainingFailed
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast, identity_from_context
from airflow_mlops.operators.kubernetes_pod import (
    DEFAULT_GPU_NODE_LABEL,
    DEFAULT_GPU_RESOURCE,
    LOG_TAIL_LINES,
    PodSetup,
    explain_pod_end,
    pod_arguments,
)
from airflow_mlops.operators.training import MlflowTrainingRunLink, TrainingOperatorMixin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk.definitions.context import Context
    from kubernetes.client import models as k8s

    from airflow_mlops.core.lineage import AirflowIdentity
    from airflow_mlops.hooks.mlflow import MlflowHook

SECRET_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class KubernetesTrainModelOperator(TrainingOperatorMixin, KubernetesPodOperator, MlflowBaseOperator):
    """
    Train a model in a Kubernetes pod (GPU or CPU) with ``python -m airflow_mlops.training`` and return its run.

    The spec is checked before any pod is created. The pod gets the Airflow task identity, the non-secret MLflow
    settings as literal env vars, and the MLflow credentials only as ``secretKeyRef`` references to the
    Kubernetes Secret ``mlflow_secret_name`` (keys ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME`` +
    ``MLFLOW_TRACKING_PASSWORD``), so no credential is ever in the pod spec, the rendered fields or the task
    log. After the pod ends, the MLflow run is found by the task-identity tags (exactly like
    ``LocalTrainModelOperator``) and ``{run_id, experiment_id, model_uri, metrics, dataset_uri,
    dataset_fingerprint, run_url}`` is returned (pushed as ``return_value`` and per key, so
    ``train.output["run_id"]`` works). A failed pod fails the task
    with the termination reason (OOMKilled, exit code, never scheduled, deleted) and its last log lines.

    .. code-block:: python

        train = KubernetesTrainModelOperator(
            task_id="train",
            training={
                "experiment": "churn",
                "dataset_uri": "s3://lake/churn/{{ dag_run.run_after | ds }}.parquet",
                "target": "churned",
                "model": {"family": "torch_mlp", "params": {"epochs": 30}},
                "checkpoint_uri": "s3://ml-checkpoints/churn/{{ run_id }}",
            },
            gpu_count=1,
            gpu_type="NVIDIA-L4",
            cpu="4",
            memory="16Gi",
            mlflow_secret_name="mlflow-credentials",
            namespace="ml",
            retries=3,  # spot GPUs: a reclaimed pod is retried and resumes from the checkpoint
        )

    Every other ``KubernetesPodOperator`` argument passes through (``namespace``, ``kubernetes_conn_id``,
    ``deferrable``, ``affinity``, ``service_account_name``, ``on_finish_action``...).

    :param training: The training spec: a dict, JSON string, JSON file path or ``TrainingSpec``. Every string in
        a dict spec is rendered, so ``"checkpoint_uri": "s3://ckpt/{{ run_id }}"`` works. (templated)
    :param dataset_uri: This run's training data; replaces the spec's ``dataset_uri``. (templated)
    :param hyperparameters: This run's overrides of ``model.params``: a dict or a JSON object string such as
        ``"{{ params.hyperparameters | tojson }}"``. (templated)
    :param validation: The validation summary of the data (e.g. ``validate.output``), recorded as lineage
        tags on the MLflow run. (templated)
    :param image: Training image; default ``[mlops] training_image``. (templated)
    :param gpu_count: GPUs requested (and limited) as ``gpu_resource``; 0 trains on CPU.
    :param gpu_resource: Extended resource name of the GPU device plugin, default ``nvidia.com/gpu``.
    :param gpu_type: GPU model required, as the node label ``gpu_node_label`` (node selector). (templated)
    :param gpu_node_label: Node label that carries the GPU model: ``nvidia.com/gpu.product`` (NVIDIA GPU feature
        discovery), ``cloud.google.com/gke-accelerator`` (GKE), ``karpenter.k8s.aws/instance-gpu-name``...
    :param gpu_toleration: Tolerate the ``<gpu_resource>:NoSchedule`` taint GPU node pools carry (default True).
    :param cpu: CPU request, e.g. ``"4"`` or ``"500m"`` (no CPU limit: no throttling). (templated)
    :param memory: Memory request, e.g. ``"16Gi"``; also the limit unless ``memory_limit`` is set. (templated)
    :param memory_limit: Memory limit; default ``memory``. (templated)
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id``. (templated)
    :param mlflow_secret_name: Kubernetes Secret (in the pod's namespace) with the MLflow credentials; needed
        when the MLflow connection has a token or a login. (templated)
    :param pod_mlflow_tracking_uri: Tracking URI as seen from inside the cluster, when it differs from the
        connection's (e.g. ``http://mlflow.mlflow.svc:5000``). (templated)
    :param read_only_root_filesystem: Run the container with a read-only root filesystem and an ``emptyDir``
        at ``/tmp`` (default True; the trainer writes only to ``/tmp`` and its URIs).
    :param schedule_timeout_seconds: How long the pod may wait for a node (GPU node pools scale from zero in
        minutes): default 1800.
    :param startup_timeout_seconds: How long a scheduled pod may take to start (large CUDA images): default 900.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "training",
        *TrainingOperatorMixin.run_input_fields,
        "mlflow_conn_id",
        "mlflow_secret_name",
        "pod_mlflow_tracking_uri",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **KubernetesPodOperator.template_fields_renderers,
        **TrainingOperatorMixin.run_input_renderers,
    }
    operator_extra_links = (MlflowTrainingRunLink(),)
    ui_color = "#d8e7f5"

    def __init__(
        self,
        *,
        training: Any,
        dataset_uri: str | None = None,
        hyperparameters: Any = None,
        validation: Any = None,
        image: str | None = None,
        gpu_count: int = 0,
        gpu_resource: str = DEFAULT_GPU_RESOURCE,
        gpu_type: str | None = None,
        gpu_node_label: str = DEFAULT_GPU_NODE_LABEL,
        gpu_toleration: bool = True,
        cpu: str | None = None,
        memory: str | None = None,
        memory_limit: str | None = None,
        mlflow_conn_id: str | None = None,
        mlflow_secret_name: str | None = None,
        pod_mlflow_tracking_uri: str | None = None,
        read_only_root_filesystem: bool = True,
        schedule_timeout_seconds: int = 1800,
        startup_timeout_seconds: int = 900,
        kubernetes_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        pod_arguments(
            kwargs,
            gpu_count=gpu_count,
            gpu_resource=gpu_resource,
            gpu_type=gpu_type,
            gpu_node_label=gpu_node_label,
            gpu_toleration=gpu_toleration,
            cpu=cpu,
            memory=memory,
            memory_limit=memory_limit,
            read_only_root_filesystem=read_only_root_filesystem,
        )
        if isinstance(training, TrainingSpec):
            training = training.to_dict()  # templates render plain data
        super().__init__(
            image=image,
            kubernetes_conn_id=kubernetes_conn_id,
            schedule_timeout_seconds=schedule_timeout_seconds,
            startup_timeout_seconds=startup_timeout_seconds,
            mlflow_conn_id=mlflow_conn_id,  # through KubernetesPodOperator's **kwargs to MlflowBaseOperator
            **kwargs,
        )
        self.training = training
        self.dataset_uri = dataset_uri
        self.hyperparameters = hyperparameters
        self.validation = validation
        self.gpu_count = gpu_count
        self.gpu_resource = gpu_resource
        self.gpu_type = gpu_type
        self.memory_limit = memory_limit or memory
        self.mlflow_secret_name = mlflow_secret_name
        self.pod_mlflow_tracking_uri = pod_mlflow_tracking_uri
        self._diagnosis: Exception | None = None

    # ------------------------------------------------------------------ execution
    @fail_fast
    def execute(self, context: Context) -> Any:
        self._resolve_kubernetes_conn_id()
        identity = identity_from_context(context)
        spec = self.load_spec(identity)
        hook = self.mlflow_hook
        hook.check_reachable()  # before a GPU node is paid for
        self.prepare_pod(spec, identity, hook)
        self.log.info(
            "Training %s (%s) on %s: experiment %r, dataset %s",
            identity.ti_key,
            spec.model.estimator or spec.model.family.value,
            f"{self.gpu_count} x {self.gpu_resource}" if self.gpu_count else "CPU",
            spec.experiment,
            spec.dataset_uri,
        )
        self._run_pod(None, super().execute, context)
        return self._publish_result(context, spec, identity, hook)

    @fail_fast
    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the deferrable trigger: the same failure translation and run lookup as ``execute``."""
        from kubernetes.client import models as k8s

        self._resolve_kubernetes_conn_id()
        identity = identity_from_context(context)
        spec = self.load_spec(identity)
        pod_ref = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=event.get("name"), namespace=event.get("namespace"))
        )
        self._run_pod(pod_ref, super().trigger_reentry, context, event)
        return self._publish_result(context, spec, identity, self.mlflow_hook)

    def load_spec(self, identity: AirflowIdentity) -> TrainingSpec:
        """
        The rendered ``training`` argument as a checked TrainingSpec (TrainingSpecError before any pod).

        The MLP's default checkpoint (``<storage_base_uri>/checkpoints/...``) is only used when that base is an
        object store a pod can reach; a worker's local folder is not.
        """
        from airflow_mlops.settings import get_settings

        base = get_settings().storage_base_uri
        remote = "://" in base and not base.startswith("file://")
        spec = self.build_training_spec(identity, default_checkpoint=remote)
        if spec.model.family is ModelFamily.TORCH_MLP and not spec.checkpoint_uri:
            self.log.warning(
                "No checkpoint_uri for the MLP of task %r: a retried pod (spot reclaim, eviction) starts from "
                "epoch 1. Give the spec a checkpoint_uri on object storage, or set [mlops] storage_base_uri to one.",
                self.task_id,
            )
        return spec

    def prepare_pod(self, spec: TrainingSpec, identity: AirflowIdentity, hook: MlflowHook) -> None:
        """Set the KPO arguments that depend on the run: image, entrypoint arguments, env."""
        from airflow_mlops.settings import get_settings

        self.image = self.image or get_settings().training_image
        self.arguments = self.training_arguments(self._pod_spec(spec))
        self.env_vars = [*self._user_env(), *self._training_env(identity, hook)]

    def _pod_spec(self, spec: TrainingSpec) -> TrainingSpec:
        """
        The spec the pod gets: a pod cannot ask Airflow for connections, so storage URIs that name one
        (``s3://aws_default@bucket/key``) reach it without the name and the pod reads them with its own
        credentials (service account / workload identity, or env_vars and secrets you give the operator).
        """
        import dataclasses

        from airflow_mlops.core.storage import split_conn_id

        changes: dict[str, Any] = {}
        for field in ("dataset_uri", "checkpoint_uri"):
            value = getattr(spec, field)
            plain, conn_id = split_conn_id(value) if value else (value, None)
            if conn_id is not None:
                changes[field] = plain
                self.log.info(
                    "%s names the Airflow connection %r; the pod reads %s with its own credentials",
                    field, conn_id, plain,
                )  # fmt: skip
        return dataclasses.replace(spec, **changes) if changes else spec

    def _resolve_kubernetes_conn_id(self) -> None:
        if not self.kubernetes_conn_id:
            from airflow_mlops.settings import get_settings

            self.kubernetes_conn_id = get_settings().kubernetes_conn_id

    def _user_env(self) -> list[k8s.V1EnvVar]:
        from kubernetes.client import models as k8s

        env = self.env_vars
        if isinstance(env, dict):
            return [k8s.V1EnvVar(name=str(k), value=str(v)) for k, v in env.items()]
        return list(env or [])

    def _training_env(self, identity: AirflowIdentity, hook: MlflowHook) -> list[k8s.V1EnvVar]:
        from kubernetes.client import models as k8s

        public = hook.public_env()
        if self.pod_mlflow_tracking_uri:
            public["MLFLOW_TRACKING_URI"] = self.pod_mlflow_tracking_uri
        literal = {
            **public,
            **self.identity_env(identity),
            "HOME": "/tmp",  # caches (torch, matplotlib) on the writable emptyDir
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env = [k8s.V1EnvVar(name=k, value=v) for k, v in literal.items()]
        env += self._secret_env(hook)
        taken = {e.name for e in env}
        clash = sorted(e.name for e in self._user_env() if e.name in taken)
        if clash:
            raise MlopsConfigError(
                f"task {self.task_id!r}: env_vars set {clash}, which KubernetesTrainModelOperator sets itself "
                "from the MLflow connection and the task identity. Remove them from env_vars (use "
                "pod_mlflow_tracking_uri for a cluster-internal MLflow URL)."
            )
        return env

    def _secret_env(self, hook: MlflowHook) -> list[k8s.V1EnvVar]:
        from kubernetes.client import models as k8s

        secret_keys = sorted(hook.secret_env())
        if secret_keys and not self.mlflow_secret_name:
            raise ConnectionConfigError(
                f"task {self.task_id!r}: MLflow connection {hook.mlflow_conn_id!r} has credentials, and "
                "KubernetesTrainModelOperator never copies credentials into a pod spec. Create a Kubernetes "
                f"Secret in the pod's namespace with key(s) {secret_keys} (kubectl create secret generic "
                f"mlflow-credentials {' '.join(f'--from-literal={k}=...' for k in secret_keys)}) and pass "
                "mlflow_secret_name='mlflow-credentials'."
            )
        if not self.mlflow_secret_name:
            return []
        # With credentials in the connection the Secret must hold the same kind; without, whatever it holds.
        keys, optional = (secret_keys, False) if secret_keys else (list(SECRET_KEYS), True)
        return [
            k8s.V1EnvVar(
                name=key,
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(
                        name=self.mlflow_secret_name, key=key, optional=optional
                    )
                ),
            )
            for key in keys
        ]

    # ------------------------------------------------------------------ outcome
    def _run_pod(self, pod_ref: k8s.V1Pod | None, step: Any, *args: Any) -> None:
        """Run a KPO step; turn any failure into one TrainingFailed naming the pod, the reason and its last logs."""
        from airflow.sdk.exceptions import TaskDeferred

        self._diagnosis = None
        try:
            step(*args)
        except (TaskDeferred, MlopsError):
            raise
        except Exception as err:
            diagnosis = self._diagnosis or self._diagnose(self.pod or pod_ref, None)
            raise (diagnosis or TrainingFailed(f"training pod failed: {type(err).__name__}: {err}")) from err

    def post_complete_action(
        self,
        *,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        context: Context,
        result: dict[str, Any] | None,
        **kwargs: Any,
    ) -> None:
        """Read why the pod failed while it still exists, then let KPO clean up as configured."""
        self._diagnosis = self._diagnose(pod, remote_pod)
        super().post_complete_action(pod=pod, remote_pod=remote_pod, context=context, result=result, **kwargs)

    def _diagnose(self, pod: k8s.V1Pod | None, remote_pod: k8s.V1Pod | None) -> Exception | None:
        """One clear error explaining why a pod failed (None when it succeeded or cannot be read)."""
        message = self._explain(pod, remote_pod)
        return TrainingFailed(message) if isinstance(message, str) else message

    def _explain(self, pod: k8s.V1Pod | None, remote_pod: k8s.V1Pod | None) -> str | Exception | None:
        """Read the pod as it is now (it may be gone) and explain its end: :func:`explain_pod_end`."""
        from kubernetes.client.exceptions import ApiException

        if pod is None or pod.metadata is None or not pod.metadata.name:
            return None
        try:
            current = self.pod_manager.read_pod(pod)
        except ApiException as err:
            if err.status != 404:
                return None
            current = None  # deleted: what the last look at it saw is all there is
        except Exception:  # noqa: BLE001 - diagnosis is best effort: fall back to the pod seen last
            current = remote_pod
        else:
            remote_pod = None
        failure = explain_pod_end(
            pod,
            current,
            last_seen=remote_pod,
            pod_setup=PodSetup(
                task_id=self.task_id,
                container=self.base_container_name,
                image=self.image,
                memory_limit=self.memory_limit,
                gpu_count=self.gpu_count,
                gpu_resource=self.gpu_resource,
                node_selector=self.node_selector,
                schedule_timeout_seconds=self.schedule_timeout_seconds,
                mlflow_secret_name=self.mlflow_secret_name,
            ),
            log_tail=lambda: self._log_tail(current),
            warning_events=lambda: self._warning_events(pod),
        )
        if failure is None:
            return None
        if failure.kind == "exit":
            return self.training_error(failure.exit_code, list(failure.log_lines), failure.where)
        return failure.message

    def _log_tail(self, pod: k8s.V1Pod) -> str:
        """The container's last lines (its termination message holds them too once the pod is gone)."""
        try:
            text = self.client.read_namespaced_pod_log(
                name=pod.metadata.name,
                namespace=pod.metadata.namespace,
                container=self.base_container_name,
                tail_lines=LOG_TAIL_LINES,
            )
        except Exception:  # noqa: BLE001 - diagnosis is best effort: a pod whose logs are gone adds no tail
            return ""
        return text if isinstance(text, str) else ""

    def _warning_events(self, pod: k8s.V1Pod) -> str:
        try:
            events = self.pod_manager.read_pod_events(pod).items
        except Exception:  # noqa: BLE001 - diagnosis is best effort: no events readable, none quoted
            return ""
        return " ".join(f"{e.reason}: {e.message}" for e in events if e.type == "Warning")

    def _publish_result(
        self, context: Context, spec: TrainingSpec, identity: AirflowIdentity, hook: MlflowHook
    ) -> dict[str, Any]:
        summary = self.resolve_training_result(context, hook, spec, self._pod_identity(identity))
        # KPO's own do_xcom_push means "read /airflow/xcom/return.json through a sidecar"; the result comes from
        # MLflow instead, so it is pushed here, the way KPO pushes on its failure path.
        self._push_xcom_with_fan_out(context["ti"], summary)
        return summary

    def _pod_identity(self, identity: AirflowIdentity) -> AirflowIdentity:
        """The identity the pod was started with: a retry that reattached to a running pod keeps its try."""
        from dataclasses import replace

        labels = (self.pod.metadata.labels if self.pod is not None and self.pod.metadata else None) or {}
        try_label = labels.get("try_number")
        if try_label and try_label.isdigit() and int(try_label) != identity.try_number:
            self.log.info("Reattached to the pod of try %s; looking up that try's MLflow run", try_label)
            return replace(identity, try_number=int(try_label))
        return identity
