"""Faults other than an MLflow outage: SIGKILLed batch scoring and a SIGKILLed Airflow worker running a KPO task.

* Batch scoring killed with SIGKILL at 20 seeded random points, each attempt then re-run the way a task retry
  runs it (``run_batch_inference``): the output is byte-identical to an uninterrupted run, and after every kill
  no temporary, partial output or manifest is visible (only hidden ``.mlops-tmp-*`` files and the writer's
  lock file, which the re-run removes). The scoring process is forked from a helper process that loaded the model once, so a kill costs
  milliseconds instead of a Python start.
* The Airflow worker process running a KubernetesTrainModelOperator task is SIGKILLed while its pod trains; the
  retry (try 2) reattaches to that pod instead of starting a second one, finds the MLflow run of try 1, and
  leaves no pod running. The pod faults (never scheduled, OOMKilled, exit code, pod deleted) are covered by
  tests/integration/test_training_kubernetes.py; here each one is also checked for "one pod per try".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.airflow import run_dag
from tests.helpers.k8s_emulator import Fault, K8sEmulator
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FEATURES = ["f0", "f1", "f2", "f3"]
KILLS = 20
SEED = 20260110
NAMESPACE = "ml"


# ------------------------------------------------------------------------------ batch scoring under SIGKILL
def _listing(folder: Path) -> tuple[list[str], list[str]]:
    """(visible, hidden) file names of ``folder``."""
    if not folder.exists():
        return [], []
    names = sorted(p.name for p in folder.iterdir())
    return [n for n in names if not n.startswith((".", "_"))], [n for n in names if n.startswith((".", "_"))]


def _temp_bytes(folder: Path) -> int:
    total = 0
    for path in folder.glob(".mlops-tmp-*") if folder.exists() else []:
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def kill_campaign(model_uri: str, src: str, workdir: str, kills: int, seed: int) -> list[dict[str, Any]]:
    """
    Run in a helper process: score once uninterrupted, then ``kills`` times fork a scorer, SIGKILL it after a
    seeded random delay, record what a reader would see, and re-run the job as a retry would.
    """
    import random

    from mlflow import MlflowClient

    from airflow_mlops.core.scoring import load_model, resolve_model, run_batch_inference, score_dataset

    client = MlflowClient()
    model = load_model(resolve_model(client, model_uri))
    kwargs: dict[str, Any] = {"passthrough_columns": ["id"], "batch_size": 250, "progress_interval": 1e9}
    clean = Path(workdir) / "clean" / "pred.parquet"
    score_dataset(model, src, str(clean), **kwargs)
    expected = clean.read_bytes()

    rng = random.Random(seed)
    records = []
    for i in range(kills):
        out = Path(workdir) / f"kill-{i:02d}" / "pred.parquet"
        # A seeded point in the job: a fraction of the output written, or (fraction < 0) a moment of the
        # start-up phase (input resolution, schema check, row count) before any byte is written.
        fraction = rng.uniform(-0.15, 1.0)
        delay = rng.uniform(0.0, 0.3)
        pid = os.fork()
        if pid == 0:  # the scorer: no cleanup handlers, just the job
            code = 0
            try:
                score_dataset(model, src, str(out), **kwargs)
            except BaseException:  # a child must never return into the parent's loop
                code = 1
            os._exit(code)
        started = time.monotonic()
        while True:
            if fraction < 0 and time.monotonic() - started >= delay:
                break
            if fraction >= 0 and _temp_bytes(out.parent) >= fraction * len(expected):
                break
            if os.waitpid(pid, os.WNOHANG) != (0, 0) or time.monotonic() - started > 60:
                break  # it ended before the point was reached
            time.sleep(0.0005)
        try:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            status = 0  # already reaped above: it finished
        visible, hidden = _listing(out.parent)
        temp_bytes = _temp_bytes(out.parent)
        result = run_batch_inference(client, model_uri, src, str(out), **kwargs)
        final_visible, final_hidden = _listing(out.parent)
        records.append(
            {
                "point": round(fraction, 3) if fraction >= 0 else f"start-up +{delay:.3f}s",
                "killed": os.WIFSIGNALED(status),
                "visible_after_kill": visible,
                "hidden_after_kill": hidden,
                "temp_bytes_after_kill": temp_bytes,
                "rerun_skipped": result.skipped if hasattr(result, "skipped") else None,
                "rerun_rows": result.rows,
                "identical": out.read_bytes() == expected,
                "final": final_visible + final_hidden,
            }
        )
    return records


@pytest.fixture(scope="module")
def scoring_model(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A logistic regression registered with a champion alias, and a 40k-row input in 4 row groups."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.hooks.mlflow import MlflowHook

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.standard_normal((40_000, 4)), columns=FEATURES)
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    src = tmp_path_factory.mktemp("faults-scoring") / "in.parquet"
    frame.to_parquet(src, index=False, row_group_size=10_000)
    x = frame[FEATURES].iloc[:2000]
    clf = LogisticRegression().fit(x, (x.f0 + x.f1 > 0).astype(int))
    name = f"faults-sk-{uuid.uuid4().hex[:6]}"
    with MlflowHook().session() as client:
        mlflow.set_experiment(f"faults-{name}")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(x, clf.predict(x)),
                registered_model_name=name,
                pip_requirements=["scikit-learn"],
            )
        client.set_registered_model_alias(name, "champion", info.registered_model_version)
    return {"uri": f"models:/{name}@champion", "src": str(src), "url": mlflow_server.url}


def test_scoring_killed_at_20_random_points_then_rerun_is_byte_identical(
    scoring_model: dict[str, Any], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": scoring_model["url"],
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    code = (
        "import json, sys\n"
        "from tests.hardening.test_faults import kill_campaign\n"
        "print('RESULT ' + json.dumps(kill_campaign(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]))))\n"
    )
    args = [scoring_model["uri"], scoring_model["src"], str(tmp_path), str(KILLS), str(SEED)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    records = json.loads(line[len("RESULT ") :])
    mid_write = sum(r["killed"] and r["temp_bytes_after_kill"] > 0 for r in records)
    print(
        f"{KILLS} kills: {mid_write} mid-write, {sum(not r['killed'] for r in records)} after the job ended"
    )
    assert len(records) == KILLS
    for i, rec in enumerate(records):
        where = f"kill {i} at {rec['point']}: {rec}"
        # A reader never sees a partial file: nothing visible, or the complete output (killed after its
        # rename, while the manifest was being written).
        assert rec["visible_after_kill"] in ([], ["pred.parquet"]), where
        assert all(
            n.startswith(".mlops-tmp-") or n in {"_pred.parquet.manifest.json", ".mlops-lock-pred.parquet"}
            for n in rec["hidden_after_kill"]
        ), where
        assert rec["identical"] and rec["rerun_rows"] == 40_000, where
        assert rec["final"] == ["pred.parquet", "_pred.parquet.manifest.json"], where  # no temporaries left
    # The seeded points really hit the job mid-write (not only before it started or after it ended).
    assert mid_write >= 10, records


def race_campaign(model_uri: str, src: str, workdir: str, rounds: int, racers: int) -> list[dict[str, Any]]:
    """
    Run in a helper process: score once alone, then ``rounds`` times start ``racers`` forked scorers of one
    output URI at the same instant (half of them with ``force=True``, so they really write), the way two DAG
    runs or a manual re-run racing a retry would; record each racer's exit and what the folder holds after.
    """
    from mlflow import MlflowClient

    from airflow_mlops.core.scoring import run_batch_inference

    client = MlflowClient()
    kwargs: dict[str, Any] = {"passthrough_columns": ["id"], "batch_size": 250, "progress_interval": 1e9}
    clean = Path(workdir) / "clean" / "pred.parquet"
    run_batch_inference(client, model_uri, src, str(clean), **kwargs)
    expected = clean.read_bytes()
    records = []
    for i in range(rounds):
        out = Path(workdir) / f"race-{i:02d}" / "pred.parquet"
        start = time.monotonic() + 1.0  # CLOCK_MONOTONIC is system-wide: every racer starts together
        pids = []
        for r in range(racers):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    while time.monotonic() < start:
                        time.sleep(0.0005)
                    result = run_batch_inference(client, model_uri, src, str(out), force=r % 2 == 1, **kwargs)
                    (out.parent / f"racer-{r}.json").write_text(
                        json.dumps({"rows": result.rows, "skipped": result.skipped})
                    )
                except BaseException as err:  # a child must never return into the parent's loop
                    out.parent.mkdir(parents=True, exist_ok=True)
                    (out.parent / f"racer-{r}.json").write_text(
                        json.dumps({"error": f"{type(err).__name__}: {err}"})
                    )
                    code = 1
                os._exit(code)
            pids.append(pid)
        codes = [os.waitpid(pid, 0)[1] for pid in pids]
        outcomes = [json.loads((out.parent / f"racer-{r}.json").read_text()) for r in range(racers)]
        for r in range(racers):
            (out.parent / f"racer-{r}.json").unlink()
        visible, hidden = _listing(out.parent)
        records.append(
            {
                "exit_codes": codes,
                "outcomes": outcomes,
                "identical": out.exists() and out.read_bytes() == expected,
                "manifest_rows": json.loads((out.parent / "_pred.parquet.manifest.json").read_text())["rows"]
                if (out.parent / "_pred.parquet.manifest.json").exists()
                else None,
                "final": visible + hidden,
            }
        )
    return records


def _in_helper(function: str, scoring_model: dict[str, Any], *args: Any) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": scoring_model["url"],
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    code = (
        "import json, sys\n"
        f"from tests.hardening.test_faults import {function}\n"
        f"print('RESULT ' + json.dumps({function}(*sys.argv[1:4], *map(int, sys.argv[4:]))))\n"
    )
    argv = [scoring_model["uri"], scoring_model["src"], *map(str, args)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


RACE_ROUNDS = 6
RACERS = 4


def test_concurrent_scorers_of_one_output_each_finish_cleanly_with_one_output(
    scoring_model: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 14: a later scorer's start-up cleanup must not delete another scorer's live temporary file."""
    records = _in_helper("race_campaign", scoring_model, tmp_path, RACE_ROUNDS, RACERS)
    skipped = sum(o.get("skipped", False) for rec in records for o in rec["outcomes"])
    print(f"{RACE_ROUNDS} rounds x {RACERS} concurrent scorers: {skipped} saw a complete output and skipped")
    for i, rec in enumerate(records):
        where = f"round {i}: {rec}"
        assert rec["exit_codes"] == [0] * RACERS, where
        assert all("error" not in o and o["rows"] == 40_000 for o in rec["outcomes"]), where
        assert rec["identical"] and rec["manifest_rows"] == 40_000, where
        assert rec["final"] == ["pred.parquet", "_pred.parquet.manifest.json"], where  # nothing hidden left


