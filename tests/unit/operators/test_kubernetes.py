"""KubernetesTrainModelOperator without a cluster: the pod it would create, argument checks, secret handling."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.exceptions import ConnectionConfigError, MlopsConfigError, TrainingSpecError

TOKEN = "unit-canary-token-31d7"
IDENTITY = AirflowIdentity(dag_id="d", run_id="r", task_id="train", try_number=3, map_index=-1)
SPEC = {
    "experiment": "churn",
    "dataset_uri": "/data/churn.parquet",
    "target": "churned",
    "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
}


@pytest.fixture(autouse=True)
def _connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_TOKEN",
        json.dumps({"conn_type": "mlflow", "host": "http://mlflow.example:5000", "extra": {"token": TOKEN}}),
    )
    for conn_id in ("MLFLOW_PLAIN", "MLFLOW_DEFAULT"):  # the default connection is a plain one
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id}", json.dumps({"conn_type": "mlflow", "host": "http://mlflow:5000"})
        )
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": {}})
    )


def _op(**kwargs: Any) -> Any:
    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

    kwargs.setdefault("task_id", "train")
    kwargs.setdefault("training", SPEC)
    kwargs.setdefault("namespace", "ml")
    return KubernetesTrainModelOperator(**kwargs)


def _pod(op: Any) -> dict[str, Any]:
    """The pod manifest KPO would send, as the API server would receive it (camelCase JSON)."""
    from kubernetes.client import ApiClient

    op.prepare_pod(op.load_spec(IDENTITY), IDENTITY, op.mlflow_hook)
    pod = op.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def test_gpu_pod_spec_has_resources_toleration_selector_and_security() -> None:
    op = _op(
        gpu_count=2,
        gpu_type="NVIDIA-A100-SXM4-80GB",
        cpu="8",
        memory="32Gi",
        memory_limit="40Gi",
        mlflow_conn_id="mlflow_token",
        mlflow_secret_name="mlflow-creds",
        image="registry.example/trainer:1.2",
        node_selector={"pool": "gpu"},
    )
    pod = _pod(op)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "registry.example/trainer:1.2"
    assert container["command"] == ["python"]
    assert container["args"][:3] == ["-m", "airflow_mlops.training", "--spec"]
    assert json.loads(container["args"][3])["experiment"] == "churn"
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "40Gi", "nvidia.com/gpu": "2"},
    }
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 50000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "airflow-mlops-trainer"

    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.example:5000"
    assert json.loads(env["MLOPS_AIRFLOW_IDENTITY"]["value"]) == IDENTITY.to_dict()
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-creds",
        "key": "MLFLOW_TRACKING_TOKEN",
        "optional": False,
    }
    assert "value" not in env["MLFLOW_TRACKING_TOKEN"]
    assert TOKEN not in json.dumps(pod)


def test_cpu_pod_has_no_gpu_bits_and_can_keep_a_writable_root() -> None:
    assert _op(memory="{{ params.memory }}", cpu="1.5").memory_limit == "{{ params.memory }}"  # templated
    pod = _pod(_op(cpu="1", read_only_root_filesystem=False))
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["resources"] == {"requests": {"cpu": "1"}}
    assert not spec.get("tolerations") and not spec.get("nodeSelector")
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert not container.get("volumeMounts")


def test_image_defaults_to_the_training_image_setting() -> None:
    from airflow_mlops.settings import get_settings

    (container,) = _pod(_op())["spec"]["containers"]
    assert container["image"] == get_settings().training_image


def test_user_security_context_and_env_pass_through() -> None:
    from kubernetes.client import models as k8s

    op = _op(
        security_context=k8s.V1PodSecurityContext(run_as_user=4242, run_as_non_root=True),
        env_vars={"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"},
    )
    pod = _pod(op)
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 4242}
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60" and "MLFLOW_TRACKING_URI" in env


def test_credentials_without_a_secret_name_are_refused_before_any_pod() -> None:
    with pytest.raises(ConnectionConfigError, match="never copies credentials into a pod spec") as err:
        _pod(_op(mlflow_conn_id="mlflow_token"))
    assert "MLFLOW_TRACKING_TOKEN" in str(err.value) and "mlflow_secret_name" in str(err.value)
    assert TOKEN not in str(err.value)


def test_secret_name_without_connection_credentials_references_optional_keys() -> None:
    pod = _pod(_op(mlflow_secret_name="mlflow-creds"))
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in pod["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert set(refs) == {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert all(ref["optional"] is True and ref["name"] == "mlflow-creds" for ref in refs.values())


def test_env_vars_may_not_override_what_the_operator_sets() -> None:
    with pytest.raises(MlopsConfigError, match=r"MLFLOW_TRACKING_URI.*pod_mlflow_tracking_uri"):
        _pod(_op(env_vars={"MLFLOW_TRACKING_URI": "http://elsewhere"}))


def test_pod_tracking_uri_override() -> None:
    pod = _pod(_op(pod_mlflow_tracking_uri="http://mlflow.mlflow.svc:5000"))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_count": -1}, "gpu_count=-1 must be a whole number"),
        ({"gpu_count": 1.5}, "gpu_count=1.5 must be a whole number"),
        ({"gpu_type": "NVIDIA-L4"}, "needs gpu_count >= 1"),
        ({"gpu_count": 1, "gpu_resource": ""}, "gpu_resource must name"),
        ({"memory": "16GB"}, "memory='16GB' is not a Kubernetes quantity; write it like '16Gi'"),
        ({"cpu": "two"}, "cpu='two' is not a Kubernetes quantity"),
        ({"cpu": "1", "container_resources": object()}, "either container_resources or"),
        ({"do_xcom_push": True}, "do_xcom_push=True is not supported"),
        ({"arguments": ["--epochs", "3"]}, "arguments are set by the operator"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MlopsConfigError, match=message):
        _op(**kwargs)


def test_invalid_spec_is_rejected_by_load_spec() -> None:
    op = _op(training={**SPEC, "model": {"family": "sklearn", "estimator": "sklearn.linear_model.Nope"}})
    with pytest.raises(TrainingSpecError, match="sklearn.linear_model.Nope"):
        op.load_spec(IDENTITY)
    with pytest.raises(TrainingSpecError, match="validation_fraction"):
        _op(training={**SPEC, "validation_fraction": 1.5}).load_spec(IDENTITY)


def test_template_fields_extend_kpo() -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

    fields = KubernetesTrainModelOperator.template_fields
    assert set(KubernetesPodOperator.template_fields) <= set(fields)
    assert {"training", "mlflow_conn_id", "mlflow_secret_name", "pod_mlflow_tracking_uri"} <= set(fields)


def test_training_only_dags_never_import_the_kubernetes_provider() -> None:
    """operators/training.py must stay free of the ~3 s Kubernetes import (this module is the only one)."""
    code = (
        "import importlib.util, sys\n"
        "if importlib.util.find_spec('airflow_mlops.operators.training') is None: sys.exit(0)\n"
        "import airflow_mlops.operators.training\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio')"
        " or m.startswith('airflow.providers.cncf.kubernetes.operators'))\n"
        "sys.exit(f'imported {bad[:5]}' if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:] or result.stdout[-2000:]
