"""The Spark backend's pieces that need no Spark: paths, the job-side schema rule, errors, the part-exact skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.core.scoring.manifest import output_intact
from airflow_mlops.core.scoring.spark import check_output_folder, check_replaceable, folder_parts, spark_path
from airflow_mlops.core.scoring.spark_job import main as job_main
from airflow_mlops.core.scoring.spark_job import schema_problems
from airflow_mlops.exceptions import MlopsConfigError, SchemaMismatch, SparkJobFailed
from airflow_mlops.operators.spark import submit_error

FEATURES = [
    {"name": "age", "type": "long", "required": True},
    {"name": "charges", "type": "double", "required": True},
    {"name": "plan", "type": "string", "required": True},
]


def test_spark_paths_are_hadoop_paths(tmp_path: Path) -> None:
    assert spark_path(str(tmp_path / "a.parquet")) == f"file://{tmp_path}/a.parquet"
    assert spark_path(f"file://{tmp_path}/a") == f"file://{tmp_path}/a"
    assert spark_path("s3://bucket/key/part.parquet") == "s3a://bucket/key/part.parquet"
    assert spark_path("gs://bucket/key") == "gs://bucket/key"


def test_the_output_must_name_a_folder() -> None:
    assert (
        check_output_folder("s3://bucket/predictions/day.parquet/") == "s3://bucket/predictions/day.parquet"
    )
    for root in ("/", "s3://bucket", "s3://bucket/"):
        with pytest.raises(MlopsConfigError, match="names no folder of its own"):
            check_output_folder(root)


def test_only_an_earlier_jobs_parts_may_be_replaced(tmp_path: Path) -> None:
    job = _folder(tmp_path / "job.parquet", {"part-00000-a.snappy.parquet": b"x", "_SUCCESS": b"",
                                             ".part-00000-a.snappy.parquet.crc": b"c", "._SUCCESS.crc": b""})  # fmt: skip
    check_replaceable(str(job), None)  # a folder a killed try moved into place, no manifest yet
    check_replaceable(str(tmp_path / "absent"), None)
    lake = _folder(tmp_path / "lake", {"customers.parquet": b"x", "part-0.parquet": b"y"})
    with pytest.raises(
        MlopsConfigError, match=r"not an earlier scoring job's parts \(\['customers.parquet'\]\)"
    ):
        check_replaceable(str(lake), None)
    assert (lake / "customers.parquet").exists()
    with pytest.raises(MlopsConfigError, match="is a file"):
        check_replaceable(str(lake / "customers.parquet"), None)


def test_the_job_side_schema_rule_names_every_problem() -> None:
    fields = {"age": "int", "charges": "string", "id": "bigint"}
    problems = schema_problems(fields, FEATURES, ["id", "customer"])
    assert problems == [
        "missing column(s) ['plan']",
        "column(s) with types the signature rejects: charges (string, signature wants double)",
        "missing passthrough column(s) ['customer']",
    ]
    assert schema_problems({"age": "bigint", "charges": "float", "plan": "string"}, FEATURES, []) == []
    assert schema_problems({"age": "double", "charges": "double", "plan": "string"}, FEATURES, []) == [
        "column(s) with types the signature rejects: age (double, signature wants long)"
    ]


def test_the_application_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert job_main(["--oops"]) == 2
    assert "MLOPS_SCORING_ERROR usage" in capsys.readouterr().err


def test_a_failed_submit_becomes_one_clear_error() -> None:
    schema = submit_error(
        RuntimeError(
            "Cannot execute: spark-submit ... Error code is: 2.\nLast spark-submit output:\nINFO x\n"
            "MLOPS_SCORING_ERROR the input does not fit model models:/m/3: missing column(s) ['f2']."
        ),
        "/data/in",
        "m v3",
    )
    assert isinstance(schema, SchemaMismatch)
    assert "dataset /data/in: the input does not fit model models:/m/3: missing column(s) ['f2']" in str(
        schema
    )
    killed = submit_error(
        RuntimeError("Cannot execute: spark-submit --master local[2] x.py. Error code is: -9.\n"
                     "Last spark-submit output:\n" + "\n".join(f"line {i}" for i in range(40))),
        "/data/in",
        "m v3",
    )  # fmt: skip
    assert isinstance(killed, SparkJobFailed) and killed.retryable
    assert "spark-submit exited with code -9" in str(killed) and "line 39" in str(killed)
    assert "line 20" not in str(killed), "only the last lines of the output"


def _folder(root: Path, parts: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, payload in parts.items():
        (root / name).write_bytes(payload)
    return root


def test_a_spark_manifest_is_intact_only_with_its_exact_parts(tmp_path: Path) -> None:
    out = _folder(tmp_path / "p.parquet", {"part-0.parquet": b"a" * 10, "part-1.parquet": b"b" * 7, "_SUCCESS": b"",
                                            ".part-0.parquet.crc": b"c"})  # fmt: skip
    assert folder_parts(str(out)) == [
        {"path": "part-0.parquet", "bytes": 10},
        {"path": "part-1.parquet", "bytes": 7},
    ]
    manifest = {"output_uri": str(out), "output_written": True, "parts": folder_parts(str(out))}
    assert output_intact(json.loads(json.dumps(manifest)))
    (out / "part-2.parquet").write_bytes(b"stray")  # a part no manifest lists would be counted by readers
    assert not output_intact(manifest)
    (out / "part-2.parquet").unlink()
    (out / "part-1.parquet").write_bytes(b"short")
    assert not output_intact(manifest)
    assert not output_intact({**manifest, "output_uri": str(tmp_path / "gone")})
