"""GXValidateDatasetOperator (operators/validation.py): a 2-expectation suite on small parquet files, GX in-process.

No MLflow here; the context is the minimal fake of _support.py (its asset events read back across tries).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops.core.report_owner import OWNER_NAME
from airflow_mlops.core.storage import asset_uri
from airflow_mlops.exceptions import DataValidationFailed, MlopsConfigError, SchemaMismatch
from airflow_mlops.links.validation import GXValidationReportLink
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.validation import GXValidateDatasetOperator

SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0, "max_value": 120},
    },
]
ALIAS = AssetAlias(name="mlops-validated:validate")  # the per-task alias of a task outside a DAG


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.parquet"
    pd.DataFrame({"age": [18 + i % 70 for i in range(200)], "country": ["DE", "FR"] * 100}).to_parquet(path)
    return path


@pytest.fixture
def bad(tmp_path):
    """Two ages out of range (150, 200): the between-expectation fails, the not-null one passes."""
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"age": [30] * 198 + [150, 200], "country": ["DE"] * 200}).to_parquet(path)
    return path


def validate(dataset, report_dir, **kwargs) -> GXValidateDatasetOperator:
    return GXValidateDatasetOperator(
        task_id="validate", dataset_uri=str(dataset), suite=SUITE, report_uri=str(report_dir), **kwargs
    )


def test_a_passing_suite_writes_the_reports_and_publishes_the_dataset_once(good, tmp_path, runtime):
    reports = tmp_path / "reports"
    op = validate(good, reports)
    ctx = runtime.context("validate")

    out = op.execute(ctx)

    assert out["success"] is True and out["status"] == "passed"
    assert (out["rows"], out["evaluated"], out["successful"], out["unsuccessful"]) == (200, 2, 2, 0)
    assert out["failed_expectations"] == [] and out["on_failure"] == "fail"
    assert out["fingerprint"].startswith("xxh3:")
    assert {"validation.html", "validation.json", OWNER_NAME} <= {p.name for p in reports.iterdir()}
    assert json.loads((reports / "validation.json").read_text())["success"] is True
    assert json.loads((reports / OWNER_NAME).read_text())["task_id"] == "validate"
    assert ctx["ti"].pushed(GXValidationReportLink.xcom_url_key).endswith("validation.html")
    [event] = runtime.added(ALIAS)
    assert event.asset.uri == asset_uri(str(good))
    assert event.extra["fingerprint"] == out["fingerprint"] and event.extra["summary"]["success"] is True

    op.execute(runtime.context("validate", try_number=2))  # a retry validating the same data
    assert len(runtime.added(ALIAS)) == 1


def test_a_failing_suite_fails_the_task_for_good_after_writing_the_report(bad, tmp_path, runtime):
    reports = tmp_path / "reports"
    ctx = runtime.context("validate")

    with pytest.raises(MlopsPermanentFailure) as info:
        validate(bad, reports).execute(ctx)

    assert isinstance(info.value.error, DataValidationFailed)
    assert "1 of 2 expectations failed" in str(info.value)
    assert "expect_column_values_to_be_between" in str(info.value)
    summary = ctx["ti"].pushed("return_value")
    assert summary["success"] is False and summary["unsuccessful"] == 1 and summary["on_failure"] == "fail"
    assert len(summary["failed_expectations"]) == 1 and "age" in summary["failed_expectations"][0]
    assert json.loads((reports / "validation.json").read_text())["success"] is False
    assert runtime.events == []  # failed data is not published


def test_a_failing_suite_with_warn_succeeds_and_publishes(bad, tmp_path, runtime):
    out = validate(bad, tmp_path / "reports", on_failure="warn").execute(runtime.context("validate"))

    assert out["success"] is False and out["status"] == "failed" and out["on_failure"] == "warn"
    [event] = runtime.added(ALIAS)
    assert event.extra["summary"]["success"] is False


def test_a_failing_suite_with_skip_skips_and_publishes_nothing(bad, tmp_path, runtime):
    ctx = runtime.context("validate")

    with pytest.raises(AirflowSkipException, match="on_failure=skip: downstream tasks skip"):
        validate(bad, tmp_path / "reports", on_failure="skip").execute(ctx)

    assert ctx["ti"].pushed("return_value")["success"] is False
    assert runtime.events == []


def test_an_explicit_asset_gets_the_event_extra(good, tmp_path, runtime):
    asset = Asset(uri="s3://lake/good.parquet")
    ctx = runtime.context("validate")

    out = validate(good, tmp_path / "reports", asset=asset).execute(ctx)

    assert ctx["outlet_events"][asset].extra == {"fingerprint": out["fingerprint"], "summary": out}
    assert runtime.events == []  # an Asset outlet: Airflow emits the event itself, no alias add


def test_a_column_the_data_lacks_fails_without_a_report(good, tmp_path, runtime):
    reports = tmp_path / "reports"
    suite = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "income"}}]
    op = GXValidateDatasetOperator(
        task_id="validate", dataset_uri=str(good), suite=suite, report_uri=str(reports)
    )

    with pytest.raises(MlopsPermanentFailure) as info:
        op.execute(runtime.context("validate"))

    assert isinstance(info.value.error, SchemaMismatch) and "income" in str(info.value)
    assert not reports.exists() or not any(reports.iterdir())


def test_arguments_are_checked_at_parse_time():
    with pytest.raises(MlopsConfigError, match="on_failure='ignore'"):
        GXValidateDatasetOperator(task_id="v", dataset_uri="d", suite=SUITE, on_failure="ignore")
    with pytest.raises(MlopsConfigError, match="suite of task v is a int"):
        GXValidateDatasetOperator(task_id="v", dataset_uri="d", suite=3)
