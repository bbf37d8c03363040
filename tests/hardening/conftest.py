"""Fixtures shared by the hardening tests: generated data, one logged model, external-state snapshots, and a
wrapper that makes any operator fail right after its work on try 1 (so Airflow retries it)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.core.tags import TAG_DATASET_FINGERPRINT, TAG_DATASET_URI, TAG_TRY_NUMBER

FEATURES = ["age", "income", "tenure", "score"]
MODEL_EXPERIMENT = "hardening-models"

# Values that must change between tries (the try number, wall-clock durations and timestamps: these keys and
# every key ending in "_at"); everything else of the external state must be identical after a retry.
VOLATILE_KEYS = frozenset({TAG_TRY_NUMBER, "try_number", "elapsed_s", "timings", "at"})


def is_volatile(key: Any) -> bool:
    return key in VOLATILE_KEYS or (isinstance(key, str) and key.endswith("_at"))


def make_frame(n: int, seed: int, shift: float = 0.0, label: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "age": rng.normal(40 + 10 * shift, 10, n),
            "income": rng.normal(50 + 20 * shift, 10, n),
            "tenure": rng.normal(5 + 2 * shift, 2, n),
            "score": rng.normal(0, 1, n),
        }
    )
    if label:
        frame["label"] = (frame["score"] + rng.normal(0, 0.5, n) > 0).astype(int)
    return frame


@pytest.fixture(scope="session")
def hard_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Training data, drifted current data and a two-part scoring input folder."""
    root = tmp_path_factory.mktemp("hardening-data")
    make_frame(600, 1).drop(columns="id").to_parquet(root / "train.parquet", index=False)
    make_frame(600, 2, shift=1.0, label=False).to_parquet(root / "current.parquet", index=False)
    (root / "score_in").mkdir()
    for i in range(2):
        make_frame(300, 10 + i, label=False).to_parquet(root / "score_in" / f"part-{i}.parquet", index=False)
    return {
        "root": str(root),
        "train": str(root / "train.parquet"),
        "current": str(root / "current.parquet"),
        "score_in": str(root / "score_in"),
    }


@pytest.fixture(scope="session")
def logged_model(mlflow_server: Any, hard_data: dict[str, str]) -> dict[str, str]:
    """One logged sklearn model with a signature, val_* metrics and the lineage tags training writes."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.hooks.mlflow import MlflowHook

    train = pd.read_parquet(hard_data["train"])
    clf = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
    with MlflowHook().session():
        mlflow.set_experiment(MODEL_EXPERIMENT)
        with mlflow.start_run() as run:
            mlflow.set_tags(
                {
                    TAG_DATASET_URI: hard_data["train"],
                    TAG_DATASET_FINGERPRINT: fingerprint(hard_data["train"]),
                }
            )
            mlflow.log_metrics({"val_accuracy": 0.8, "val_roc_auc": 0.85})
            info = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(train[FEATURES], clf.predict(train[FEATURES])),
                pip_requirements=["scikit-learn"],
            )
    return {"model_uri": info.model_uri, "run_id": run.info.run_id}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------- snapshots
def normalise(value: Any) -> Any:
    """Drop volatile keys at any depth; decode JSON strings so their volatile keys are dropped too."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in sorted(value.items()) if not is_volatile(k)}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return {"json": normalise(json.loads(value))}
        except ValueError:
            return value
    return value


def _file_digest(path: Path) -> Any:
    if path.name == ".mlops-owner.json":
        # The report owner record: its digests are of the reports, which embed timings (see below), so the
        # files it lists and who wrote them are compared, not the digests.
        body = json.loads(path.read_text())
        body["files"] = sorted(body.get("files", {}))
        return {"json": normalise(body)}
    if path.suffix == ".json":
        return {"json": normalise(json.loads(path.read_text()))}
    if path.suffix == ".html":
        # Report HTML embeds generated element ids and timings: its presence is compared, the JSON twin
        # beside it carries the content.
        return "html"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_state(roots: Iterable[str]) -> dict[str, Any]:
    """Every file under ``roots`` (hidden temporary files included: none may be left) -> normalised digest."""
    out: dict[str, Any] = {}
    for root in roots:
        base = Path(root)
        if not base.exists():
            continue
        for dirpath, _, names in os.walk(base):
            for name in names:
                path = Path(dirpath) / name
                out[str(path.relative_to(base.parent))] = _file_digest(path)
    return out