def forced_kill_campaign(
    model_uri: str, src: str, workdir: str, kills: int, seed: int
) -> list[dict[str, Any]]:
    """Score once, then ``kills`` times SIGKILL a ``force=True`` re-score mid-write and run the job again."""
    import random

    from mlflow import MlflowClient

    from airflow_mlops.core.scoring import run_batch_inference

    client = MlflowClient()
    kwargs: dict[str, Any] = {"passthrough_columns": ["id"], "batch_size": 250, "progress_interval": 1e9}
    out = Path(workdir) / "forced" / "pred.parquet"
    run_batch_inference(client, model_uri, src, str(out), **kwargs)
    expected = out.read_bytes()
    rng = random.Random(seed)
    records = []
    for _ in range(kills):
        fraction = rng.uniform(0.05, 0.9)
        pid = os.fork()
        if pid == 0:
            try:
                run_batch_inference(client, model_uri, src, str(out), force=True, **kwargs)
            finally:
                os._exit(0)
        started = time.monotonic()
        while _temp_bytes(out.parent) < fraction * len(expected) and time.monotonic() - started < 60:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.0005)
        try:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            status = 0
        hidden_after_kill = _listing(out.parent)[1]
        result = run_batch_inference(client, model_uri, src, str(out), **kwargs)
        visible, hidden = _listing(out.parent)
        records.append(
            {
                "killed": os.WIFSIGNALED(status),
                "hidden_after_kill": hidden_after_kill,
                "rerun_skipped": result.skipped,
                "identical": out.read_bytes() == expected,
                "final": visible + hidden,
            }
        )
    return records


