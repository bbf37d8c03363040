"""core.validation on real files written by the tests, with real Great Expectations (no Airflow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core.validation import (
    REPORT_HTML_NAME,
    REPORT_JSON_NAME,
    load_suite,
    validate_dataset,
)
from airflow_mlops.exceptions import (
    DatasetError,
    DatasetNotFound,
    EmptyDatasetError,
    SchemaMismatch,
    SuiteError,
)

PASSING = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0, "max_value": 120},
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "country", "value_set": ["DE", "FR", "IT"]},
    },
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
]
FAILING = [
    *PASSING[:1],
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0, "max_value": 60},
    },
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "country", "value_set": ["DE", "FR"]}},
    {
        "type": "expect_column_mean_to_be_between",
        "kwargs": {"column": "income", "min_value": 0, "max_value": 10},
    },
]


def people(rows: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "age": rng.integers(18, 100, rows),
            "country": rng.choice(["DE", "FR", "IT"], rows),
            "income": rng.normal(50_000, 5_000, rows),
            "unused_blob": ["x" * 50] * rows,
        }
    )


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "people.parquet"
    people().to_parquet(path)
    return path


def assert_no_report(report: Path) -> None:
    assert not report.exists() or not any(report.iterdir()), list(report.iterdir())


# ---------------------------------------------------------------------------------------------- happy paths
def test_passing_suite_writes_reports_and_reads_only_needed_columns(parquet: Path, tmp_path: Path):
    report = tmp_path / "reports" / "run1"
    result = validate_dataset(str(parquet), PASSING, report_uri=str(report), labels={"dag_id": "d1"})

    assert result.success and result.rows == 300
    assert result.evaluated == result.successful == 4 and result.failed == ()
    assert result.columns_read == ("id", "age", "country")  # income and unused_blob never read
    assert result.fingerprint.startswith("xxh3:")
    summary = result.to_summary()
    assert summary["success"] is True and summary["status"] == "passed"
    assert summary["report_uri"] == str(report / REPORT_HTML_NAME)
    assert summary["report_json_uri"] == str(report / REPORT_JSON_NAME)
    assert len(json.dumps(summary)) < 2_000
    full = json.loads((report / REPORT_JSON_NAME).read_text())
    assert full["success"] is True and len(full["gx_results"]) == 4 and full["labels"] == {"dag_id": "d1"}
    page = (report / REPORT_HTML_NAME).read_text()
    assert "PASSED" in page and "d1" in page and "<script" not in page


def test_failing_suite_names_failed_expectations_in_result_and_reports(parquet: Path, tmp_path: Path):
    report = tmp_path / "rep"
    result = validate_dataset(str(parquet), FAILING, report_uri=str(report), suite_name="people_checks")

    assert not result.success
    assert result.evaluated == 4 and result.successful == 1 and result.unsuccessful == 3
    failed = {o.type: o for o in result.failed}
    assert set(failed) == {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_mean_to_be_between",
    }
    ages = people()["age"]
    assert failed["expect_column_values_to_be_between"].unexpected_count == int((ages > 60).sum())
    assert all(x > 60 for x in failed["expect_column_values_to_be_between"].examples)
    assert failed["expect_column_values_to_be_in_set"].examples == ["IT"]  # distinct examples
    assert failed["expect_column_mean_to_be_between"].observed_value == pytest.approx(
        people()["income"].mean()
    )
    assert [o.index for o in result.outcomes] == [0, 1, 2, 3]  # suite order, whatever GX's order

    summary = result.to_summary()
    assert summary["success"] is False and summary["unsuccessful"] == 3
    assert any(
        "expect_column_values_to_be_in_set(column=country)" in f for f in summary["failed_expectations"]
    )
    page = (report / REPORT_HTML_NAME).read_text()
    full = json.loads((report / REPORT_JSON_NAME).read_text())
    for kind in failed:
        assert kind in page
        assert any(kind in line for line in full["failed"])
    assert "FAILED" in page and "people_checks" in page and "country values must belong to this set" in page
    assert (
        "people_checks" in result.failure_message()
        and str(report / REPORT_HTML_NAME) in result.failure_message()
    )


def test_suite_from_gx_json_file_callable_csv_and_parquet_folder(tmp_path: Path):
    frame = people()
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:150].to_parquet(folder / "part-0.parquet")
    frame.iloc[150:].to_parquet(folder / "part-1.parquet")
    csv = tmp_path / "people.csv"
    frame.to_csv(csv, index=False)
    suite_file = tmp_path / "people_suite.json"
    suite_file.write_text(json.dumps({"name": "people_v1", "expectations": PASSING, "meta": {}}))

    from_file = validate_dataset(str(folder), str(suite_file))
    assert from_file.success and from_file.rows == 300 and from_file.suite_name == "people_v1"
    assert from_file.report_uri is None

    def build_suite():
        import great_expectations as gx
        import great_expectations.expectations as gxe

        suite = gx.ExpectationSuite(name="from_code")
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=50))
        return suite

    from_code = validate_dataset(f"file://{csv}", build_suite)
    assert from_code.suite_name == "from_code" and from_code.dataset_format == "csv"
    assert [o.success for o in from_code.outcomes] == [True, False]
    instance = validate_dataset(str(csv), build_suite())  # a gx.ExpectationSuite object works as well
    assert instance.suite_name == "from_code" and instance.suite_source == "gx.ExpectationSuite"


def test_schema_expectations_run_without_reading_every_column(parquet: Path):
    suite = [
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": list(people().columns)}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "not_there"}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 300}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
    ]
    result = validate_dataset(str(parquet), suite)
    assert result.columns_read == ("id",)
    assert [o.success for o in result.outcomes] == [True, False, True, True]

    only_schema = validate_dataset(str(parquet), suite[:3])
    assert only_schema.columns_read == () and only_schema.rows == 300


def test_fsspec_uri_dataset_and_report(parquet: Path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/mlops-test/people.parquet", parquet.read_bytes())
    result = validate_dataset(
        "memory://mlops-test/people.parquet", FAILING, report_uri="memory://mlops-test/rep"
    )
    assert not result.success and result.rows == 300
    assert fs.exists("/mlops-test/rep/validation.html") and fs.exists("/mlops-test/rep/validation.json")


def test_fingerprint_is_stable_across_runs_and_follows_content(parquet: Path, tmp_path: Path):
    first = validate_dataset(str(parquet), PASSING)
    copy = tmp_path / "elsewhere" / "copy.parquet"
    copy.parent.mkdir()
    shutil.copyfile(parquet, copy)  # same bytes, new path and mtime: hashed again, same value
    second = validate_dataset(str(copy), PASSING)
    again = validate_dataset(str(parquet), FAILING)
    assert first.fingerprint == second.fingerprint == again.fingerprint

    changed = tmp_path / "changed.parquet"
    people(seed=4).to_parquet(changed)
    assert validate_dataset(str(changed), PASSING).fingerprint != first.fingerprint


def test_empty_dataset_fails_unless_allowed(tmp_path: Path):
    empty = tmp_path / "empty.parquet"
    people().iloc[:0].to_parquet(empty)
    report = tmp_path / "rep"
    with pytest.raises(EmptyDatasetError) as err:
        validate_dataset(str(empty), PASSING, report_uri=str(report), suite_name="people_checks")
    message = str(err.value)
    assert "is empty (0 rows)" in message and str(empty) in message and "people_checks" in message
    assert "allow_empty=True" in message
    assert_no_report(report)

    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,age,country\n")
    with pytest.raises(EmptyDatasetError, match="is empty"):
        validate_dataset(str(header_only), PASSING[:3])

    allowed = validate_dataset(str(empty), PASSING, allow_empty=True, report_uri=str(report))
    assert allowed.rows == 0 and (report / REPORT_HTML_NAME).exists()
    assert not allowed.outcomes[3].success  # row count >= 100 fails on an empty dataset


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_file_and_folder(tmp_path: Path):
    report = tmp_path / "rep"
    for missing in (tmp_path / "nope.parquet", tmp_path / "no-folder"):
        with pytest.raises(DatasetNotFound) as err:
            validate_dataset(str(missing), PASSING, report_uri=str(report), suite_name="people_checks")
        message = str(err.value)
        assert str(missing) in message and "people_checks" in message and "Check the URI" in message
    assert not report.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_parquet(parquet: Path, tmp_path: Path, damage: str):
    bad = tmp_path / f"{damage}.parquet"
    data = parquet.read_bytes()
    bad.write_bytes(b"this is not parquet" * 10 if damage == "garbage" else data[: len(data) // 2])
    report = tmp_path / "rep"
    with pytest.raises(DatasetError) as err:
        validate_dataset(str(bad), PASSING, report_uri=str(report), suite_name="people_checks")
    message = str(err.value)
    assert str(bad) in message and "people_checks" in message and "rewrite it" in message
    assert not report.exists()


def test_unknown_expectation_type_suggests_the_right_name(parquet: Path, tmp_path: Path):
    suite = [*PASSING, {"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "age"}}]
    with pytest.raises(SuiteError) as err:
        validate_dataset(str(parquet), suite, report_uri=str(tmp_path / "rep"), suite_name="people_checks")
    message = str(err.value)
    assert "unknown expectation type 'expect_column_values_to_be_betwen'" in message
    assert "did you mean 'expect_column_values_to_be_between'" in message
    assert "expectation #4" in message and "people_checks" in message and str(parquet) in message
    assert not (tmp_path / "rep").exists()


def test_bad_expectation_kwargs(parquet: Path):
    suite = [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": "old"}}]
    with pytest.raises(SuiteError) as err:
        validate_dataset(str(parquet), suite)
    assert "invalid arguments for expectation #0" in str(err.value) and "min_value" in str(err.value)


def test_expectation_on_missing_column_lists_the_columns(parquet: Path, tmp_path: Path):
    suite = [*PASSING, {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "agee"}}]
    with pytest.raises(SchemaMismatch) as err:
        validate_dataset(str(parquet), suite, report_uri=str(tmp_path / "rep"), suite_name="people_checks")
    message = str(err.value)
    assert "'agee'" in message and str(parquet) in message and "people_checks" in message
    assert "['id', 'age', 'country', 'income', 'unused_blob']" in message
    assert not (tmp_path / "rep").exists()


def test_suite_file_that_is_not_json(parquet: Path, tmp_path: Path):
    suite_file = tmp_path / "broken_suite.json"
    suite_file.write_text('{"name": "broken", "expectations": [\n  {"type": "expect_column_to_exist",}\n')
    with pytest.raises(SuiteError) as err:
        validate_dataset(str(parquet), str(suite_file), report_uri=str(tmp_path / "rep"))
    message = str(err.value)
    assert str(suite_file) in message and "not valid JSON at line 2" in message and str(parquet) in message
    assert not (tmp_path / "rep").exists()

    with pytest.raises(SuiteError, match="does not exist"):
        validate_dataset(str(parquet), str(tmp_path / "missing_suite.json"))


@pytest.mark.parametrize(
    ("suite", "fragment"),
    [
        ([], "has no expectations"),
        ([{"kwargs": {}}], "has no 'type'"),
        (["expect_column_to_exist"], "each expectation is a dict"),
        ({"name": "x"}, "has no 'expectations' list"),
        (42, "unsupported suite int"),
        (lambda: 5, "must return a gx.ExpectationSuite"),
    ],
)
def test_malformed_suites(suite, fragment):
    with pytest.raises(SuiteError, match=fragment):
        load_suite(suite)


def test_row_condition_columns_are_read(tmp_path: Path):
    path = tmp_path / "rc.parquet"
    pd.DataFrame({"age": [10, 70, 80, 20], "country": ["DE", "DE", "FR", "FR"], "other": 1}).to_parquet(path)
    suite = [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {
                "column": "age",
                "max_value": 75,
                "row_condition": 'country=="DE"',
                "condition_parser": "pandas",
            },
        }
    ]
    result = validate_dataset(str(path), suite, examples=0)
    assert result.columns_read == ("age", "country") and result.success


_NOISY = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from airflow_mlops.core.validation import validate_dataset
suite = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}]
validate_dataset(sys.argv[1], suite, quiet=sys.argv[2] == "1")
"""


