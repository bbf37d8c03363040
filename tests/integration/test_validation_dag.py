"""GXValidateDatasetOperator inside real DAG runs (dag.test on the SQLite metadata DB) with real GX."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core.report_owner import read_owner
from tests.helpers.airflow import run_dag, task_states
from tests.helpers.xcom import xcom

pytestmark = pytest.mark.integration

SUITE_FILE = Path(__file__).resolve().parent.parent / "data" / "suites" / "orders_v1.json"
SUITE = json.loads(SUITE_FILE.read_text())


def orders(bad: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(200),
            "amount": rng.uniform(1, 100, 200),
            "status": rng.choice(["new", "paid"], 200),
        }
    )
    if bad:
        frame.loc[:9, "amount"] = -5.0
    return frame


@pytest.fixture
def data(storage_dir: Path) -> dict[str, str]:
    good, bad = storage_dir / "good.parquet", storage_dir / "bad.parquet"
    orders().to_parquet(good)
    orders(bad=True).to_parquet(bad)
    return {"good": str(good), "bad": str(bad), "dir": str(storage_dir)}


def orders_suite():
    """A suite built in code (the third way to give one); called by the operator in execute."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="orders_from_code")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0))
    return suite


def build_dag(dag_id: str, on_failure: str, suite: Any = str(SUITE_FILE)):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, task

    from airflow_mlops.operators.validation import GXValidateDatasetOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        validate = GXValidateDatasetOperator(
            task_id="validate",
            dataset_uri="{{ params.dataset }}",
            suite=suite,
            on_failure=on_failure,
            params={"dataset": ""},
        )

        @task.branch
        def route(summary: dict) -> str:
            return "train" if summary["success"] else "quarantine"

        downstream = EmptyOperator(task_id="downstream")
        validate >> downstream
        route(validate.output) >> [EmptyOperator(task_id="train"), EmptyOperator(task_id="quarantine")]
    return dag


def report_link(dag_run) -> str:
    """The URL the operator pushed for its extra link."""
    from airflow_mlops.links.validation import GXValidationReportLink

    url = xcom(dag_run, "validate", GXValidationReportLink.xcom_url_key)
    assert url is not None, "validate pushed no report link"
    return str(url)


def asset_events(alias_name: str) -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetAliasModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        alias = session.scalars(
            select(AssetAliasModel).where(AssetAliasModel.name == alias_name)
        ).one_or_none()
        if alias is None:
            return []
        return [(event.asset.uri, dict(event.extra)) for event in alias.asset_events]


def test_passing_dataset_succeeds_routes_and_publishes_asset_event(airflow_db, data):
    dag = build_dag("validation_pass", "fail", suite="../data/suites/orders_v1.json")  # next to the DAG file
    run = run_dag(dag, conf={"dataset": data["good"]})

    summary = xcom(run, "validate")
    assert summary["success"] is True and summary["status"] == "passed" and summary["rows"] == 200
    assert summary["suite"] == "orders_v1" and summary["on_failure"] == "fail"
    assert "/validation/validation_pass/" in summary["report_uri"]
    assert Path(summary["report_uri"]).exists() and Path(summary["report_json_uri"]).exists()
    states = task_states(run)
    assert (
        states["train"] == "success"
        and states["quarantine"] == "skipped"
        and states["downstream"] == "success"
    )

    link = report_link(run)
    assert "/mlops/reports/view?uri=" in link and "validation.html" in link
    owner = read_owner(str(Path(summary["report_uri"]).parent))  # what the report viewer authorizes by
    assert owner is not None and owner.dag_id == "validation_pass" and owner.task_id == "validate"
    assert sorted(owner.files) == ["validation.html", "validation.json"] and owner.scripts == ()

    events = asset_events("mlops-validated:validation_pass.validate")
    assert len(events) == 1
    uri, extra = events[0]
    assert uri == f"file://{data['good']}"
    assert extra["fingerprint"] == summary["fingerprint"] and extra["summary"]["success"] is True

    again = run_dag(dag, conf={"dataset": data["good"]})  # the fingerprint is stable across runs
    assert xcom(again, "validate")["fingerprint"] == summary["fingerprint"]


