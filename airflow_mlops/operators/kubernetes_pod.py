"""The pod of a training task, as plain functions: its spec arguments and the explanation of how it ended.

:func:`pod_arguments` turns the operator's resource surface (GPU count and type, CPU, memory, a read-only root)
into ``KubernetesPodOperator`` arguments: resources, node selector, toleration, security contexts, volumes.
:func:`explain_pod_end` reads a finished pod object (and, lazily, its log tail and warning events) and says in
one message why it did not succeed: deleted, OOMKilled, exited with a code, never scheduled, never started.
Neither calls the Kubernetes API itself or touches ``KubernetesPodOperator``; the operator passes in what it
read through KPO's public ``pod_manager`` and client. Imported only by :mod:`airflow_mlops.operators.kubernetes`
(the ``kubernetes`` client models are imported inside the functions that build them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from kubernetes.client import models as k8s

INTERPRETER = ["python"]
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_LABEL = "nvidia.com/gpu.product"
DEFAULT_LABELS = {
    "app.kubernetes.io/name": "airflow-mlops-trainer",
    "app.kubernetes.io/component": "training",
}
NON_ROOT_UID = 50000  # the trainer image's USER (docker/trainer.Dockerfile)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
LOG_TAIL_LINES = 20


# ---------------------------------------------------------------------- the pod spec
def pod_arguments(
    kwargs: dict[str, Any],
    *,
    gpu_count: Any,
    gpu_resource: str,
    gpu_type: str | None,
    gpu_node_label: str,
    gpu_toleration: bool,
    cpu: str | None,
    memory: str | None,
    memory_limit: str | None,
    read_only_root_filesystem: bool,
) -> dict[str, Any]:
    """
    Check the resource surface and fill ``kwargs`` (the ``KubernetesPodOperator`` arguments, in place) with the
    pod settings it implies; the caller's own ``labels``, ``node_selector``, ``tolerations``, ``volumes`` and
    security contexts are kept and extended. Returns ``kwargs``.
    """
    from kubernetes.client import models as k8s

    task_id = kwargs.get("task_id", "?")
    check_surface(task_id, gpu_count, gpu_resource, gpu_type, cpu, memory, memory_limit, kwargs)
    kwargs.setdefault("multiple_outputs", True)  # so ``train.output["run_id"]`` works downstream
    kwargs.setdefault("cmds", list(INTERPRETER))
    kwargs.setdefault("termination_message_policy", "FallbackToLogsOnError")
    kwargs.setdefault("log_pod_spec_on_failure", False)
    kwargs["labels"] = {**DEFAULT_LABELS, **(kwargs.get("labels") or {})}
    if gpu_count or cpu or memory or memory_limit:
        kwargs["container_resources"] = resources(gpu_count, gpu_resource, cpu, memory, memory_limit)
    if gpu_type:
        kwargs["node_selector"] = {**(kwargs.get("node_selector") or {}), gpu_node_label: gpu_type}
    if gpu_count and gpu_toleration:
        toleration = k8s.V1Toleration(key=gpu_resource, operator="Exists", effect="NoSchedule")
        kwargs["tolerations"] = [*(kwargs.get("tolerations") or []), toleration]
    if kwargs.get("security_context") is None:
        kwargs["security_context"] = k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=NON_ROOT_UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        )
    if kwargs.get("container_security_context") is None:
        kwargs["container_security_context"] = k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=read_only_root_filesystem,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        )
    volumes = list(kwargs.get("volumes") or [])
    mounts = list(kwargs.get("volume_mounts") or [])
    if read_only_root_filesystem:
        volumes.append(k8s.V1Volume(name="mlops-tmp", empty_dir=k8s.V1EmptyDirVolumeSource()))
        mounts.append(k8s.V1VolumeMount(name="mlops-tmp", mount_path="/tmp"))
    if gpu_count:  # PyTorch shares tensors between processes through /dev/shm (64 MiB by default)
        volumes.append(k8s.V1Volume(name="mlops-dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory")))
        mounts.append(k8s.V1VolumeMount(name="mlops-dshm", mount_path="/dev/shm"))
    kwargs["volumes"], kwargs["volume_mounts"] = volumes, mounts
    return kwargs


def check_surface(
    task_id: str,
    gpu_count: Any,
    gpu_resource: str,
    gpu_type: str | None,
    cpu: str | None,
    memory: str | None,
    memory_limit: str | None,
    kwargs: dict[str, Any],
) -> None:
    where = f"KubernetesTrainModelOperator {task_id!r}"
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 0:
        raise MlopsConfigError(f"{where}: gpu_count={gpu_count!r} must be a whole number >= 0.")
    if not gpu_resource or not isinstance(gpu_resource, str):
        raise MlopsConfigError(f"{where}: gpu_resource must name the GPU resource, e.g. 'nvidia.com/gpu'.")
    if gpu_type and not gpu_count:
        raise MlopsConfigError(f"{where}: gpu_type={gpu_type!r} needs gpu_count >= 1.")
    for name, value in (("cpu", cpu), ("memory", memory), ("memory_limit", memory_limit)):
        if value is not None and "{{" not in str(value) and not _QUANTITY.match(str(value)):
            example = "'4' or '500m'" if name == "cpu" else "'16Gi' or '512Mi'"
            raise MlopsConfigError(
                f"{where}: {name}={value!r} is not a Kubernetes quantity; write it like {example}."
            )
    if kwargs.get("container_resources") is not None and (gpu_count or cpu or memory or memory_limit):
        raise MlopsConfigError(
            f"{where}: give either container_resources or gpu_count/cpu/memory/memory_limit, not both."
        )
    if kwargs.get("do_xcom_push"):
        raise MlopsConfigError(
            f"{where}: do_xcom_push=True is not supported: the result comes from MLflow, and the return value "
            "is pushed to XCom without KPO's sidecar. Remove do_xcom_push."
        )
    if kwargs.get("arguments"):
        raise MlopsConfigError(
            f"{where}: arguments are set by the operator (--spec <training spec>); put settings in `training`."
        )


def resources(
    gpu_count: int, gpu_resource: str, cpu: str | None, memory: str | None, memory_limit: str | None
) -> k8s.V1ResourceRequirements:
    from kubernetes.client import models as k8s

    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpu:
        requests["cpu"] = str(cpu)
    if memory:
        requests["memory"] = str(memory)
    if memory_limit or memory:
        limits["memory"] = str(memory_limit or memory)
    if gpu_count:  # extended resources: requests must equal limits
        requests[gpu_resource] = limits[gpu_resource] = str(gpu_count)
    return k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None)


# ---------------------------------------------------------------------- how the pod ended
@dataclass(frozen=True)
class PodSetup:
    """What the operator asked of the pod: the words of the explanation (limits, selectors, image, secret)."""

    task_id: str
    container: str
    image: str | None = None
    memory_limit: str | None = None
    gpu_count: int = 0
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    node_selector: Mapping[str, str] | None = None
    schedule_timeout_seconds: int | None = None
    mlflow_secret_name: str | None = None


@dataclass(frozen=True)
class PodEnd:
    """Why a pod did not succeed. ``kind`` ``exit`` carries the exit code and last lines for the trainer's error."""

    kind: str  # "deleted" | "oom" | "exit" | "unschedulable" | "not-started" | "phase"
    message: str
    where: str = ""
    exit_code: int | None = None
    log_lines: tuple[str, ...] = ()


