"""Batch inference end to end: real sklearn and torch models on the real MLflow server, real DAG runs.

* predictions equal the models' own predict (sklearn native, torch native, pyfunc);
* schema errors and a missing alias are caught before anything is written;
* a scoring process killed with SIGKILL mid-run and re-run leaves output byte-identical to an uninterrupted run,
  with no temporary files visible;
* sharded scoring (plan -> mapped shards -> combine, in a real DAG run) equals unsharded scoring.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.core.scoring import manifest_uri_for, run_batch_inference
from airflow_mlops.exceptions import ModelNotFound, SchemaMismatch
from tests.helpers.airflow import run_dag
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURES = ["f0", "f1", "f2", "f3"]
REPO = Path(__file__).resolve().parents[2]


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
    df.insert(0, "id", np.arange(n, dtype=np.int64) + seed * 10_000_000)
    return df


def _write(df: pd.DataFrame, path: Path, row_group_size: int = 10_000) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return str(path)


@pytest.fixture(scope="module")
def models(mlflow_server):
    """A logistic regression and a small torch net, registered with a champion alias on the real server."""
    import mlflow
    import mlflow.pytorch
    import mlflow.sklearn
    import torch
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.hooks.mlflow import MlflowHook

    suffix = uuid.uuid4().hex[:6]
    train = _frame(2_000, seed=42)
    x, y = train[FEATURES], (train.f0 - train.f1 * train.f2 > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        net_out = net(torch.from_numpy(x.to_numpy(np.float32))).numpy()
    names = {"sk": f"inf-sk-{suffix}", "torch": f"inf-torch-{suffix}"}
    with MlflowHook().session() as client:
        mlflow.set_experiment(f"inference-tests-{suffix}")
        with mlflow.start_run():
            sk = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(x, clf.predict(x)),
                registered_model_name=names["sk"],
                pip_requirements=["scikit-learn"],
            )
            th = mlflow.pytorch.log_model(
                net,
                name="model",
                signature=infer_signature(x, net_out),
                registered_model_name=names["torch"],
                pip_requirements=["torch"],
                serialization_format="pickle",
            )
        client.set_registered_model_alias(names["sk"], "champion", sk.registered_model_version)
        client.set_registered_model_alias(names["torch"], "champion", th.registered_model_version)
    return {"names": names, "clf": clf, "net": net, "server": mlflow_server}


def _score(model_uri: str, src: str, out: str, **kwargs):
    from airflow_mlops.hooks.mlflow import MlflowHook

    with MlflowHook().session() as client:
        return run_batch_inference(client, model_uri, src, out, **kwargs)


# ---------------------------------------------------------------------------------------------- models
def test_sklearn_and_torch_predictions_equal_the_models_own_predict(models, tmp_path):
    import torch

    df = _frame(5_000, seed=1)
    src = _write(df, tmp_path / "in.parquet", row_group_size=1_000)
    sk = _score(
        f"models:/{models['names']['sk']}@champion",
        src,
        str(tmp_path / "sk.parquet"),
        passthrough_columns=["id"],
        batch_size=700,
    )
    assert sk.flavor == "sklearn" and sk.model_version == "1" and sk.rows == 5_000
    out = pq.read_table(tmp_path / "sk.parquet")
    assert out["id"].to_pylist() == df["id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), models["clf"].predict(df[FEATURES]))

    th = _score(
        f"models:/{models['names']['torch']}@champion", src, str(tmp_path / "th.parquet"), batch_size=700
    )
    assert th.flavor == "pytorch"
    with torch.no_grad():
        expected = models["net"](torch.from_numpy(df[FEATURES].to_numpy(np.float32))).numpy()[:, 0]
    np.testing.assert_array_equal(pq.read_table(tmp_path / "th.parquet")["prediction"].to_numpy(), expected)

    py = _score(f"models:/{models['names']['torch']}/1", src, str(tmp_path / "py.parquet"), flavor="pyfunc")
    # pyfunc feeds torch a column-major float32 copy; its kernels round differently in the last bit
    assert py.flavor == "pyfunc"
    np.testing.assert_allclose(
        pq.read_table(tmp_path / "py.parquet")["prediction"].to_numpy(), expected, atol=1e-6
    )
    manifest = json.loads(Path(sk.manifest_uri).read_text())
    assert manifest["model_run_id"] and manifest["model_uri"] == f"models:/{models['names']['sk']}/1"


def test_retry_skips_when_the_manifest_proves_the_work_is_done(models, tmp_path):
    src = _write(_frame(1_000, seed=2), tmp_path / "in.parquet")
    out = tmp_path / "out" / "p.parquet"
    first = _score(f"models:/{models['names']['sk']}@champion", src, str(out))
    mtime = out.stat().st_mtime_ns
    again = _score(f"models:/{models['names']['sk']}@champion", src, str(out))
    assert again.skipped and again.rows == first.rows and out.stat().st_mtime_ns == mtime
    _write(_frame(1_000, seed=3), tmp_path / "in.parquet")  # new input bytes: scored again
    third = _score(f"models:/{models['names']['sk']}@champion", src, str(out))
    assert not third.skipped and third.input_fingerprint != first.input_fingerprint


def test_schema_errors_and_unknown_alias_write_nothing(models, tmp_path):
    out = tmp_path / "out" / "p.parquet"
    bad = _write(
        _frame(100).drop(columns=["f2"]).assign(f3=lambda d: d.f3.astype(str)), tmp_path / "bad.parquet"
    )
    name = models["names"]["sk"]
    with pytest.raises(SchemaMismatch) as err:
        _score(f"models:/{name}@champion", bad, str(out))
    assert "['f2']" in str(err.value) and "f3 (string" in str(err.value) and f"{name} v1" in str(err.value)
    with pytest.raises(ModelNotFound, match=r"no alias 'challenger' \(aliases: champion -> v1\)"):
        _score(f"models:/{name}@challenger", bad, str(out))
    assert not out.parent.exists()


# ---------------------------------------------------------------------------------------------- SIGKILL
def _cli(model_uri: str, src: str, out: str, server_url: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": server_url, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    cmd = [sys.executable, "-m", "airflow_mlops.core.scoring", "--model-uri", model_uri, "--input-uri", src,
           "--output-uri", out, "--passthrough", "id", "--batch-size", "200"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_rerun_gives_byte_identical_output(models, tmp_path):
    src = _write(_frame(200_000, seed=4), tmp_path / "in.parquet", row_group_size=50_000)
    uri = f"models:/{models['names']['sk']}@champion"
    url = models["server"].url
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_out = killed_dir / "pred.parquet"

    proc = _cli(uri, src, str(killed_out), url)
    deadline = time.monotonic() + 240
    temp = None
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [p for p in killed_dir.glob(".mlops-tmp-*")] if killed_dir.exists() else []
        if temps and temps[0].stat().st_size > 100_000:  # dozens of row groups written, many to go
            temp = temps[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert temp is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    # Readers see nothing: no output, no manifest, only a hidden temporary.
    assert not killed_out.exists() and not Path(manifest_uri_for(str(killed_out))).exists()
    assert all(p.name.startswith(".") for p in killed_dir.iterdir())

    rerun = _cli(uri, src, str(killed_out), url)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])["rows"] == 200_000
    # The uninterrupted run: the same core function, in this process (saves a process start).
    assert (
        _score(uri, src, str(clean_dir / "pred.parquet"), passthrough_columns=["id"], batch_size=200).rows
        == 200_000
    )
    assert killed_out.read_bytes() == (clean_dir / "pred.parquet").read_bytes()
    assert sorted(p.name for p in killed_dir.iterdir()) == ["_pred.parquet.manifest.json", "pred.parquet"]
    killed_manifest = json.loads(Path(manifest_uri_for(str(killed_out))).read_text())
    assert killed_manifest["rows"] == 200_000 and killed_manifest["output_written"]


# ---------------------------------------------------------------------------------------------- DAGs
def test_operators_in_a_dag_run_sharded_equals_unsharded(models, airflow_db, tmp_path):
    from airflow.sdk import DAG, Asset

    from airflow_mlops.operators.inference import (
        BatchInferenceCombineOperator,
        BatchInferenceOperator,
        BatchInferencePlanOperator,
    )

    for i in range(4):
        _write(_frame(2_500, seed=10 + i), tmp_path / "in" / f"day-{i}.parquet", row_group_size=1_000)
    name = models["names"]["sk"]
    unsharded = tmp_path / "whole" / "pred.parquet"
    sharded_dir = tmp_path / "sharded"
    asset = Asset(name=f"predictions-{name}", uri=f"file://{unsharded}")
    with DAG(f"inference_{name}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        BatchInferenceOperator(
            task_id="score_all",
            model_uri=f"models:/{name}@champion",
            input_uri=str(tmp_path / "in"),
            output_uri=str(unsharded),
            passthrough_columns=["id"],
            batch_size=1_000,
            outlets=[asset],
        )
        plan = BatchInferencePlanOperator(
            task_id="plan",
            model_uri=f"models:/{name}@champion",
            input_uri=str(tmp_path / "in"),
            output_uri=str(sharded_dir),
            num_shards=3,
        )
        shards = BatchInferenceOperator.partial(
            task_id="score_shard", passthrough_columns=["id"], batch_size=1_000, outlets=[]
        ).expand_kwargs(plan.output)
        BatchInferenceCombineOperator(task_id="combine", output_uri=str(sharded_dir), shards=shards.output)

    run = run_dag(dag)
    summary = xcom(run, "score_all")
    assert (
        summary["rows"] == 10_000
        and summary["model_version"] == "1"
        and summary["output_uri"] == str(unsharded)
    )
    assert set(summary) >= {"model_name", "model_version", "rows", "output_uri", "manifest_uri"}
    plan_out = xcom(run, "plan")
    assert len(plan_out) == 3 and {p["model_uri"] for p in plan_out} == {f"models:/{name}/1"}
    combined = xcom(run, "combine")
    assert combined["rows"] == 10_000 and combined["parts"] == 3
    assert pq.read_table(sharded_dir).equals(pq.read_table(unsharded))
    assert sorted(p.name for p in sharded_dir.iterdir() if not p.name.startswith("_")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    link = str(xcom(run, "score_all", "mlops_inference_model_url"))
    assert link.endswith(f"/#/models/{name}/versions/1")

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
    extras = {uri: extra for uri, extra in rows}
    assert extras[f"file://{unsharded}"]["model_version"] == "1"
    assert extras[f"file://{unsharded}"]["rows"] == 10_000
    assert extras[f"file://{sharded_dir}"]["rows"] == 10_000  # the combine step's default AssetAlias event
