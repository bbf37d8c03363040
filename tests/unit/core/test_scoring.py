"""core.scoring without services: schema checks, streaming, exactly-once output, manifests, shards.

A real scikit-learn model scores real parquet/CSV files written by the tests; only the MLflow download is left
out (the integration tests cover it), by building the LoadedModel the way load_model does.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from airflow_mlops.core import scoring
from airflow_mlops.core.scoring import (
    FeatureSpec,
    LoadedModel,
    ModelRef,
    check_input_schema,
    combine_shards,
    manifest_uri_for,
    parse_model_uri,
    plan_shards,
    score_dataset,
)
from airflow_mlops.core.storage import TMP_PREFIX
from airflow_mlops.exceptions import (
    DatasetError,
    DatasetNotFound,
    MlopsConfigError,
    SchemaMismatch,
    ScoringError,
)

FEATURES = ["a", "b", "c"]
MANIFEST_KEYS = {
    "model_name",
    "model_version",
    "model_run_id",
    "input_uri",
    "input_fingerprint",
    "rows",
    "output_uri",
    "output_schema",
    "elapsed_s",
}


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
    df.insert(0, "id", np.arange(n, dtype=np.int64) + seed * 1_000_000)
    return df


@pytest.fixture(scope="module")
def clf() -> LogisticRegression:
    df = _frame(500, seed=9)
    return LogisticRegression().fit(df[FEATURES], (df.a + df.b > 0).astype(int))


def _loaded(clf: LogisticRegression, version: str = "3", fail_after: int | None = None) -> LoadedModel:
    specs = [FeatureSpec(f, "double") for f in FEATURES]
    predict = scoring.model._sklearn_predict(clf, clf.predict, FEATURES, specs)
    calls = {"n": 0}

    def maybe_failing(batch: pa.RecordBatch):
        calls["n"] += 1
        if fail_after is not None and calls["n"] > fail_after:
            raise RuntimeError("boom in the model")
        return predict(batch)

    ref = ModelRef(
        name="churn", version=version, run_id="r1", requested_uri="models:/churn@champion", alias="champion"
    )
    return LoadedModel(
        ref=ref, flavor="sklearn", features=specs, predict_fn=maybe_failing, signature_kind="columns"
    )


def _write(df: pd.DataFrame, path: Path, row_group_size: int = 100) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return str(path)


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------- URIs
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn@champion", ("churn", "champion", None)),
        ("models:/churn/7", ("churn", None, "7")),
        ("models:/churn/latest", ("churn", None, "latest")),
        ("models:/churn", ("churn", None, None)),
    ],
)
def test_parse_model_uri(uri, expected):
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "runs:/abc/model", "s3://bucket/model", "models:/a/b/c"])
def test_parse_model_uri_rejects_non_registry_uris(uri):
    with pytest.raises(MlopsConfigError, match="models:/"):
        parse_model_uri(uri)


def test_manifest_is_a_hidden_sibling():
    assert manifest_uri_for("s3://b/pred/2026.parquet") == "s3://b/pred/_2026.parquet.manifest.json"
    assert manifest_uri_for("/data/p.parquet") == "/data/_p.parquet.manifest.json"


# ---------------------------------------------------------------------------------------------- scoring
def test_predictions_equal_model_predict_with_passthrough(tmp_path, clf):
    df = _frame(1_234)
    src = _write(df, tmp_path / "in.parquet")
    out = tmp_path / "out" / "pred.parquet"
    result = score_dataset(_loaded(clf), src, str(out), passthrough_columns=["id"], batch_size=97)

    table = pq.read_table(out)
    assert table.column_names == ["id", "prediction"]
    assert table["id"].to_pylist() == df["id"].tolist()
    np.testing.assert_array_equal(table["prediction"].to_numpy(), clf.predict(df[FEATURES]))
    assert result.rows == 1_234 and not result.skipped
    manifest = json.loads(Path(manifest_uri_for(str(out))).read_text())
    assert set(manifest) >= MANIFEST_KEYS
    assert (
        manifest["rows"] == 1_234 and manifest["model_version"] == "3" and manifest["model_name"] == "churn"
    )
    assert manifest["input_fingerprint"].startswith("xxh3:")
    assert manifest["output_schema"] == [
        {"name": "id", "type": "int64"},
        {"name": "prediction", "type": "int64"},
    ]
    assert _visible(out.parent) == ["_pred.parquet.manifest.json", "pred.parquet"]


def test_folder_and_csv_inputs_give_the_same_predictions(tmp_path, clf):
    df = _frame(600)
    for i in range(3):
        _write(df.iloc[i * 200 : (i + 1) * 200], tmp_path / "parts" / f"part-{i}.parquet")
    (tmp_path / "csv").mkdir()
    df.to_csv(tmp_path / "csv" / "data.csv", index=False)
    a = score_dataset(
        _loaded(clf), str(tmp_path / "parts"), str(tmp_path / "a.parquet"), passthrough_columns=["id"]
    )
    b = score_dataset(
        _loaded(clf), str(tmp_path / "csv"), str(tmp_path / "b.parquet"), passthrough_columns=["id"]
    )
    assert a.rows == b.rows == 600
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_schema_errors_name_columns_and_model_and_write_nothing(tmp_path, clf):
    df = _frame(50).drop(columns=["b"]).assign(c=lambda d: d.c.astype(str))
    src = _write(df, tmp_path / "bad.parquet")
    out = tmp_path / "out" / "pred.parquet"
    with pytest.raises(SchemaMismatch) as err:
        score_dataset(_loaded(clf), src, str(out), passthrough_columns=["id", "customer"])
    text = str(err.value)
    for needle in ("['b']", "c (string, signature wants double)", "['customer']", "churn v3", "bad.parquet"):
        assert needle in text
    assert not out.parent.exists()


def test_a_bad_file_inside_a_folder_is_caught_before_writing(tmp_path, clf):
    _write(_frame(50), tmp_path / "parts" / "p0.parquet")
    _write(_frame(50).drop(columns=["a"]), tmp_path / "parts" / "p1.parquet")
    with pytest.raises(SchemaMismatch, match="p1.parquet"):
        score_dataset(_loaded(clf), str(tmp_path / "parts"), str(tmp_path / "out" / "p.parquet"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("mlflow_type", "arrow_type", "ok"),
    [
        ("double", pa.float32(), True),
        ("double", pa.int32(), True),
        ("double", pa.string(), False),
        ("long", pa.int64(), True),
        ("long", pa.float64(), False),
        ("integer", pa.int64(), False),
        ("float", pa.float64(), False),
        ("string", pa.large_string(), True),
        ("boolean", pa.int8(), False),
    ],
)
def test_type_rules(mlflow_type, arrow_type, ok, clf):
    model = _loaded(clf)
    model.features = [FeatureSpec("x", mlflow_type)]
    schema = pa.schema([("x", arrow_type)])
    if ok:
        check_input_schema(model, schema, dataset="d")
    else:
        with pytest.raises(SchemaMismatch, match="signature wants"):
            check_input_schema(model, schema, dataset="d")


def test_optional_signature_columns_may_be_missing(clf):
    model = _loaded(clf)
    model.features = [FeatureSpec("x", "double"), FeatureSpec("y", "double", required=False)]
    check_input_schema(model, pa.schema([("x", pa.float64())]), dataset="d")


def test_missing_and_corrupt_inputs_leave_nothing(tmp_path, clf):
    out = tmp_path / "out" / "pred.parquet"
    with pytest.raises(DatasetNotFound, match="does not exist"):
        score_dataset(_loaded(clf), str(tmp_path / "nope.parquet"), str(out))
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + os.urandom(2000))
    with pytest.raises(DatasetError, match="corrupt"):
        score_dataset(_loaded(clf), str(corrupt), str(out))
    assert not out.parent.exists()


def test_empty_input_succeeds_with_a_zero_row_manifest_and_warns(tmp_path, clf, caplog):
    src = _write(_frame(0), tmp_path / "empty.parquet")
    out = tmp_path / "out" / "pred.parquet"
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.core.scoring"):
        result = score_dataset(_loaded(clf), src, str(out), passthrough_columns=["id"])
    assert result.rows == 0 and not result.output_written
    assert not out.exists()
    manifest = json.loads(Path(result.manifest_uri).read_text())
    assert manifest["rows"] == 0 and manifest["empty"] is True
    assert any("no rows" in r.getMessage() for r in caplog.records)


def test_model_failure_mid_stream_leaves_no_output_and_no_temporaries(tmp_path, clf):
    src = _write(_frame(1_000), tmp_path / "in.parquet")
    out = tmp_path / "out" / "pred.parquet"
    with pytest.raises(ScoringError, match="churn v3 failed on a batch"):
        score_dataset(_loaded(clf, fail_after=3), src, str(out), batch_size=100)
    assert _visible(out.parent) == []


def test_rerun_replaces_output_and_manifest_and_cleans_stale_temporaries(tmp_path, clf):
    src = _write(_frame(300), tmp_path / "in.parquet")
    out = tmp_path / "out" / "pred.parquet"
    score_dataset(_loaded(clf, version="1"), src, str(out))
    (out.parent / f"{TMP_PREFIX}dead1234-pred.parquet").write_bytes(b"partial")
    second = score_dataset(_loaded(clf, version="2"), src, str(out))
    assert second.model_version == "2"
    assert json.loads(Path(second.manifest_uri).read_text())["model_version"] == "2"
    assert pq.read_table(out).num_rows == 300
    assert _visible(out.parent) == ["_pred.parquet.manifest.json", "pred.parquet"]


def test_progress_is_logged_with_eta(tmp_path, clf, caplog):
    src = _write(_frame(500), tmp_path / "in.parquet")
    with caplog.at_level(logging.INFO, logger="airflow_mlops.core.scoring"):
        score_dataset(_loaded(clf), src, str(tmp_path / "p.parquet"), batch_size=50, progress_interval=0.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Scored")]
    assert lines and "of 500 rows" in lines[0] and "ETA" in lines[0]


def test_output_uri_must_be_a_parquet_file(tmp_path, clf):
    src = _write(_frame(10), tmp_path / "in.parquet")
    with pytest.raises(MlopsConfigError, match=r"\.parquet"):
        score_dataset(_loaded(clf), src, str(tmp_path / "out/"))


# ---------------------------------------------------------------------------------------------- shards
def test_plan_shards_groups_consecutive_files(tmp_path):
    for i in range(5):
        _write(_frame(10, seed=i), tmp_path / "in" / f"p{i}.parquet")
    shards = plan_shards(
        str(tmp_path / "in"), str(tmp_path / "out"), model_uri="models:/churn/3", num_shards=2
    )
    assert [s.input_files for s in shards] == [
        ["p0.parquet", "p1.parquet", "p2.parquet"],
        ["p3.parquet", "p4.parquet"],
    ]
    assert [Path(s.output_uri).name for s in shards] == ["part-00000.parquet", "part-00001.parquet"]
    assert shards[0].to_kwargs()["model_uri"] == "models:/churn/3"
    assert len(plan_shards(str(tmp_path / "in"), str(tmp_path / "o"), model_uri="m")) == 5


def test_sharded_equals_unsharded_and_combine_removes_stray_parts(tmp_path, clf):
    for i in range(4):
        _write(_frame(150, seed=i), tmp_path / "in" / f"p{i}.parquet")
    whole = score_dataset(
        _loaded(clf), str(tmp_path / "in"), str(tmp_path / "whole.parquet"), passthrough_columns=["id"]
    )
    out_dir = tmp_path / "sharded"
    _write(_frame(5), out_dir / "part-00007.parquet")  # left by an earlier plan with more shards
    shards = plan_shards(str(tmp_path / "in"), str(out_dir), model_uri="models:/churn/3", num_shards=3)
    outputs = []
    for shard in shards:
        res = score_dataset(
            _loaded(clf),
            shard.input_uri,
            shard.output_uri,
            input_files=shard.input_files,
            passthrough_columns=["id"],
        )
        outputs.append(res.output_uri)
    combined = combine_shards(str(out_dir), outputs)
    assert combined.rows == whole.rows == 600 and combined.model_version == "3"
    assert [Path(u).name for u in combined.removed_stray_parts] == ["part-00007.parquet"]
    sharded = pq.read_table(out_dir)  # pyarrow skips the _manifest files
    assert sharded.equals(pq.read_table(tmp_path / "whole.parquet"))
    manifest = json.loads((out_dir / "_manifest.json").read_text())
    assert (
        manifest["rows"] == 600 and len(manifest["parts"]) == 3 and manifest["kind"] == "predictions-combined"
    )


def test_combine_refuses_mixed_versions_and_missing_shards(tmp_path, clf):
    for i in range(2):
        _write(_frame(20, seed=i), tmp_path / "in" / f"p{i}.parquet")
    shards = plan_shards(str(tmp_path / "in"), str(tmp_path / "out"), model_uri="models:/churn/3")
    with pytest.raises(ScoringError, match="did not finish"):
        combine_shards(str(tmp_path / "out"), [s.output_uri for s in shards])
    for shard, version in zip(shards, ["3", "4"], strict=True):
        score_dataset(
            _loaded(clf, version=version), shard.input_uri, shard.output_uri, input_files=shard.input_files
        )
    with pytest.raises(ScoringError, match="different model versions"):
        combine_shards(str(tmp_path / "out"), [s.output_uri for s in shards])


# ---------------------------------------------------------------------------------------------- issue 14
def test_nan_and_inf_name_column_count_and_row_and_leave_no_folder(tmp_path, clf):
    df = _frame(1_000)
    df.loc[[450, 480], "b"] = np.nan
    df.loc[460, "c"] = np.inf
    src = _write(df, tmp_path / "in.parquet")
    out = tmp_path / "new" / "deeper" / "pred.parquet"
    with pytest.raises(DatasetError) as info:  # batches 1-4 were written to the temporary file first
        score_dataset(_loaded(clf), src, str(out), batch_size=100)
    text = str(info.value)
    assert "in.parquet holds values model churn v3 cannot score" in text
    assert "2 missing (null or NaN) value(s) in column 'b' (first at row 450)" in text
    assert "1 infinite value(s) in column 'c' (first at row 460)" in text
    assert "counted in rows 400-499" in text and "Input X contains" in text
    assert "imputer" in text and "Replace the infinite values" not in text  # one sentence, fixes joined
    assert "replace the infinite values" in text
    assert not (tmp_path / "new").exists()  # the folders this attempt created are gone with the temporary


def test_an_existing_output_folder_is_kept_and_other_failures_stay_scoring_errors(tmp_path, clf):
    src = _write(_frame(300), tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    with pytest.raises(ScoringError, match="boom in the model"):
        score_dataset(
            _loaded(clf, fail_after=1), src, str(tmp_path / "out" / "sub" / "p.parquet"), batch_size=100
        )
    assert _visible(tmp_path / "out") == []  # 'sub' (created by the attempt) removed, 'out' kept


def test_a_model_that_takes_nan_still_scores_it(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = _frame(400)
    df.loc[::7, "a"] = np.nan
    model = HistGradientBoostingClassifier(max_iter=5).fit(df[FEATURES], (df.b > 0).astype(int))
    specs = [FeatureSpec(f, "double") for f in FEATURES]
    loaded = LoadedModel(
        ref=ModelRef(name="hgb", version="1", run_id=None, requested_uri="models:/hgb/1"),
        flavor="sklearn",
        features=specs,
        predict_fn=scoring.model._sklearn_predict(model, model.predict, FEATURES, specs),
        signature_kind="columns",
    )
    result = score_dataset(loaded, _write(df, tmp_path / "in.parquet"), str(tmp_path / "p.parquet"))
    assert result.rows == 400


def test_text_where_the_signature_wants_numbers_hints_at_stray_values(clf):
    model = _loaded(clf)
    with pytest.raises(
        SchemaMismatch, match=r"\['b'\] hold text where the model needs numbers.*non-numeric value"
    ):
        check_input_schema(
            model, pa.schema([("a", pa.float64()), ("b", pa.string()), ("c", pa.float64())]), dataset="d"
        )


def test_duplicate_columns_are_named_before_writing(tmp_path, clf):
    table = pa.table([pa.array([0.1, 0.2])] * 4, names=["a", "b", "c", "b"])
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(DatasetError, match=r"dup\.parquet has duplicate column name\(s\) \['b'\]"):
        score_dataset(_loaded(clf), str(tmp_path / "dup.parquet"), str(tmp_path / "out" / "p.parquet"))
    assert not (tmp_path / "out").exists()


class _Registry:
    """Just enough of MlflowClient for resolve_model's not-found paths."""

    def __init__(self, models: dict[str, dict[str, str]]) -> None:
        self.models = models

    @staticmethod
    def _missing(what: str) -> Exception:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        return MlflowException(f"{what} not found", error_code=RESOURCE_DOES_NOT_EXIST)

    def get_registered_model(self, name: str):
        if name not in self.models:
            raise self._missing(name)
        return type("RM", (), {"name": name, "aliases": self.models[name]})()

    def search_registered_models(self, max_results: int = 100):
        return [type("RM", (), {"name": n})() for n in self.models]

    def search_model_versions(self, filter_string: str, **kw):
        return [type("MV", (), {"version": v})() for v in ("1", "2")]

    def get_model_version(self, name: str, version: str):
        raise self._missing(f"{name} v{version}")


