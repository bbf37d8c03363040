"""KubernetesTrainModelOperator in real DAG runs against the Kubernetes API emulation and the real MLflow server.

The unmodified KubernetesPodOperator machinery talks HTTP to ``tests.helpers.k8s_emulator``, which runs the pod's
container command (the real training entrypoint) as a local process. Each fault the emulator can inject gets a
test that checks the task's error names the reason, and that no pod object or pod process is left behind.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.airflow import run_dag, task_log, try_numbers
from tests.helpers.k8s_emulator import Fault, K8sEmulator
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "ml"
SECRET_NAME = "mlflow-credentials"
CANARY_TOKEN = "canary-k8s-token-7f3a9c"
START = datetime(2026, 1, 1)


@pytest.fixture
def k8s(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An emulated cluster exposed as the ``kubernetes_default`` connection; checks nothing is left running."""
    with K8sEmulator(namespace=NAMESPACE) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", emulator.connection_json())
        yield emulator
        assert emulator.wait_until_empty(), (
            f"left behind: pods {emulator.live_pods()}, process groups {emulator.live_process_groups()}"
        )
    assert not emulator.live_process_groups()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small binary classification parquet file."""
    import pandas as pd
    from sklearn.datasets import make_classification

    features, labels = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=7)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame["label"] = labels
    path = tmp_path_factory.mktemp("k8s-data") / "train.parquet"
    frame.to_parquet(path, index=False)
    return path


def _spec(dataset: Path, experiment: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "experiment": experiment,
        "dataset_uri": str(dataset),
        "target": "label",
        "model": {
            "family": "sklearn",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 200},
        },
        "metrics": ["accuracy", "roc_auc"],
    }
    spec.update(overrides)
    return spec


def _train_dag(dag_id: str, training: dict[str, Any], **op_kwargs: Any) -> Any:
    from airflow.sdk import DAG

    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

    op_kwargs.setdefault("startup_check_interval_seconds", 1)
    op_kwargs.setdefault("poll_interval", 0.5)
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        KubernetesTrainModelOperator(task_id="train", training=training, namespace=NAMESPACE, **op_kwargs)
    return dag


def _container(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["spec"]["containers"] if c["name"] == "base")


def _rendered_fields(dag_run: Any, task_id: str) -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(RTIF.rendered_fields).where(
                RTIF.dag_id == dag_run.dag_id, RTIF.run_id == dag_run.run_id, RTIF.task_id == task_id
            )
        ).first()
    assert row is not None, "no rendered fields were stored"
    return json.dumps(row[0], default=str)


def _task_output(capfd: pytest.CaptureFixture[str], dag_id: str, dag_run: Any, task_id: str) -> str:
    """What the task logged: dag.test() prints task logs to the console (unredacted), plus any log file."""
    out, err = capfd.readouterr()
    return out + err + task_log(dag_id, dag_run.run_id, task_id)


def _error(dag_run: Any, task_id: str = "train") -> str:
    return dag_run.task_errors.get(task_id, "")


# ---------------------------------------------------------------------- the emulation itself
def test_unmodified_kpo_runs_a_pod_in_the_emulation(
    airflow_db: Path, k8s: K8sEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    script = (
        "import sys\nfor i in range(3): print('line', i, flush=True)\nprint('to-stderr', file=sys.stderr)"
    )
    with DAG("k8s_emulator_plain", schedule=None, start_date=START, catchup=False) as dag:
        KubernetesPodOperator(
            task_id="hello",
            name="hello",
            image="python:3.11-slim",
            cmds=["python", "-c", script],
            env_vars={"GREETING": "hi"},
            startup_check_interval_seconds=1,
        )
    dag_run = run_dag(dag)

    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in k8s.requests]
    assert calls[0][0] == "GET" and "labelSelector" in k8s.requests[0].query  # find an existing pod first
    assert [m for m, _ in calls].count("POST") == 1
    log_call = next(r for r in k8s.requests if r.path.endswith("/log"))
    assert log_call.q("follow") == "True" and log_call.q("timestamps") == "True"
    assert calls[-1][0] == "DELETE"
    pod = k8s.all_pods[0]
    assert pod.status["phase"] == "Succeeded"
    assert pod.status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert "GREETING" in pod.env_keys
    log = _task_output(capfd, "k8s_emulator_plain", dag_run, "hello")
    assert "[base] line 2" in log and "[base] to-stderr" in log


def test_emulator_enforces_memory_limits_like_the_kernel(airflow_db: Path, k8s: K8sEmulator) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG
    from kubernetes.client import models as k8s_models

    hog = "import time\nx = bytearray(200 * 2**20)\nx[::4096] = b'1' * len(x[::4096])\ntime.sleep(30)"
    with DAG("k8s_emulator_oom", schedule=None, start_date=START, catchup=False) as dag:
        KubernetesPodOperator(
            task_id="hog",
            name="hog",
            image="python:3.11-slim",
            cmds=["python", "-c", hog],
            container_resources=k8s_models.V1ResourceRequirements(limits={"memory": "100Mi"}),
            startup_check_interval_seconds=1,
        )
    dag_run = run_dag(dag, expect="failed")
    terminated = k8s.all_pods[0].status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    assert "returned a failure" in _error(dag_run, "hog")


# ---------------------------------------------------------------------- the training operator
def test_gpu_training_pod_logs_run_to_mlflow_and_keeps_the_secret_out(
    airflow_db: Path,
    mlflow_server: Any,
    k8s: K8sEmulator,
    dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    from airflow_mlops.core.tags import TAG_DATASET_URI, TAG_TASK_ID, TAG_TI_KEY, TAG_TRY_NUMBER

    # A connection with a token: only a secretKeyRef to it may reach the pod (the server ignores the token).
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_K8S", mlflow_server.connection_json(extra={"token": CANARY_TOKEN})
    )
    k8s.add_secret(NAMESPACE, SECRET_NAME, {"MLFLOW_TRACKING_TOKEN": CANARY_TOKEN})
    dag = _train_dag(
        "k8s_train_gpu",
        _spec(dataset, "k8s-gpu", tags={"team": "{{ dag.dag_id }}"}),
        gpu_count=1,
        gpu_type="NVIDIA-L4",
        cpu="2",
        memory="2Gi",
        mlflow_conn_id="mlflow_k8s",
        mlflow_secret_name=SECRET_NAME,
    )
    dag_run = run_dag(dag)

    result = xcom(dag_run, "train")
    assert set(result) == {
        "run_id", "experiment_id", "model_uri", "metrics", "dataset_uri", "dataset_fingerprint", "run_url",
    }  # fmt: skip
    assert result["metrics"]["val_accuracy"] > 0.6 and result["run_url"].startswith(mlflow_server.url)
    run = MlflowClient(mlflow_server.url).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_TASK_ID] == "train" and run.data.tags[TAG_TRY_NUMBER] == "1"
    assert run.data.tags[TAG_TI_KEY] == f"k8s_train_gpu/{dag_run.run_id}/train/-1"
    assert run.data.tags[TAG_DATASET_URI] == str(dataset) and run.data.tags["team"] == "k8s_train_gpu"
    assert result["model_uri"].startswith("models:/")
    assert result["run_url"] in str(xcom(dag_run, "train", "mlops_training_run_url"))  # the extra link

    (body,) = k8s.created_pod_bodies()
    spec, container = body["spec"], _container(body)
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 50000
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "mlops-tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_TOKEN"] == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": SECRET_NAME, "key": "MLFLOW_TRACKING_TOKEN", "optional": False}
        },
    }
    assert env["MLFLOW_TRACKING_URI"]["value"] == mlflow_server.url
    assert json.loads(env["MLOPS_AIRFLOW_IDENTITY"]["value"])["try_number"] == 1
    assert "MLFLOW_TRACKING_TOKEN" in k8s.all_pods[0].env_keys  # the pod did get it, from the Secret

    # The secret is nowhere: not in any request the cluster received, the task log, the rendered fields, XCom.
    assert CANARY_TOKEN not in json.dumps([r.body for r in k8s.requests], default=str)
    output = _task_output(capfd, "k8s_train_gpu", dag_run, "train")
    assert "[base]" in output and "MLOPS_TRAINING_RESULT" in output  # the container log reached the task log
    assert CANARY_TOKEN not in output
    assert CANARY_TOKEN not in _rendered_fields(dag_run, "train")
    assert CANARY_TOKEN not in json.dumps(result)


def test_deferrable_training_survives_a_slow_start(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    k8s.inject(Fault.slow_start(2.0))
    dag = _train_dag(
        "k8s_train_deferrable", _spec(dataset, "k8s-deferrable"), deferrable=True, memory="{{ 3 * 512 }}Mi"
    )
    dag_run = run_dag(dag)
    result = xcom(dag_run, "train")
    assert result["run_id"] and result["model_uri"].startswith("models:/")
    assert any(e["reason"] == "Pulling" for e in k8s.events)
    (body,) = k8s.created_pod_bodies()
    assert "tolerations" not in body["spec"] or not body["spec"]["tolerations"]  # CPU pod: no GPU toleration
    resources = _container(body)["resources"]
    assert resources == {"requests": {"memory": "1536Mi"}, "limits": {"memory": "1536Mi"}}  # rendered, no GPU


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_never_scheduled_pod_fails_with_the_scheduler_reason(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path, deferrable: bool
) -> None:
    k8s.inject(Fault.unschedulable())
    dag = _train_dag(
        f"k8s_unschedulable_{deferrable}",
        _spec(dataset, "k8s-unschedulable"),
        gpu_count=2,
        schedule_timeout_seconds=3,
        deferrable=deferrable,
    )
    error = _error(run_dag(dag, expect="failed"))
    assert "TrainingFailed" in error and "was never scheduled within 3s" in error
    assert "Insufficient nvidia.com/gpu" in error and "2 x nvidia.com/gpu" in error
    assert k8s.all_pods[0].proc is None  # nothing ever ran


def test_oom_killed_pod_fails_with_reason_and_memory_limit(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    dag = _train_dag("k8s_oom", _spec(dataset, "k8s-oom"), memory="48Mi")  # the trainer needs far more
    error = _error(run_dag(dag, expect="failed"))
    assert "was OOMKilled (exit code 137)" in error and "memory limit of 48Mi" in error
    assert k8s.all_pods[0].peak_rss_bytes > 48 * 2**20


def test_injected_oom_kill_mid_run(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    k8s.inject(Fault.oom_killed(after_s=0.5))
    error = _error(run_dag(_train_dag("k8s_oom_injected", _spec(dataset, "k8s-oom")), expect="failed"))
    assert "was OOMKilled (exit code 137)" in error


def test_trainer_exit_code_and_last_log_lines_fail_the_task(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    # The spec passes the static checks, but the data has no such column: only the trainer can tell.
    dag = _train_dag("k8s_bad_target", _spec(dataset, "k8s-bad-target", target="no_such_label"))
    error = _error(run_dag(dag, expect="failed"))
    assert "TrainingSpecError: the trainer rejected the spec or data" in error and "no_such_label" in error


def test_forced_nonzero_exit(airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path) -> None:
    k8s.inject(Fault.exit(3, after_s=0.3))
    error = _error(run_dag(_train_dag("k8s_exit_3", _spec(dataset, "k8s-exit")), expect="failed"))
    assert "(Error) exited with code 3" in error and "Last output lines" in error


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_pod_deleted_mid_run(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path, deferrable: bool
) -> None:
    k8s.inject(Fault.deleted(after_s=0.5))
    dag = _train_dag(f"k8s_deleted_{deferrable}", _spec(dataset, "k8s-deleted"), deferrable=deferrable)
    error = _error(run_dag(dag, expect="failed"))
    assert "was deleted while it ran" in error


def test_invalid_spec_fails_before_any_pod_is_created(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    spec = _spec(
        dataset, "k8s-bad-spec", model={"family": "sklearn", "estimator": "sklearn.linear_model.Nope"}
    )
    error = _error(run_dag(_train_dag("k8s_bad_spec", spec), expect="failed"))
    assert "TrainingSpecError" in error and "sklearn.linear_model.Nope" in error
    assert k8s.requests == []  # the cluster was never called


def test_spot_reclaimed_pod_is_retried_and_resumes_from_its_checkpoint(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path, tmp_path: Path
) -> None:
    """The cost lever of spot GPUs: the pod dies after epoch 2, Airflow's retry resumes at epoch 3."""
    from datetime import timedelta

    from mlflow import MlflowClient

    from airflow_mlops.core.tags import TAG_RESUMED_FROM_EPOCH

    epochs = 6
    k8s.inject(Fault.deleted(after_log=f"epoch 2/{epochs}"))
    spec = _spec(
        dataset,
        "k8s-spot",
        model={"family": "torch_mlp", "params": {"hidden_layers": [16], "epochs": epochs, "patience": 10}},
        checkpoint_uri=str(tmp_path / "checkpoints" / "spot.pt"),
    )
    dag = _train_dag("k8s_spot_resume", spec, gpu_count=1, retries=1, retry_delay=timedelta(0))
    dag_run = run_dag(dag)

    assert len(k8s.created_pod_bodies()) == 2
    first, second = k8s.all_pods
    assert first.status["containerStatuses"][0]["state"]["terminated"]["exitCode"] != 0
    # The reclaim lands after epoch 2 is logged; the trainer may have checkpointed one more epoch by the time
    # the process dies, so the retry resumes from the last completed epoch k >= 2, never from scratch.
    resumed = re.search(r"Resuming from the checkpoint of epoch (\d+)", k8s.pod_logs(second.name))
    assert resumed, k8s.pod_logs(second.name)[-2000:]
    k = int(resumed.group(1))
    assert 2 <= k < epochs
    result = xcom(dag_run, "train")
    run = MlflowClient(mlflow_server.url).get_run(result["run_id"])
    assert run.data.tags[TAG_RESUMED_FROM_EPOCH] == str(k)
    history = MlflowClient(mlflow_server.url).get_metric_history(result["run_id"], "epoch_train_loss")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))  # every epoch logged exactly once