def test_a_killed_forced_rescore_leaves_nothing_hidden_after_the_next_run(
    scoring_model: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 14: the next run cleans up a killed ``--force`` re-score even when it skips (old manifest valid)."""
    records = _in_helper("forced_kill_campaign", scoring_model, tmp_path, 5, SEED)
    assert (
        sum(r["killed"] and any(n.startswith(".mlops-tmp-") for n in r["hidden_after_kill"]) for r in records)
        >= 3
    )
    for i, rec in enumerate(records):
        where = f"kill {i}: {rec}"
        assert rec["identical"], where
        assert rec["final"] == ["pred.parquet", "_pred.parquet.manifest.json"], where


# ------------------------------------------------------------------------------ Kubernetes
@pytest.fixture
def k8s(monkeypatch: pytest.MonkeyPatch) -> Any:
    with K8sEmulator(namespace=NAMESPACE) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", emulator.connection_json())
        yield emulator
        assert emulator.wait_until_empty(), (
            f"left behind: pods {emulator.live_pods()}, process groups {emulator.live_process_groups()}"
        )
    assert not emulator.live_process_groups()


@pytest.fixture(scope="module")
def k8s_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd
    from sklearn.datasets import make_classification

    features, labels = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=7)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame["label"] = labels
    path = tmp_path_factory.mktemp("faults-k8s") / "train.parquet"
    frame.to_parquet(path, index=False)
    return path


def worker_dag(dag_id: str, dataset: str, experiment: str, epochs: int, **op_kwargs: Any) -> Any:
    """The training DAG both the killed worker and the retry build (same dag_id, same task)."""
    from airflow.sdk import DAG

    from airflow_mlops.operators.kubernetes import KubernetesTrainModelOperator

    spec = {
        "experiment": experiment,
        "dataset_uri": dataset,
        "target": "label",
        "model": {"family": "torch_mlp", "params": {"hidden_layers": [8], "epochs": epochs, "patience": 100}},
        "metrics": ["accuracy"],
    }
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        KubernetesTrainModelOperator(
            task_id="train",
            training=spec,
            namespace=NAMESPACE,
            startup_check_interval_seconds=1,
            poll_interval=0.5,
            retries=1,
            retry_delay=timedelta(0),
            **op_kwargs,
        )
    return dag


def run_worker(dag_id: str, dataset: str, experiment: str, epochs: int, logical_date: str) -> None:
    """The Airflow worker of try 1, in its own process: ``dag.test()`` runs the task in-process."""
    import tests.helpers.airflow as helpers

    helpers._migrated = True  # the test session migrated the DB already
    run_dag(
        worker_dag(dag_id, dataset, experiment, epochs),
        expect=None,
        logical_date=datetime.fromisoformat(logical_date),
    )


def _mark_heartbeat_timeout(dag_id: str) -> tuple[int, str, str]:
    """What the scheduler does when a worker stops heartbeating: the running try fails and is up for retry."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = session.execute(select(TaskInstance).where(TaskInstance.dag_id == dag_id)).scalar_one()
        state = str(ti.state)
        ti.state = TaskInstanceState.UP_FOR_RETRY
        ti.end_date = datetime.now(UTC)
        return ti.try_number, state, ti.run_id


def test_worker_killed_mid_training_then_retry_reattaches_or_replaces_the_pod(
    airflow_db: Path,
    mlflow_server: Any,
    k8s: K8sEmulator,
    k8s_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from airflow_mlops.core.tags import TAG_TASK_ID, TAG_TRY_NUMBER

    dag_id, experiment, epochs = f"faults_worker_killed_{uuid.uuid4().hex[:6]}", "faults-worker-killed", 40
    logical = datetime(2026, 2, 1, tzinfo=UTC)
    code = (
        "import sys\nfrom tests.hardening.test_faults import run_worker\n"
        "run_worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code, dag_id, str(k8s_dataset), experiment, str(epochs), logical.isoformat()],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and worker.poll() is None:
            pods = k8s.all_pods
            if pods and f"epoch 2/{epochs}" in k8s.pod_logs(pods[0].name):
                break
            time.sleep(0.1)
        assert worker.poll() is None, (
            f"worker ended before the kill: {worker.stderr.read()[-3000:] if worker.stderr else ''}"
        )
        worker.send_signal(signal.SIGKILL)  # the worker dies; its pod keeps training
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    assert len(k8s.all_pods) == 1 and k8s.live_pods(), "the pod should outlive its worker"

    try_number, state, run_id = _mark_heartbeat_timeout(dag_id)
    assert (try_number, state) == (1, "running")
    # The retry runs in the same DAG run (dag.test() would otherwise mint a new run id): try 2 of that task.
    from airflow.models.dagrun import DagRun

    monkeypatch.setattr(DagRun, "generate_run_id", staticmethod(lambda **_: run_id))
    dag_run = run_dag(worker_dag(dag_id, str(k8s_dataset), experiment, epochs), logical_date=logical)
    assert dag_run.run_id == run_id

    # The retry reattached to the pod of the killed worker (one pod), or, when that pod had already ended,
    # deleted it before starting its own: never two pods at once, none left behind (the fixture checks).
    bodies = k8s.created_pod_bodies()
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in k8s.requests if r.method in ("POST", "DELETE")]
    assert len(bodies) in (1, 2), calls
    if len(bodies) == 2:
        first = bodies[0]["metadata"]["name"]
        assert calls.index(("DELETE", first)) < [m for m, _ in calls].index("POST", 1), calls
    result = xcom(dag_run, "train")
    run = MlflowClient(mlflow_server.url).get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[TAG_TASK_ID] == "train"
    assert run.data.tags[TAG_TRY_NUMBER] in ("1", "2")
    runs = MlflowClient(mlflow_server.url).search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{TAG_TASK_ID}` = 'train'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]  # nothing duplicated
    # wait_until_empty in the fixture: the pod was deleted after the retry collected its result


@pytest.mark.parametrize(
    "fault, kwargs, message",
    [
        (
            Fault.unschedulable(),
            {"gpu_count": 1, "schedule_timeout_seconds": 2},
            "was never scheduled within 2s",
        ),
        (Fault.oom_killed(after_s=0.3), {}, "was OOMKilled (exit code 137)"),
        (Fault.exit(5, after_s=0.3), {}, "exited with code 5"),
        (Fault.deleted(after_s=0.3), {}, "was deleted while it ran"),
    ],
    ids=["never-scheduled", "oom-killed", "exit-code", "pod-deleted"],
)
def test_each_pod_fault_with_a_retry_starts_one_pod_per_try(
    airflow_db: Path,
    mlflow_server: Any,
    k8s: K8sEmulator,
    k8s_dataset: Path,
    fault: Fault,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    """A failing pod and its retry: the retry starts exactly one fresh pod (the failed one is not reattached)."""
    k8s.inject(fault)
    k8s.inject(fault)  # the retry's pod fails the same way
    dag_id = f"faults_pod_{fault.kind.value}_{uuid.uuid4().hex[:4]}".replace("-", "_")
    dag = worker_dag(dag_id, str(k8s_dataset), "faults-pod", 3, **kwargs)
    dag_run = run_dag(dag, expect="failed")
    assert message in dag_run.task_errors.get("train", ""), dag_run.task_errors
    bodies = k8s.created_pod_bodies()
    tries = sorted(b["metadata"]["labels"].get("try_number") for b in bodies)
    assert tries == ["1", "2"], tries  # one pod per try, never two for the same try
