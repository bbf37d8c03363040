"""Batch inference operators (operators/inference.py) with a registered sklearn model on a SQLite MLflow store.

Scores small parquet files in tmp_path: predictions and manifest written, skip on re-run, sharded plan/combine.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from airflow.sdk import AssetAlias

from airflow_mlops.core.storage import asset_uri
from airflow_mlops.exceptions import MlopsConfigError, SchemaMismatch, ScoringError
from airflow_mlops.links.inference import BatchInferenceModelLink
from airflow_mlops.operators.common import MlopsPermanentFailure
from airflow_mlops.operators.inference import (
    PREDICTIONS_ASSET_ALIAS,
    BatchInferenceCombineOperator,
    BatchInferenceOperator,
    BatchInferencePlanOperator,
)
from tests.unit.operators._support import FEATURES, UI_URL, feature_frame

ALIAS = AssetAlias(name=PREDICTIONS_ASSET_ALIAS)


@pytest.fixture
def champion(mlflow_conn, name):
    """``name`` v1 (the session's sklearn model) with the champion alias on it."""
    version = mlflow_conn.register(name, mlflow_conn.log_model_run(name, metrics={"val_auc": 0.9}))
    mlflow_conn.client.set_registered_model_alias(name, "champion", version)
    return name


@pytest.fixture
def input_file(tmp_path):
    frame = feature_frame(rows=50, seed=1)
    path = tmp_path / "input.parquet"
    frame.to_parquet(path, index=False)
    return path, frame


@pytest.fixture
def folder(tmp_path):
    """A dataset folder of three parquet files (20 rows each)."""
    path = tmp_path / "folder"
    path.mkdir()
    frames = [feature_frame(rows=20, seed=seed) for seed in (1, 2, 3)]
    for i, frame in enumerate(frames):
        frame.to_parquet(path / f"day-{i}.parquet", index=False)
    return path, frames


def score(champion_name: str, input_uri, output_uri, **kwargs) -> BatchInferenceOperator:
    return BatchInferenceOperator(
        task_id="score",
        model_uri=f"models:/{champion_name}@champion",
        input_uri=str(input_uri),
        output_uri=str(output_uri),
        passthrough_columns=["id"],
        **kwargs,
    )


def test_scores_the_input_writes_predictions_and_a_manifest_and_emits_once(
    mlflow_conn, champion, input_file, tmp_path, runtime
):
    path, frame = input_file
    output = tmp_path / "out" / "predictions.parquet"
    ctx = runtime.context("score")

    out = score(champion, path, output).execute(ctx)

    written = pd.read_parquet(output)
    assert list(written.columns) == ["id", "prediction"]
    assert written["id"].tolist() == frame["id"].tolist()
    assert written["prediction"].tolist() == mlflow_conn.model.predict(frame[FEATURES]).tolist()
    manifest = json.loads((tmp_path / "out" / "_predictions.parquet.manifest.json").read_text())
    assert (manifest["model_name"], manifest["model_version"], manifest["rows"]) == (champion, "1", 50)
    assert manifest["input_fingerprint"] == out["input_fingerprint"]
    assert out["model_name"] == champion and out["model_version"] == "1" and out["rows"] == 50
    assert out["model_uri"] == f"models:/{champion}/1" and out["skipped"] is False
    assert out["output_uri"] == str(output)
    assert (
        ctx["ti"].pushed(BatchInferenceModelLink.xcom_url_key) == f"{UI_URL}/#/models/{champion}/versions/1"
    )
    [event] = runtime.added(ALIAS)
    assert event.asset.uri == asset_uri(str(output))
    assert event.extra["model_version"] == "1" and event.extra["rows"] == 50
    assert event.extra["emit_key"].startswith("unit_dag/manual__unit/score/-1@")


def test_a_rerun_with_the_same_input_and_model_skips_and_does_not_emit_again(
    champion, input_file, tmp_path, runtime
):
    path, _ = input_file
    output = tmp_path / "predictions.parquet"
    op = score(champion, path, output)
    first = op.execute(runtime.context("score"))
    written_at = output.stat().st_mtime_ns

    again = op.execute(runtime.context("score", try_number=2))

    assert again["skipped"] is True and again["rows"] == first["rows"] == 50
    assert again["input_fingerprint"] == first["input_fingerprint"]
    assert output.stat().st_mtime_ns == written_at  # not rewritten
    assert len(runtime.added(ALIAS)) == 1  # the second try found its own event

    forced = score(champion, path, output, force=True).execute(runtime.context("score", try_number=3))
    assert forced["skipped"] is False and output.stat().st_mtime_ns != written_at


def test_an_input_that_does_not_fit_the_signature_fails_before_writing(champion, tmp_path, runtime):
    bad = tmp_path / "bad.parquet"
    feature_frame(rows=10).drop(columns=["b"]).to_parquet(bad, index=False)
    output = tmp_path / "predictions.parquet"

    with pytest.raises(MlopsPermanentFailure) as info:
        score(champion, bad, output).execute(runtime.context("score"))

    assert isinstance(info.value.error, SchemaMismatch)
    assert f"does not fit model {champion} v1" in str(info.value)
    assert not output.exists() and runtime.events == []


def test_an_unknown_alias_names_the_aliases_that_exist(champion, input_file, tmp_path, runtime):
    op = BatchInferenceOperator(
        task_id="score",
        model_uri=f"models:/{champion}@staging",
        input_uri=str(input_file[0]),
        output_uri=str(tmp_path / "p.parquet"),
    )

    with pytest.raises(MlopsPermanentFailure, match=r"has no alias 'staging' \(aliases: champion -> v1\)"):
        op.execute(runtime.context("score"))


def test_arguments_are_checked_at_parse_time():
    with pytest.raises(MlopsConfigError, match="flavor 'onnx'"):
        BatchInferenceOperator(
            task_id="s", model_uri="models:/m@c", input_uri="i", output_uri="o", flavor="onnx"
        )
    with pytest.raises(MlopsConfigError, match="num_shards must be at least 1"):
        BatchInferencePlanOperator(
            task_id="p", model_uri="models:/m@c", input_uri="i", output_uri="o", num_shards=0
        )


def test_plan_pins_the_version_and_combine_publishes_the_folder(
    mlflow_conn, champion, folder, tmp_path, runtime
):
    path, frames = folder
    out_dir = tmp_path / "sharded"
    plan_ctx = runtime.context("plan")

    shards = BatchInferencePlanOperator(
        task_id="plan", model_uri=f"models:/{champion}@champion", input_uri=str(path), output_uri=str(out_dir)
    ).execute(plan_ctx)

    assert [s["input_files"] for s in shards] == [["day-0.parquet"], ["day-1.parquet"], ["day-2.parquet"]]
    assert {s["model_uri"] for s in shards} == {f"models:/{champion}/1"}  # pinned, not the alias
    assert [s["output_uri"] for s in shards] == [str(out_dir / f"part-0000{i}.parquet") for i in range(3)]
    assert (
        plan_ctx["ti"].pushed(BatchInferenceModelLink.xcom_url_key).endswith(f"/models/{champion}/versions/1")
    )

    summaries = [
        BatchInferenceOperator(task_id="score", passthrough_columns=["id"], outlets=[], **kwargs).execute(
            runtime.context("score", map_index=i)
        )
        for i, kwargs in enumerate(shards)
    ]
    for summary, frame in zip(summaries, frames, strict=True):
        part = pd.read_parquet(summary["output_uri"])
        assert part["id"].tolist() == frame["id"].tolist()
        assert part["prediction"].tolist() == mlflow_conn.model.predict(frame[FEATURES]).tolist()
    assert runtime.events == []  # outlets=[]: the shards publish nothing themselves

    combined = BatchInferenceCombineOperator(
        task_id="combine", output_uri=str(out_dir), shards=summaries
    ).execute(runtime.context("combine"))

    assert combined["rows"] == 60 and combined["parts"] == 3 and combined["model_version"] == "1"
    manifest = json.loads((out_dir / "_manifest.json").read_text())
    assert manifest["kind"] == "predictions-combined" and manifest["rows"] == 60
    assert [p["output_uri"] for p in manifest["parts"]] == [s["output_uri"] for s in summaries]
    [event] = runtime.added(ALIAS)
    assert event.asset.uri == asset_uri(str(out_dir)) and event.extra["rows"] == 60


def test_combine_refuses_a_shard_that_did_not_finish(champion, folder, tmp_path, runtime):
    path, _ = folder
    out_dir = tmp_path / "sharded"
    shards = BatchInferencePlanOperator(
        task_id="plan", model_uri=f"models:/{champion}/1", input_uri=str(path), output_uri=str(out_dir)
    ).execute(runtime.context("plan"))
    BatchInferenceOperator(task_id="score", outlets=[], **shards[0]).execute(
        runtime.context("score", map_index=0)
    )
    combine = BatchInferenceCombineOperator(
        task_id="combine", output_uri=str(out_dir), shards=[s["output_uri"] for s in shards]
    )

    with pytest.raises(MlopsPermanentFailure) as info:
        combine.execute(runtime.context("combine"))

    assert isinstance(info.value.error, ScoringError)
    assert f"shard output {shards[1]['output_uri']} has no valid manifest" in str(info.value)
    assert not (out_dir / "_manifest.json").exists() and runtime.events == []
