"""core.drift on real Evidently with generated data: decisions, named columns, reports, sampling, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core.drift import default_method, detect_drift, load_sample, sample_indices
from airflow_mlops.exceptions import (
    DatasetNotFound,
    DriftDetectionError,
    EmptyDatasetError,
    MlopsConfigError,
    SchemaMismatch,
)


def _frame(n: int, seed: int, shift: dict[str, float] | None = None, cats: str = "abc") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift = shift or {}
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift.get("age", 0) * 10, 10, n),
            "income": rng.lognormal(10 + shift.get("income", 0), 0.5, n),
            "tenure": rng.normal(5 + shift.get("tenure", 0) * 2, 2, n),
            "score": rng.normal(0, 1, n),
            "plan": rng.choice(list(cats), n),
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("drift-data")
    paths = {}
    frames = {
        "ref": _frame(8000, 1),
        "same": _frame(6000, 2),
        "shifted": _frame(6000, 3, shift={"age": 1.0, "income": 0.6, "tenure": 1.0}),
    }
    for name, frame in frames.items():
        path = root / f"{name}.parquet"
        frame.to_parquet(path, row_group_size=2500)
        paths[name] = str(path)
    return paths


def test_no_drift_on_same_distribution(data, tmp_path):
    result = detect_drift(data["ref"], data["same"], report_uri=str(tmp_path / "r"))
    assert not result.drift_detected
    assert result.drifted_columns == []
    assert result.drift_share == 0.0
    assert {c.column for c in result.columns} == {"age", "income", "tenure", "score", "plan"}
    methods = {c.column: c.method for c in result.columns}
    assert methods["age"] == "wasserstein" and methods["plan"] == "jensenshannon"


def test_drift_names_the_shifted_columns_and_writes_reports(data, tmp_path):
    report = tmp_path / "reports" / "check"
    result = detect_drift(data["ref"], data["shifted"], report_uri=str(report))
    assert result.drift_detected
    assert sorted(result.drifted_columns) == ["age", "income", "tenure"]
    assert result.drift_share == pytest.approx(3 / 5)
    for name in ("drift.html", "drift.json", "result.json"):
        assert (report / name).stat().st_size > 0
    assert "<html" in (report / "drift.html").read_text()[:2000].lower()
    stored = json.loads((report / "result.json").read_text())
    assert stored["drifted_columns"] == result.drifted_columns
    assert stored["reference_fingerprint"].startswith("xxh3:")
    summary = result.to_summary()
    assert summary["report_uri"] == str(report / "drift.html")
    assert len(json.dumps(summary)) < 2000
    assert not [p for p in report.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_columns_are_projected_and_threshold_is_share(data, tmp_path):
    result = detect_drift(
        data["ref"],
        data["shifted"],
        report_uri=str(tmp_path / "r"),
        columns=["age", "score"],
        drift_share=0.6,
    )
    assert [c.column for c in result.columns] == ["age", "score"]
    assert result.drifted_columns == ["age"]
    assert result.drift_share == 0.5 and not result.drift_detected


def test_sampling_is_deterministic_and_keeps_the_full_data_decision(data, tmp_path):
    kwargs = {"report_uri": str(tmp_path / "s"), "sample_size": 5000, "seed": 7, "fingerprints": False}
    first = detect_drift(data["ref"], data["shifted"], **kwargs)
    second = detect_drift(data["ref"], data["shifted"], **kwargs)
    full = detect_drift(data["ref"], data["shifted"], report_uri=str(tmp_path / "f"), sample_size=0)
    assert first.sampled and first.reference_sample_rows == 5000 and first.reference_rows == 8000
    assert [c.score for c in first.columns] == [c.score for c in second.columns]
    assert first.drifted_columns == full.drifted_columns
    assert [c.method for c in first.columns] == [c.method for c in full.columns]


def test_streamed_sample_equals_in_memory_take(data):
    from airflow_mlops.core.data import read_table, resolve_dataset

    ref = resolve_dataset(data["ref"])
    table, total = load_sample(ref, ["age", "plan"], 3000, seed=3, stream=0, batch_size=700)
    expected = read_table(ref, ["age", "plan"]).take(sample_indices(8000, 3000, 3, 0))
    assert total == 8000 and table.equals(expected)


def test_unseen_categories_are_drift_not_a_crash(data, tmp_path):
    cur = _frame(3000, 5, cats="abcxyz")
    path = tmp_path / "cur.parquet"
    cur.to_parquet(path)
    result = detect_drift(data["ref"], str(path), report_uri=str(tmp_path / "r"), columns=["plan", "score"])
    plan = next(c for c in result.columns if c.column == "plan")
    assert plan.drifted and plan.unseen_categories == ("x", "y", "z")


def test_small_data_uses_p_value_tests_with_unseen_categories(tmp_path):
    ref, cur = _frame(400, 1), _frame(400, 2, cats="abd")
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    result = detect_drift(
        str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv"), report_uri=str(tmp_path / "r")
    )
    methods = {c.column: c.method for c in result.columns}
    assert methods["age"] == "ks" and methods["plan"] == "chisquare"
    assert "plan" in result.drifted_columns and "age" not in result.drifted_columns


def test_prediction_drift_is_reported_apart_from_the_share(data, tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"prediction": rng.normal(0, 1, 8000)}).to_parquet(tmp_path / "ref_pred.parquet")
    pd.DataFrame({"prediction": rng.normal(2, 1, 6000)}).to_parquet(tmp_path / "cur_pred.parquet")
    result = detect_drift(
        data["ref"],
        data["same"],
        report_uri=str(tmp_path / "r"),
        prediction_column="prediction",
        reference_predictions_uri=str(tmp_path / "ref_pred.parquet"),
        current_predictions_uri=str(tmp_path / "cur_pred.parquet"),
    )
    assert result.prediction is not None and result.prediction.drifted
    assert not result.drift_detected and result.drifted_columns == []
    assert result.to_summary()["prediction_drift"] is True


def test_no_common_columns_lists_both(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "ref.parquet")
    pd.DataFrame({"b": [1.0, 2.0]}).to_parquet(tmp_path / "cur.parquet")
    with pytest.raises(SchemaMismatch, match=r"no column in common.*\['a'\].*\['b'\]"):
        detect_drift(
            str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), report_uri=str(tmp_path / "r")
        )
    assert not (tmp_path / "r").exists()


def test_all_null_column_is_a_clear_error(data, tmp_path):
    cur = _frame(500, 9)
    cur["income"] = np.nan
    cur.to_parquet(tmp_path / "cur.parquet")
    with pytest.raises(DriftDetectionError, match=r"\['income'\] hold only nulls in the current data"):
        detect_drift(data["ref"], str(tmp_path / "cur.parquet"), report_uri=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_empty_current_data_is_a_clear_error(data, tmp_path):
    _frame(10, 1).iloc[:0].to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(EmptyDatasetError, match="current data .* is empty"):
        detect_drift(data["ref"], str(tmp_path / "empty.parquet"), report_uri=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_missing_reference_and_missing_columns(data, tmp_path):
    with pytest.raises(DatasetNotFound, match="does not exist"):
        detect_drift(str(tmp_path / "nope.parquet"), data["same"], report_uri=str(tmp_path / "r"))
    with pytest.raises(SchemaMismatch, match=r"\['zip'\] missing from the reference data"):
        detect_drift(data["ref"], data["same"], report_uri=str(tmp_path / "r"), columns=["age", "zip"])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    from airflow_mlops.exceptions import DatasetError

    with pytest.raises(DatasetError, match="bad.parquet"):
        detect_drift(str(tmp_path / "bad.parquet"), data["same"], report_uri=str(tmp_path / "r"))


def test_type_conflict_and_bad_config(data, tmp_path):
    cur = _frame(300, 1)
    cur["age"] = cur["age"].astype(str)
    cur.to_parquet(tmp_path / "cur.parquet")
    with pytest.raises(SchemaMismatch, match="column 'age' is numerical"):
        detect_drift(data["ref"], str(tmp_path / "cur.parquet"), report_uri=str(tmp_path / "r"))
    with pytest.raises(MlopsConfigError, match="sample_size"):
        detect_drift(data["ref"], data["same"], report_uri=str(tmp_path / "r"), sample_size=10)
    with pytest.raises(MlopsConfigError, match="drift_share"):
        detect_drift(data["ref"], data["same"], report_uri=str(tmp_path / "r"), drift_share=0)


def test_default_method_matches_evidently_rules():
    assert default_method("numerical", 5000, 100) == "wasserstein"
    assert default_method("numerical", 5000, 4) == "jensenshannon"
    assert default_method("numerical", 500, 100) == "ks"
    assert default_method("numerical", 500, 2) == "z"
    assert default_method("categorical", 500, 3) == "chisquare"
    assert default_method("categorical", 50_000, 3) == "jensenshannon"


def test_sample_indices_are_seeded_sorted_and_unique():
    a, b = sample_indices(100_000, 5000, 1, 0), sample_indices(100_000, 5000, 1, 0)
    assert (a == b).all() and len(set(a.tolist())) == 5000 and (np.diff(a) > 0).all()
    assert not (a == sample_indices(100_000, 5000, 1, 1)).all()
    assert len(sample_indices(10, 5000, 1, 0)) == 10


# ---------------------------------------------------------------------------------------------- issue 14
def test_infinite_values_are_an_error_not_a_silent_score(data, tmp_path):
    from airflow_mlops.exceptions import DatasetError

    cur = _frame(500, 9, shift={"age": 1.0})
    cur.loc[[4, 40], "age"] = np.inf
    cur.loc[7, "tenure"] = -np.inf
    cur.to_parquet(tmp_path / "cur.parquet")
    with pytest.raises(DatasetError) as info:
        detect_drift(data["ref"], str(tmp_path / "cur.parquet"), report_uri=str(tmp_path / "r"))
    message = str(info.value)
    assert "column 'age' of the current data" in message and "2 infinite value(s) (first at row 4)" in message
    assert (
        "column 'tenure' of the current data" in message and "1 infinite value(s) (first at row 7)" in message
    )
    assert not (tmp_path / "r").exists()
    # in the sampled reference: counted in the sample, no row number (it would not be the file's)
    ref = _frame(8000, 1)
    ref.loc[[10, 20, 30], "score"] = -np.inf
    ref.to_parquet(tmp_path / "ref.parquet")
    with pytest.raises(
        DatasetError, match=r"column 'score' of the reference data .* in a sample of 5000 of its 8000"
    ):
        detect_drift(
            str(tmp_path / "ref.parquet"), data["same"], report_uri=str(tmp_path / "r"), sample_size=5000
        )


def test_some_nulls_are_ignored_and_duplicates_are_named(data, tmp_path):
    from airflow_mlops.exceptions import DatasetError

    cur = _frame(600, 9)
    cur.loc[:50, "age"] = np.nan
    cur.to_parquet(tmp_path / "cur.parquet")
    result = detect_drift(data["ref"], str(tmp_path / "cur.parquet"), report_uri=str(tmp_path / "r"))
    assert not result.drift_detected
    (tmp_path / "dup.csv").write_text("age,age\n1,2\n")
    with pytest.raises(DatasetError, match=r"dup\.csv has duplicate column name\(s\) \['age'\]"):
        detect_drift(data["ref"], str(tmp_path / "dup.csv"), report_uri=str(tmp_path / "r2"))
    assert not (tmp_path / "r2").exists()


def test_embedded_report_json_is_defused_and_decodes_to_the_same_data(tmp_path):
    """A data value that closes a script element stays inert text in Evidently's HTML (issue 14)."""
    import json

    from airflow_mlops.core.drift.engine import _defuse_embedded_json

    data = {"values": ["</script><script>alert(1)</script>", "a & b > c", "\\u003c stays"], "n": 3}
    page = tmp_path / "drift.html"
    page.write_text(
        "<html><script>var lib = 1;</script><script>\n    var dash_1 = "
        + json.dumps(data)
        + ";\n    var additional_graphs_dash_1 = [];\n</script><p>a < b</p></html>"
    )
    _defuse_embedded_json(str(page))
    html = page.read_text()
    assert "</script><script>alert(1)" not in html
    assert html.count("</script>") == 2 and "<p>a < b</p>" in html  # the page's own markup is untouched
    start = html.index("var dash_1 = ") + len("var dash_1 = ")
    assert json.JSONDecoder().raw_decode(html, start)[0] == data  # the same data to JavaScript


def test_drift_sensor_since_takes_a_templated_epoch_or_iso_text():
    from airflow_mlops.exceptions import MlopsConfigError
    from airflow_mlops.sensors.drift import _since_epoch

    assert _since_epoch("1796238371.5", {}) == 1796238371.5  # "{{ ... }}" renders as text
    assert _since_epoch(" 1796238371 ", {}) == 1796238371.0
    assert _since_epoch("2026-12-02T00:00:00Z", {}) == 1796169600.0
    with pytest.raises(MlopsConfigError, match="not an ISO-8601 timestamp or epoch seconds"):
        _since_epoch("yesterday", {})