def test_on_failure_fail_writes_report_then_fails(airflow_db, data):
    run = run_dag(build_dag("validation_fail", "fail"), conf={"dataset": data["bad"]}, expect="failed")
    states = task_states(run)
    assert states["validate"] == "failed" and states["downstream"] == "upstream_failed"
    error = run.task_errors["validate"]
    assert "MlopsPermanentFailure" in error and "DataValidationFailed" in error  # not retried
    assert "expect_column_values_to_be_between(column=amount)" in error
    summary = xcom(run, "validate")  # pushed before failing
    assert summary["success"] is False and summary["unsuccessful"] == 1
    page = Path(summary["report_uri"]).read_text()
    assert "FAILED" in page and "expect_column_values_to_be_between" in page
    assert asset_events("mlops-validated:validation_fail.validate") == []


def test_on_failure_warn_succeeds_and_routes_on_the_summary(airflow_db, data):
    run = run_dag(build_dag("validation_warn", "warn"), conf={"dataset": data["bad"]})
    summary = xcom(run, "validate")
    assert summary["success"] is False and summary["status"] == "failed" and summary["on_failure"] == "warn"
    assert summary["failed_expectations"] == [
        "expect_column_values_to_be_between(column=amount): 10 unexpected (5%)"
    ]
    states = task_states(run)
    assert states["validate"] == "success" and states["downstream"] == "success"
    assert states["quarantine"] == "success" and states["train"] == "skipped"
    events = asset_events("mlops-validated:validation_warn.validate")
    assert len(events) == 1 and events[0][1]["summary"]["success"] is False
    assert json.loads(Path(summary["report_json_uri"]).read_text())["failed"][0].startswith(
        "expect_column_values_to_be_between"
    )


def test_on_failure_skip_skips_downstream(airflow_db, data):
    dag = build_dag("validation_skip", "skip", suite=orders_suite)
    run = run_dag(dag, conf={"dataset": data["bad"]})
    states = task_states(run)
    assert states["validate"] == "skipped"
    assert (
        states["downstream"] == "skipped"
        and states["train"] == "skipped"
        and states["quarantine"] == "skipped"
    )
    summary = xcom(run, "validate")
    assert summary["success"] is False and Path(summary["report_uri"]).exists()
    assert summary["suite"] == "orders_from_code" and summary["evaluated"] == 1


def test_bad_input_fails_the_task_with_a_clear_message_and_no_report(airflow_db, data):
    missing = f"{data['dir']}/nope.parquet"
    run = run_dag(build_dag("validation_missing", "warn"), conf={"dataset": missing}, expect="failed")
    error = run.task_errors["validate"]
    assert "DatasetNotFound" in error and missing in error and "orders_v1" in error
    assert xcom(run, "validate") is None
    from airflow_mlops.settings import get_settings

    assert not (Path(get_settings().report_base_uri) / "validation" / "validation_missing").exists()


def test_operator_parses_without_io_and_validates_arguments(tmp_path: Path):
    from airflow.sdk import DAG, Asset

    from airflow_mlops.exceptions import MlopsConfigError
    from airflow_mlops.operators.validation import GXValidateDatasetOperator

    with DAG("validation_parse", schedule=None, start_date=datetime(2026, 1, 1)):
        op = GXValidateDatasetOperator(
            task_id="v", dataset_uri=str(tmp_path / "does-not-exist-yet.parquet"), suite="missing.json"
        )
        fixed = GXValidateDatasetOperator(
            task_id="w", dataset_uri="s3://b/k.parquet", suite=SUITE["expectations"], asset="s3://b/k.parquet"
        )
    assert [o.name for o in op.outlets] == ["mlops-validated:validation_parse.v"]
    assert fixed.outlets == [Asset(uri="s3://b/k.parquet")]
    assert set(op.template_fields) >= {"dataset_uri", "suite", "report_uri"}
    with pytest.raises(MlopsConfigError, match="not one of"):
        GXValidateDatasetOperator(task_id="x", dataset_uri="a.parquet", suite=[], on_failure="explode")
    with pytest.raises(MlopsConfigError, match="suite of task y"):
        GXValidateDatasetOperator(task_id="y", dataset_uri="a.parquet", suite=42)
