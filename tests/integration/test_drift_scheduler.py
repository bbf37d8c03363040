"""Drift -> retraining through Airflow Assets under the real scheduler (``airflow standalone``).

``dag.test()`` does not follow Asset triggers, so this test starts a real scheduler, dag-processor and API
server in their own process group, triggers the drift-check DAG through the REST API, and waits for the
retraining DAG that the scheduler starts from the drift Asset event. It is the one slow drift test.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from airflow_mlops.core.lineage import fingerprint
from tests.helpers.airflow_standalone import AirflowStandalone
from tests.integration.test_drift import log_tiny_model, make_frame, register_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "drift-sched"

DAGS = """
from __future__ import annotations

import json
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_mlops.assets import drift_asset
from airflow_mlops.operators.drift import EvidentlyDetectDriftOperator

MODEL = {model!r}
OUT = {out!r}

with DAG("drift_check", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    EvidentlyDetectDriftOperator(
        task_id="drift",
        model_name=MODEL,
        current_uri="{{{{ dag_run.conf['current_uri'] }}}}",
        sample_size=0,
    )

with DAG("drift_retrain", schedule=[drift_asset(MODEL)], start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def retrain_on_newest_data(**context):
        import pandas as pd

        events = context["triggering_asset_events"][drift_asset(MODEL)]
        extra = dict(events[-1].extra)
        rows = len(pd.read_parquet(extra["current_uri"]))
        with open(OUT, "w") as handle:
            json.dump({{"extra": extra, "rows": rows, "run_type": str(context["dag_run"].run_type)}}, handle)
        return rows

    retrain_on_newest_data()
"""


def test_drift_event_starts_the_retraining_dag_under_the_real_scheduler(mlflow_server, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    make_frame(3000, 1).to_parquet(data / "train.parquet")
    make_frame(2000, 3, shift=1.0).drop(columns="label").to_parquet(data / "new.parquet")
    logged = log_tiny_model(str(data / "train.parquet"), experiment="drift-scheduler")
    version = register_model(logged, MODEL)

    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "retrain.json"
    (dags / "drift_dags.py").write_text(textwrap.dedent(DAGS.format(model=MODEL, out=str(out))))
    storage = tmp_path / "storage"
    with AirflowStandalone(
        tmp_path / "home", dags, extra_env={"AIRFLOW__MLOPS__STORAGE_BASE_URI": str(storage)}
    ) as airflow:
        airflow.wait_for_dags("drift_check", "drift_retrain")
        run_id = airflow.trigger("drift_check", {"current_uri": str(data / "new.parquet")})
        check = airflow.wait_for_run("drift_check", run_id=run_id)
        assert check["state"] == "success", airflow.task_instances("drift_check", run_id)
        retrain = airflow.wait_for_run("drift_retrain")
        assert retrain["state"] == "success", airflow.tail()
        assert retrain["run_type"] == "asset_triggered"

    written = json.loads(out.read_text())
    extra = written["extra"]
    assert written["rows"] == 2000
    assert extra["model_name"] == MODEL and extra["model_version"] == version
    assert sorted(extra["drifted_columns"]) == ["age", "income", "tenure"]
    assert extra["drift_share"] == pytest.approx(0.75)
    assert extra["current_fingerprint"] == fingerprint(str(data / "new.parquet"))
    assert Path(extra["report_uri"]).is_file() and str(storage) in extra["report_uri"]
    assert extra["check_key"] == f"drift_check/{run_id}/drift/-1"