def mlflow_state(client: Any, experiments: Iterable[str], models: Iterable[str]) -> dict[str, Any]:
    """Runs (status, tags, params, latest metrics) of ``experiments``; versions, tags, aliases of ``models``."""
    from mlflow.exceptions import MlflowException

    state: dict[str, Any] = {"experiments": {}, "models": {}}
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            state["experiments"][name] = None
            continue
        runs = client.search_runs([exp.experiment_id], max_results=500)
        state["experiments"][name] = {
            run.info.run_id: {
                "status": run.info.status,
                "tags": normalise(run.data.tags),
                "params": run.data.params,
                "metrics": run.data.metrics,
            }
            for run in runs
        }
    for name in models:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            state["models"][name] = None
            continue
        versions = client.search_model_versions(f"name = '{name}'")
        state["models"][name] = {
            "tags": normalise(model.tags),
            "aliases": dict(model.aliases),
            "versions": {
                mv.version: {
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "status": mv.status,
                    "tags": normalise(mv.tags),
                }
                for mv in versions
            },
        }
    return state


def asset_events(dag_id: str) -> list[Any]:
    """Asset events produced by the tasks of ``dag_id`` (asset, source task, map index, normalised extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.source_task_id, AssetEvent.source_map_index, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id)
            .order_by(AssetEvent.id)
        ).all()
    return sorted(
        ([uri, task, map_index, normalise(extra)] for uri, task, map_index, extra in rows),
        key=lambda row: json.dumps(row, sort_keys=True, default=str),
    )


@dataclass
class Scope:
    """What one case's snapshot looks at."""

    dag_id: str
    experiments: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    k8s: Any = None  # a K8sEmulator: live pods must be none, and created pods are counted


def snapshot(scope: Scope, tracking_uri: str) -> dict[str, Any]:
    """The external state of one case: MLflow, files, Asset events, live pods."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    state: dict[str, Any] = {
        "mlflow": mlflow_state(client, scope.experiments, scope.models),
        "files": files_state(scope.roots),
        "asset_events": asset_events(scope.dag_id),
    }
    if scope.k8s is not None:
        state["live_pods"] = scope.k8s.live_pods()
    return state


def diff(left: Any, right: Any, path: str = "") -> list[str]:
    """Readable differences between two snapshots (empty when equal)."""
    if isinstance(left, dict) and isinstance(right, dict):
        out: list[str] = []
        for key in sorted(set(left) | set(right), key=str):
            if key not in left:
                out.append(f"{path}/{key}: added {json.dumps(right[key], default=str)[:300]}")
            elif key not in right:
                out.append(f"{path}/{key}: removed {json.dumps(left[key], default=str)[:300]}")
            else:
                out.extend(diff(left[key], right[key], f"{path}/{key}"))
        return out
    if left != right:
        return [f"{path}: {json.dumps(left, default=str)[:300]} -> {json.dumps(right, default=str)[:300]}"]
    return []


def run_task_again(dag: Any, dag_run: Any, task_id: str, map_index: int = -1) -> tuple[str, int]:
    """
    Run one task instance of an existing DAG run once more, as a scheduler would after a clear or for a retry:
    same dag_id / run_id / task_id / map_index, the next try number. Returns (final state, try number).
    """
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    where = (
        TaskInstance.dag_id == dag.dag_id,
        TaskInstance.run_id == dag_run.run_id,
        TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index,
    )
    session = settings.Session()
    try:
        ti = session.scalars(select(TaskInstance).where(*where)).one()
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        _run_task(ti=ti, task=dag.task_dict[task_id])
    finally:
        session.close()
    with create_session() as check:
        state, try_number = check.execute(
            select(TaskInstance.state, TaskInstance.try_number).where(*where)
        ).one()
    return str(state), int(try_number)