def test_missing_mlflow_secret_fails_with_the_kubelet_reason(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_K8S", mlflow_server.connection_json(extra={"token": CANARY_TOKEN})
    )
    dag = _train_dag(
        "k8s_missing_secret",
        _spec(dataset, "k8s-missing-secret"),
        mlflow_conn_id="mlflow_k8s",
        mlflow_secret_name="not-created",
        startup_timeout_seconds=2,
    )
    error = _error(run_dag(dag, expect="failed"))
    assert "never started its container: CreateContainerConfigError" in error
    assert 'secret "not-created" not found' in error
    assert k8s.all_pods[0].proc is None


def test_bad_data_fails_for_good_without_more_gpu_pods(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    """A spec the trainer rejects fails the same way on every try: retries=3 must not start three more pods."""
    from datetime import timedelta

    spec = _spec(dataset, "k8s-bad-target-retries", target="no_such_label")
    dag = _train_dag("k8s_bad_target_retries", spec, retries=3, retry_delay=timedelta(0))
    dag_run = run_dag(dag, expect="failed")
    assert "MlopsPermanentFailure" in dag_run.task_errors["train"] and "no_such_label" in _error(dag_run)
    assert len(k8s.created_pod_bodies()) == 1
    assert try_numbers(dag_run)["train"] == 1


def test_oom_killed_pod_keeps_airflow_retries(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path
) -> None:
    """An OOM kill on a spot node may not repeat: it keeps the normal retries, and the retry's pod succeeds."""
    from datetime import timedelta

    k8s.inject(Fault.oom_killed(after_s=0.3))
    dag = _train_dag(
        "k8s_oom_retries", _spec(dataset, "k8s-oom-retries"), retries=1, retry_delay=timedelta(0)
    )
    dag_run = run_dag(dag)
    assert "was OOMKilled" in _error(dag_run)  # the first try's error, recorded by the harness
    assert len(k8s.created_pod_bodies()) == 2
    assert try_numbers(dag_run)["train"] == 2


def test_templates_inside_the_spec_reach_the_pod_rendered(
    airflow_db: Path, mlflow_server: Any, k8s: K8sEmulator, dataset: Path, tmp_path: Path
) -> None:
    """The docs' ``checkpoint_uri: .../{{ run_id }}`` example: every string inside ``training`` is rendered."""
    spec = _spec(
        dataset,
        "k8s-templated",
        dataset_uri="/nowhere/replaced-by-dataset_uri.parquet",
        model={"family": "torch_mlp", "params": {"hidden_layers": [8], "epochs": 1}},
        checkpoint_uri=str(tmp_path / "ckpt" / "{{ run_id }}" / "model.pt"),
        tags={"team": "{{ params.team }}"},
    )
    dag = _train_dag(
        "k8s_templated",
        spec,
        dataset_uri=str(dataset.parent) + "/{{ params.file }}",
        hyperparameters="{{ params.overrides | tojson }}",
        params={"team": "growth", "file": dataset.name, "overrides": {"epochs": 2}},
    )
    dag_run = run_dag(dag)
    (body,) = k8s.created_pod_bodies()
    args = _container(body)["args"]
    sent = json.loads(args[args.index("--spec") + 1])
    assert sent["checkpoint_uri"] == str(tmp_path / "ckpt" / dag_run.run_id / "model.pt")
    assert sent["dataset_uri"] == str(dataset)
    assert sent["tags"]["team"] == "growth"
    assert sent["model"]["params"] == {"hidden_layers": [8], "epochs": 2}
    assert "{{" not in json.dumps(sent)