def explain_pod_end(
    pod: Any,
    current: Any,
    *,
    last_seen: Any = None,
    pod_setup: PodSetup,
    log_tail: Callable[[], str],
    warning_events: Callable[[], str],
) -> PodEnd | None:
    """
    Explain the end of ``pod`` from ``current`` (the pod read now; None when it no longer exists, then
    ``last_seen`` is the last view of it). None when it succeeded or there is nothing to read.
    """
    name = f"{pod.metadata.namespace}/{pod.metadata.name}"
    where = f"training pod {name} (task {pod_setup.task_id!r})"
    if current is None:
        return PodEnd("deleted", _deleted(where, _termination_message(last_seen, pod_setup.container)), where)
    status = current.status
    if status is None or status.phase == "Succeeded":
        return None
    if current.metadata is not None and current.metadata.deletion_timestamp is not None:
        return PodEnd("deleted", _deleted(where, log_tail()), where)
    terminated = container_state(current, pod_setup.container, "terminated")
    if terminated is not None:
        reason, code = terminated.reason or "Error", terminated.exit_code
        tail = log_tail() or (terminated.message or "")
        if reason == "OOMKilled":
            limit = f" of {pod_setup.memory_limit}" if pod_setup.memory_limit else ""
            message = (
                f"{where} was OOMKilled (exit code {code}): the trainer used more than its memory limit"
                f"{limit}. Raise memory / memory_limit, or lower the batch size or the data size."
                + _tail_block(tail)
            )
            return PodEnd("oom", message, where, code)
        lines = tuple(line for line in tail.splitlines() if line.strip())
        return PodEnd("exit", f"{where} ended ({reason})", f"pod {name} ({reason})", code, lines)
    scheduled = next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)
    if scheduled is not None and scheduled.status != "True":
        why = scheduled.message or warning_events() or scheduled.reason or "no reason given"
        wanted = (
            f"{pod_setup.gpu_count} x {pod_setup.gpu_resource}"
            if pod_setup.gpu_count
            else "its CPU/memory requests"
        )
        selector = f" on nodes labelled {pod_setup.node_selector}" if pod_setup.node_selector else ""
        message = (
            f"{where} was never scheduled within {pod_setup.schedule_timeout_seconds}s: {why} Check that a node "
            f"pool offers {wanted}{selector} and that the cluster autoscaler can add one, or raise "
            "schedule_timeout_seconds."
        )
        return PodEnd("unschedulable", message, where)
    waiting = container_state(current, pod_setup.container, "waiting")
    if waiting is not None:
        message = (
            f"{where} never started its container: {waiting.reason}: {waiting.message or ''} "
            f"(phase {status.phase}). Check the image {pod_setup.image!r}, its pull secret and the Secret "
            f"{pod_setup.mlflow_secret_name!r} in namespace {pod.metadata.namespace!r}."
        ).replace("  ", " ")
        return PodEnd("not-started", message, where)
    events = warning_events()
    message = f"{where} ended in phase {status.phase} ({status.reason or 'no reason'})." + (
        f" Events: {events}" if events else ""
    )
    return PodEnd("phase", message, where)


def container_state(pod: k8s.V1Pod, container: str, state: str) -> Any:
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.name == container and status.state is not None:
            return getattr(status.state, state, None)
    return None


def _termination_message(pod: k8s.V1Pod | None, container: str) -> str:
    if pod is None:
        return ""
    terminated = container_state(pod, container, "terminated")
    return (terminated.message or "") if terminated is not None else ""


def _tail_block(text: str) -> str:
    lines = [line for line in (text or "").rstrip().splitlines() if line.strip()][-LOG_TAIL_LINES:]
    if not lines:
        return ""
    return "\nLast log lines of the container:\n" + "\n".join(f"  {line}" for line in lines)


def _deleted(where: str, tail: str) -> str:
    return (
        f"{where} was deleted while it ran (node drained, spot capacity reclaimed, or deleted by someone) "
        "before its container finished. A retry starts a new pod; with a checkpoint_uri in the spec the MLP "
        "resumes from its last completed epoch." + _tail_block(tail)
    )
