"""``python -m airflow_mlops.training`` as a real process against the real MLflow server fixture.

Covers lineage tags and the logged models of both families, bad input exit codes, and the resume test: a
PyTorch run SIGKILLed after epoch k and started again with the same checkpoint continues at epoch k+1 in the
same MLflow run and ends with each epoch logged exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from airflow_mlops.core.lineage import AirflowIdentity, fingerprint
from airflow_mlops.core.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_RESUMED_FROM_EPOCH,
    TAG_SPEC,
    TAG_TRY_NUMBER,
)
from airflow_mlops.core.training_result import ERROR_MARKER, EXIT_BAD_INPUT, IDENTITY_ENV, find_training_run
from airflow_mlops.core.training_spec import TrainingSpec
from airflow_mlops.training.checkpoint import load_checkpoint
from tests.helpers import frames
from tests.helpers.frames import make_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]

cls_uri = frames.cls_uri  # the shared fixture


def env_for(server, identity: AirflowIdentity | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "AIRFLOW_CONN_"))}
    env.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    if identity is not None:
        env[IDENTITY_ENV] = json.dumps(identity.to_dict())
    return env


def run_entrypoint(
    server, spec: dict, identity: AirflowIdentity | None, timeout: float = 240, extra_env=None
):
    return subprocess.run(
        [sys.executable, "-m", "airflow_mlops.training", "--spec", json.dumps(spec)],
        env={**env_for(server, identity), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture
def without_torch(tmp_path):
    """Environment in which ``import torch`` fails as if the torch extra were not installed."""
    folder = tmp_path / "no-torch"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_sklearn_run_carries_lineage_and_a_loadable_model(
    mlflow_server, client, cls_uri, monkeypatch, without_torch
):
    """Runs without torch installed: the sklearn path never imports it."""
    identity = AirflowIdentity("dag_a", "manual__1", "train", try_number=1)
    spec = {
        "experiment": "entry-sklearn",
        "dataset_uri": cls_uri,
        "target": "label",
        "model": {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20}},
        "metrics": ["accuracy", "roc_auc"],
        "tags": {"mlops.data.validation": '{"success": true}'},
    }
    done = run_entrypoint(mlflow_server, spec, identity, extra_env=without_torch)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = find_training_run(client, experiment_name="entry-sklearn", identity=identity)
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert tags[TAG_DATASET_URI] == cls_uri and tags[TAG_DATASET_FINGERPRINT] == fingerprint(cls_uri)
    assert TrainingSpec.from_obj(tags[TAG_SPEC]) == TrainingSpec.from_obj(spec)
    assert tags["mlops.data.validation"] == '{"success": true}'
    assert {k: tags[k] for k in identity.to_tags()} == identity.to_tags()
    assert set(result.metrics) == {"val_accuracy", "val_roc_auc"} and result.metrics["val_accuracy"] > 0.8
    assert run.data.params["model.n_estimators"] == "20"

    import mlflow
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    model = mlflow.pyfunc.load_model(result.model_uri)
    assert model.metadata.signature is not None
    assert [c.name for c in model.metadata.signature.inputs] == ["a", "b", "c", "d"]
    frame = pd.read_parquet(cls_uri).drop(columns="label").head(3)
    assert set(model.predict(frame)) <= {"yes", "no"}

    # A second try of the same task instance with the same spec and data reuses the finished run.
    retry = AirflowIdentity("dag_a", "manual__1", "train", try_number=2)
    again = run_entrypoint(mlflow_server, spec, retry)
    assert again.returncode == 0 and "reusing MLflow run" in again.stdout
    assert find_training_run(client, experiment_name="entry-sklearn", identity=retry).run_id == result.run_id


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target": "churn"}, "target column 'churn' missing from dataset"),
        ({"model": {"estimator": "sklearn.svm.SVC", "params": {"C": "big"}}}, "bad hyperparameter"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(mlflow_server, cls_uri, overrides, message):
    spec = {
        "experiment": "entry-bad",
        "dataset_uri": cls_uri,
        "target": "label",
        "model": "torch_mlp",
        **overrides,
    }
    done = run_entrypoint(mlflow_server, spec, AirflowIdentity("d", "r", "t"))
    assert done.returncode == EXIT_BAD_INPUT
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(ERROR_MARKER) and message in last


def test_killed_mlp_resumes_the_same_run_from_the_next_epoch(mlflow_server, client, tmp_path):
    """SIGKILL after epoch k (like a preempted spot pod), restart: epochs k+1..N land in the same run."""
    uri = str(tmp_path / "data.parquet")
    make_frame(rows=3000).to_parquet(uri)
    epochs = 12
    spec = {
        "experiment": "entry-resume",
        "dataset_uri": uri,
        "target": "label",
        "model": {
            "family": "torch_mlp",
            "params": {"epochs": epochs, "hidden_layers": [256, 256], "patience": 0},
        },
        "checkpoint_uri": str(tmp_path / "ckpt" / "checkpoint.pt"),
    }
    first = AirflowIdentity("dag_r", "run_1", "train", try_number=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_mlops.training", "--spec", json.dumps(spec)],
        env=env_for(mlflow_server, first),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if f"epoch 2/{epochs}" in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    saved = load_checkpoint(spec["checkpoint_uri"])
    k = saved["epoch"]
    assert 2 <= k < epochs and not saved["done"]
    run_id = saved["run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"

    second = AirflowIdentity("dag_r", "run_1", "train", try_number=2)
    done = run_entrypoint(mlflow_server, spec, second)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"continuing at epoch {k + 1}" in done.stdout
    trained_again = [line for line in done.stdout.splitlines() if " epoch " in line and f"/{epochs} " in line]
    assert trained_again[0].split(" epoch ")[1].startswith(f"{k + 1}/")

    result = find_training_run(client, experiment_name="entry-resume", identity=second)
    assert result.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_RESUMED_FROM_EPOCH] == str(k)
    assert run.data.tags[TAG_TRY_NUMBER] == "2"
    history = client.get_metric_history(run_id, "epoch_train_loss")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    assert run.data.metrics["epochs_completed"] == epochs
    assert load_checkpoint(spec["checkpoint_uri"])["done"] is True