def test_unknown_model_lists_similar_names_and_unknown_version_lists_versions():
    from airflow_mlops.exceptions import ModelNotFound

    client = _Registry({"churn": {"champion": "1"}, "churn-eu": {}, "fraud": {}})
    with pytest.raises(ModelNotFound, match=r"'chrun'.*does not exist.*did you mean 'churn'"):
        scoring.resolve_model(client, "models:/chrun@champion")
    with pytest.raises(ModelNotFound, match=r"\(registered models: \['churn', 'churn-eu', 'fraud'\]\)"):
        scoring.resolve_model(client, "models:/zzz/1")
    with pytest.raises(ModelNotFound, match=r"no alias 'production' \(aliases: champion -> v1\)"):
        scoring.resolve_model(client, "models:/churn@production")
    with pytest.raises(ModelNotFound, match=r"no version 7 \(versions: \[1, 2\]; aliases: champion -> v1\)"):
        scoring.resolve_model(client, "models:/churn/7")


# ---------------------------------------------------------------------------------------------- issue 16
def test_frame_fitted_models_score_through_arrays_only_where_predictions_are_identical(tmp_path, recwarn):
    """A plain estimator fitted on a frame gets a bare array (sklearn's frame inspection skipped, no warning);
    a pipeline that picks columns by name keeps getting a frame; both predict exactly what the model does."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = _frame(700, seed=3)
    y = (df.a - df.c > 0).astype(int)
    plain = LogisticRegression().fit(df[["c", "a", "b"]], y)  # fitted in another column order
    by_name = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["b", "a"])], remainder="drop"), LogisticRegression()
    ).fit(df[FEATURES], y)
    specs = [FeatureSpec(f, "double") for f in FEATURES]
    table = pa.Table.from_pandas(df, preserve_index=False)
    batch = table.to_batches()[0]
    for model, expect_array in ((plain, True), (by_name, False)):
        used: list[str] = []
        real = model.predict

        def spy(x, real=real, used=used):
            used.append("frame" if hasattr(x, "columns") else "array")
            return real(x)

        predict = scoring.model._sklearn_predict(model, spy, FEATURES, specs)
        got = np.concatenate([predict(b) for b in table.to_batches(max_chunksize=128)])
        np.testing.assert_array_equal(got, real(df[list(model.feature_names_in_)]))
        assert used[-1] == ("array" if expect_array else "frame"), (model, used)
        assert predict(batch).shape == (len(df),)
    assert not [w for w in recwarn if "valid feature names" in str(w.message)]