def test_gx_import_logging_and_progress_bars_are_silenced(parquet: Path):
    """With INFO logging configured (as inside Airflow), GX logs ~200 lines on import and draws progress bars."""
    import os
    import subprocess
    import sys

    def stderr(quiet: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", _NOISY, str(parquet), quiet],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    loud, quiet = stderr("0"), stderr("1")
    assert "Skipping registering" in loud and "Calculating Metrics" in loud  # the noise is real
    assert "Skipping registering" not in quiet and "Calculating Metrics" not in quiet
    assert "great_expectations" not in quiet, quiet


# ---------------------------------------------------------------------------------------------- issue 14
def test_numeric_expectation_on_a_text_column_names_column_type_and_values(tmp_path: Path):
    lines = ["age,country"] + [f"{'unknown' if i in (3, 8) else 20 + i},DE" for i in range(20)]
    csv = tmp_path / "people.csv"
    csv.write_text("\n".join(lines) + "\n")
    suite = [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "country", "value_set": ["DE"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0}},
    ]
    with pytest.raises(SchemaMismatch) as info:
        validate_dataset(str(csv), suite, report_uri=str(tmp_path / "report"))
    message = str(info.value)
    assert "column 'age' of dataset" in message and "people.csv is string" in message
    assert "expectation #1 expect_column_values_to_be_between(column=age)" in message
    assert "'unknown' (row 3), 'unknown' (row 8)" in message
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    "expectation",
    [
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "x", "min_value": 0}},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "x", "max_value": 9}},
    ],
)
def test_numbers_written_as_text_are_a_schema_mismatch_too(tmp_path: Path, expectation):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"x": ["1", "2", "3"]}).to_parquet(path, index=False)
    with pytest.raises(
        SchemaMismatch, match=r"column 'x' .* is string.*every value is a number written as text"
    ):
        validate_dataset(str(path), [expectation])


def test_text_expectations_on_text_columns_still_run(tmp_path: Path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"x": ["a", "b"], "n": [1.0, 2.0]}).to_parquet(path, index=False)
    suite = [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "x", "value_set": ["a"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0}},
    ]
    result = validate_dataset(str(path), suite)
    assert [o.success for o in result.outcomes] == [False, True]


def test_duplicate_columns_and_delimiter_are_dataset_errors_naming_the_suite(tmp_path: Path):
    (tmp_path / "semi.csv").write_text("id;age\n1;30\n")
    (tmp_path / "dup.csv").write_text("id,age,age\n1,30,31\n")
    with pytest.raises(DatasetError, match=r"looks ';'-delimited.*suite 'inline'.*was not run"):
        validate_dataset(str(tmp_path / "semi.csv"), PASSING[:1])
    with pytest.raises(
        DatasetError, match=r"duplicate column name\(s\) \['age'\].*suite 'inline'.*was not run"
    ):
        validate_dataset(str(tmp_path / "dup.csv"), PASSING[:1])
