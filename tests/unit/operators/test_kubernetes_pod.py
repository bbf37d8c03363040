"""The pure pod functions: the spec arguments and the explanation of a pod's end, from pod objects alone."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import models as k8s

from airflow_mlops.operators.kubernetes_pod import PodSetup, explain_pod_end, pod_arguments

SETUP = PodSetup(task_id="train", container="base", image="trainer:1", memory_limit="2Gi", gpu_count=1)


def _pod(
    phase: str = "Failed", *, terminated: Any = None, waiting: Any = None, conditions: Any = None
) -> Any:
    state = k8s.V1ContainerState(terminated=terminated, waiting=waiting)
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="p", namespace="ml"),
        status=k8s.V1PodStatus(
            phase=phase,
            conditions=conditions,
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base", state=state, image="i", image_id="", ready=False, restart_count=0
                )
            ],
        ),
    )


def _explain(current: Any, *, last_seen: Any = None, tail: str = "", events: str = "") -> Any:
    return explain_pod_end(
        _pod(),
        current,
        last_seen=last_seen,
        pod_setup=SETUP,
        log_tail=lambda: tail,
        warning_events=lambda: events,
    )


def test_each_way_a_pod_ends_gets_its_own_explanation():
    assert _explain(_pod("Succeeded")) is None
    oom = _explain(
        _pod(terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")), tail="a\nb"
    )
    assert oom.kind == "oom" and "OOMKilled (exit code 137)" in oom.message and "of 2Gi" in oom.message
    assert oom.message.endswith("Last log lines of the container:\n  a\n  b")
    code = _explain(
        _pod(terminated=k8s.V1ContainerStateTerminated(exit_code=3, reason="Error")), tail="x\n\ny"
    )
    assert (code.kind, code.exit_code, code.log_lines, code.where) == (
        "exit",
        3,
        ("x", "y"),
        "pod ml/p (Error)",
    )
    unscheduled = _explain(
        _pod(
            "Pending",
            conditions=[k8s.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable")],
        ),
        events="FailedScheduling: 0/3 nodes have nvidia.com/gpu.",
    )
    assert unscheduled.kind == "unschedulable" and "0/3 nodes have nvidia.com/gpu." in unscheduled.message
    assert "offers 1 x nvidia.com/gpu" in unscheduled.message
    pulling = _explain(
        _pod("Pending", waiting=k8s.V1ContainerStateWaiting(reason="ErrImagePull", message="nope"))
    )
    assert (
        pulling.kind == "not-started"
        and "ErrImagePull: nope" in pulling.message
        and "'trainer:1'" in pulling.message
    )


def test_a_pod_that_is_gone_is_explained_from_its_last_termination_message():
    last = _pod(terminated=k8s.V1ContainerStateTerminated(exit_code=1, message="epoch 3/10"))
    gone = _explain(None, last_seen=last)
    assert (
        gone.kind == "deleted" and "was deleted while it ran" in gone.message and "epoch 3/10" in gone.message
    )


def test_pod_arguments_keep_the_callers_settings_and_add_the_gpu_bits():
    kwargs: dict[str, Any] = {"task_id": "t", "labels": {"team": "ml"}, "node_selector": {"zone": "a"}}
    pod_arguments(
        kwargs,
        gpu_count=2,
        gpu_resource="nvidia.com/gpu",
        gpu_type="A100",
        gpu_node_label="nvidia.com/gpu.product",
        gpu_toleration=True,
        cpu="4",
        memory="16Gi",
        memory_limit=None,
        read_only_root_filesystem=True,
    )
    assert kwargs["labels"]["team"] == "ml" and kwargs["node_selector"] == {
        "zone": "a",
        "nvidia.com/gpu.product": "A100",
    }
    assert kwargs["container_resources"].limits == {"memory": "16Gi", "nvidia.com/gpu": "2"}
    assert {v.name for v in kwargs["volumes"]} == {"mlops-tmp", "mlops-dshm"}
    with pytest.raises(Exception, match="gpu_type='A100' needs gpu_count >= 1"):
        pod_arguments(
            {"task_id": "t"}, gpu_count=0, gpu_resource="nvidia.com/gpu", gpu_type="A100",
            gpu_node_label="l", gpu_toleration=True, cpu=None, memory=None, memory_limit=None,
            read_only_root_filesystem=True,
        )  # fmt: skip
