"""The Models view's read model and pages at registry scale, against the bare MLflow calls they cannot avoid.

``MODELS_BENCH_MODELS`` (default 50) registered models with ``MODELS_BENCH_VERSIONS`` (default 200) versions
each are written straight into a fresh MLflow SQLite store through MLflow's own ORM classes (the API would take
~10 minutes for 10,000 runs and versions here): each version has its training run with four ``val_*`` metrics
and the provider's version tags (gate decision, reasons, rules, Airflow DAG and run), each model the provider's
registered-model tags (alias history of ``MODELS_BENCH_MOVES`` moves, gate and training summaries, drift
policy state) and ``MODELS_BENCH_CHECKS`` (default 100) drift-check runs. A real ``mlflow server`` serves the
store over HTTP on loopback, and every figure is taken through it with ``MlflowClient``, as the plugin reads it:

- ``models_list_page_s``: :func:`airflow_mlops.core.model_view.list_models` plus the list page's HTML
  (:func:`airflow_mlops.plugins.models_html.list_page`); baseline ``bare_search_models_s``, the
  ``search_registered_models`` pages alone (the least any list of the registry must fetch).
- ``model_page_s``: :func:`~airflow_mlops.core.model_view.model_detail` plus the model page's HTML; baseline
  ``bare_search_versions_s``, ``search_model_versions`` of the model's versions alone.

Each time is the best of ``MLOPS_BENCH_REPEAT`` (default 5) calls. The Airflow metadata DB part of a page (the
run states and scoring asset events of the runs shown, two indexed queries) is not in these figures; the browser
test (tests/integration/test_models_view.py) records the whole pages' load times from the real API server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_of, emit

MODELS = int(os.environ.get("MODELS_BENCH_MODELS", "50"))
VERSIONS = int(os.environ.get("MODELS_BENCH_VERSIONS", "200"))
MOVES = int(os.environ.get("MODELS_BENCH_MOVES", "60"))
CHECKS = int(os.environ.get("MODELS_BENCH_CHECKS", "100"))
REPEAT = int(os.environ.get("MLOPS_BENCH_REPEAT", "5"))
METRICS = ("val_auc", "val_accuracy", "val_f1", "val_loss")
DAG = "bench_lifecycle"
T0 = 1_780_000_000_000  # ms; every timestamp is T0 plus an offset


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _run(
    experiment_id: str, run_id: str, at: int, metrics: dict[str, float], tags: dict[str, str]
) -> list[Any]:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag

    rows: list[Any] = [
        SqlRun(
            run_uuid=run_id,
            name=run_id[:8],
            source_type="LOCAL",
            source_name="",
            entry_point_name="",
            user_id="bench",
            status="FINISHED",
            start_time=at,
            end_time=at + 1000,
            source_version="",
            lifecycle_stage="active",
            artifact_uri=f"file:///tmp/bench/{run_id}",
            experiment_id=int(experiment_id),
        )  # fmt: skip
    ]
    for key, value in metrics.items():
        for table in (SqlMetric, SqlLatestMetric):
            rows.append(table(key=key, value=value, timestamp=at, step=0, is_nan=False, run_uuid=run_id))
    rows.extend(SqlTag(key=k, value=v, run_uuid=run_id) for k, v in tags.items())
    return rows


def _model(name: str, experiment_id: str, drift_experiment_id: str) -> list[Any]:
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelAlias,
        SqlRegisteredModelTag,
    )

    from airflow_mlops.core import tags as t

    rules = json.dumps([{"metric": "val_auc", "min_delta": 0.0}, {"metric": "val_loss", "mode": "min"}])
    rows: list[Any] = [
        SqlRegisteredModel(name=name, creation_time=T0, last_updated_time=T0 + VERSIONS * 60_000)
    ]
    champion = 1
    for version in range(1, VERSIONS + 1):
        at = T0 + version * 60_000
        run_id = uuid.uuid4().hex
        auc = 0.7 + 0.25 * ((version * 37) % 100) / 100
        metrics = {"val_auc": auc, "val_accuracy": auc - 0.05, "val_f1": auc - 0.1, "val_loss": 1 - auc}
        rows += _run(
            experiment_id, run_id, at, metrics, {t.TAG_DAG_ID: DAG, t.TAG_RUN_ID: f"scheduled__{version}"}
        )
        promoted = version == 1 or auc > 0.7 + 0.25 * ((champion * 37) % 100) / 100
        rows.append(
            SqlModelVersion(
                name=name,
                version=version,
                creation_time=at,
                last_updated_time=at,
                description="",
                user_id="bench",
                current_stage="None",
                source=f"models:/m-{run_id}",
                storage_location="",
                run_id=run_id,
                run_link="",
                status="READY",
                status_message="",
            )  # fmt: skip
        )
        version_tags = {
            t.TAG_DAG_ID: DAG,
            t.TAG_RUN_ID: f"scheduled__{version}",
            t.TAG_GATE_DECISION: "promoted" if promoted else "rejected",
            t.TAG_GATE_REASONS: json.dumps(
                [f"val_auc {auc:.3f} vs champion: {'pass' if promoted else 'fail'}"]
            ),
            t.TAG_GATE_RULES: rules,
            t.TAG_GATE_CHAMPION: str(champion),
            t.TAG_GATE_AT: _iso(at),
            t.TAG_GATE_BY: f"{DAG}/gate",
            t.TAG_VALIDATION_REPORT: f"file:///tmp/bench/reports/{name}/{version}/validation.html",
        }
        rows.extend(
            SqlModelVersionTag(name=name, version=version, key=k, value=v) for k, v in version_tags.items()
        )
        if promoted:
            champion = version
    history = {
        f"{t.HISTORY_TAG_PREFIX}{seq}": json.dumps(
            {
                "alias": "champion",
                "from": str(max(1, seq - 1)),
                "to": str(seq + 1),
                "action": "promote",
                "at": _iso(T0 + seq * 60_000),
                "reason": "gate: val_auc improved",
                "by": f"{DAG}/gate",
            }  # fmt: skip
        )
        for seq in range(1, MOVES + 1)
    }
    checks = []
    for i in range(CHECKS):
        at = T0 + i * 3_600_000
        share = round(0.1 + 0.5 * ((i * 13) % 40) / 40, 3)
        decision = {"drifted": share >= 0.5, "emit": share >= 0.55, "confirmed": share >= 0.55, "reason": ""}
        rows += _run(
            drift_experiment_id,
            uuid.uuid4().hex,
            at,
            {"drift_share": share},
            {
                t.TAG_DRIFT_MODEL: name,
                t.TAG_DRIFT_VERSION: str(champion),
                t.TAG_DRIFT_THRESHOLD: "0.5",
                t.TAG_DRIFT_DECISION: json.dumps(decision),
                t.TAG_DRIFT_REPORT_URI: f"file:///tmp/bench/reports/{name}/drift/{i}.html",
                t.TAG_TI_KEY: f"{DAG}_drift/scheduled__{i}/check/-1",
            },
        )
        checks.append({"key": f"k{i}", "share": share, "version": str(champion), "at": at / 1000, **decision})
    state = {"history": checks[-20:], "consecutive": 0}
    summary = {
        t.TAG_DAG_ID: DAG,
        t.TAG_DRIFT_STATE: json.dumps(state),
        t.TAG_GATE_LAST: json.dumps(
            {"version": str(VERSIONS), "decision": "rejected", "at": _iso(T0), "reasons": []}
        ),
        t.TAG_TRAINING_LAST: json.dumps({"version": str(VERSIONS), "run_id": "", "dag_id": DAG, "at": T0}),
        **history,
    }
    rows.extend(SqlRegisteredModelTag(name=name, key=k, value=v) for k, v in summary.items())
    rows.append(SqlRegisteredModelAlias(name=name, alias="champion", version=champion))
    rows.append(SqlRegisteredModelAlias(name=name, alias="challenger", version=VERSIONS))
    return rows


def build_store(root: Path) -> str:
    """The registry of MODELS x VERSIONS in a new SQLite store; returns its URI."""
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    training = client.create_experiment("bench-training", artifact_location=(root / "a").as_uri())
    drift = client.create_experiment("mlops-drift", artifact_location=(root / "d").as_uri())
    store = SqlAlchemyStore(uri, (root / "a").as_uri())
    started = time.perf_counter()
    for index in range(MODELS):
        with store.ManagedSessionMaker() as session:
            session.add_all(_model(f"model_{index:03d}", training, drift))
    print(f"wrote {MODELS} models x {VERSIONS} versions in {time.perf_counter() - started:.1f}s", flush=True)
    return uri


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(uri: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--artifacts-destination",
         (root / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}") from None
            time.sleep(0.5)
    os.killpg(proc.pid, 9)
    raise RuntimeError("mlflow server did not answer /health within 120 s")


def measure(url: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    from airflow_mlops.core.model_view import list_models, model_detail
    from airflow_mlops.plugins import models_html

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    name = f"model_{MODELS // 2:03d}"

    def bare_models() -> int:
        count, token = 0, None
        while True:
            page = client.search_registered_models(max_results=1000, page_token=token)
            count += len(page)
            token = page.token
            if not token:
                return count

    def bare_versions() -> int:
        return len(client.search_model_versions(f"name = '{name}'", max_results=10_000))

    def list_page() -> tuple[int, int]:
        rows = list_models(client)
        html = models_html.list_page(rows, {}, {}, ui_prefix="", mlflow_ui=url, user="bench", elapsed=0.0)
        return len(rows), len(html)

    def model_page() -> tuple[Any, int]:
        detail = model_detail(client, name)
        html = models_html.model_page(
            detail, [], {}, can_edit=True, ui_prefix="", mlflow_ui=url, user="bench", elapsed=0.0
        )
        return detail, len(html)

    list_page()  # warm the server's connection pool and this process's imports
    bare_list_s, count = best_of(bare_models, REPEAT)
    list_s, (rows, list_bytes) = best_of(list_page, REPEAT)
    bare_versions_s, n_versions = best_of(bare_versions, REPEAT)
    page_s, (detail, page_bytes) = best_of(model_page, REPEAT)
    if count != MODELS or rows != MODELS:
        raise SystemExit(f"the list has {rows} rows of {count} models, not {MODELS}")
    if n_versions != VERSIONS or len(detail.versions) != VERSIONS:
        raise SystemExit(
            f"the model page has {len(detail.versions)} of {n_versions} versions, not {VERSIONS}"
        )
    if len(detail.drift) != CHECKS or not detail.timeline or not all(v.metrics for v in detail.versions):
        raise SystemExit(
            f"the model page has {len(detail.drift)} drift points (not {CHECKS}), {len(detail.timeline)} "
            "timeline events, or versions without metrics: the generated store and the read model disagree"
        )
    size = f"{MODELS}x{VERSIONS}"
    return {
        "size": size,
        "models_list_page_s": round(list_s, 4),
        "bare_search_models_s": round(bare_list_s, 4),
        "models_list_vs_bare_search": round(list_s / bare_list_s, 2),
        "models_list_page_bytes": list_bytes,
        "model_page_s": round(page_s, 4),
        "bare_search_versions_s": round(bare_versions_s, 4),
        "model_page_vs_bare_versions": round(page_s / bare_versions_s, 2),
        "model_page_bytes": page_bytes,
        "model_page_timeline_events": len(detail.timeline),
        "model_page_drift_points": len(detail.drift),
        f"models_list_page_s_{size}": round(list_s, 4),
        f"model_page_s_{VERSIONS}_versions": round(page_s, 4),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-models-view-") as tmp:
        root = Path(tmp)
        uri = build_store(root)
        proc, url = start_server(uri, root)
        try:
            emit(measure(url))
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


if __name__ == "__main__":
    main()
