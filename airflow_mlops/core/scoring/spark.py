"""Batch inference on Apache Spark, the Airflow side: pin, check, skip, then commit what the Spark job wrote.

The work is split between the task and the Spark application (:mod:`.spark_job`, run by ``spark-submit``):

1. the task resolves the alias once to a concrete version and reads its signature from ``MLmodel`` only;
2. under the output's writer lock it skips the job when the manifest proves the same input content and version
   were already scored into an intact folder, and checks every input file's schema against the signature
   before anything is submitted or written;
3. the Spark application scores the pinned version with ``mlflow.pyfunc.spark_udf`` and writes a hidden staging
   folder beside the output through Spark's file commit protocol (``_SUCCESS`` marks a committed job);
4. the task removes the old manifest, moves the committed folder into place and writes the manifest last, with
   every part file, its rows and bytes.

A killed attempt leaves at most a staging folder, which the next attempt deletes before it starts, or an output
folder without a manifest, which the next attempt replaces. The manifest names the exact part files, so a
reader that goes through it (and the skip rule) never counts a partial or a duplicated part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_mod
from airflow_mlops.core.scoring.manifest import (
    ScoringResult,
    manifest_uri_for,
    output_intact,
    read_manifest,
    same_job,
)
from airflow_mlops.core.scoring.model import ModelInputs, read_model_inputs
from airflow_mlops.core.scoring.refs import resolve_model
from airflow_mlops.core.scoring.stream import (
    DEFAULT_PREDICTION_COLUMN,
    _check_all_files,
    _exclusive_output,
    _select_files,
)
from airflow_mlops.core.storage import (
    TMP_PREFIX,
    check_uri,
    get_fs,
    is_local,
    local_path,
    remove,
    to_uri,
    write_json,
)
from airflow_mlops.exceptions import MlopsConfigError, ScoringError, SparkJobFailed

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mlflow import MlflowClient

    from airflow_mlops.core.data import DatasetRef

ENGINE = "spark"
JOB_FLAVOR = "spark_udf"
SUCCESS_MARKER = "_SUCCESS"
ARROW_BATCH_ROWS = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch's default: the udf's batch size
# spark-submit gets the spec as one argument; Linux caps one argument at 128 KiB. Above this many characters
# of file names the job reads the folder instead (Spark skips the same hidden files the task does).
MAX_LISTED_PATHS_CHARS = 64_000

logger = logging.getLogger(__name__)

_SCHEMES = {"s3": "s3a", "s3n": "s3a"}  # Hadoop's S3 connector is s3a://


def spark_path(uri: str) -> str:
    """The path Spark (Hadoop's filesystems) reads for ``uri``: ``file:///…`` locally, ``s3a://`` for S3."""
    uri = check_uri(uri, what="URI")
    if is_local(uri):
        return "file://" + posixpath.abspath(local_path(uri))
    scheme, _, rest = uri.partition("://")
    return f"{_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def check_output_folder(output_uri: str) -> str:
    """
    A Spark job writes a folder of parts: ``output_uri`` names that folder (``.parquet`` suffix optional), below
    a bucket's root on object stores (a re-run replaces the whole folder).
    """
    output_uri = check_uri(output_uri, what="output URI")
    stripped = output_uri.rstrip("/")
    path = get_fs(stripped)[1].strip("/") if stripped else ""
    remote_root = "://" in stripped and "/" not in path
    if not path or path == "." or remote_root:
        raise MlopsConfigError(
            f"output URI {output_uri!r} names no folder of its own; give the predictions folder the Spark job "
            "writes, e.g. s3://bucket/predictions/churn/2026-11-01.parquet (a re-run replaces that folder)."
        )
    return stripped


def _is_job_output(rel: str) -> bool:
    """A file a Spark parquet write leaves: ``part-*`` files, ``_SUCCESS`` and their ``.crc`` checksums."""
    name = posixpath.basename(rel)
    return "/" not in rel and (
        name.startswith(("part-", ".part-")) or name in (SUCCESS_MARKER, f".{SUCCESS_MARKER}.crc")
    )


def check_replaceable(output_uri: str, old_manifest: dict[str, Any] | None) -> None:
    """
    Refuse an output folder that holds anything but an earlier job's parts: a re-run replaces the whole folder,
    so pointing ``output_uri`` at a folder of other data must fail before anything is deleted.
    """
    fs, path = get_fs(output_uri)
    try:
        found = fs.find(path)
    except FileNotFoundError:
        return
    if fs.isfile(path):
        raise MlopsConfigError(
            f"output URI {output_uri} is a file; the Spark backend writes a folder of parts. Pick another URI."
        )
    listed = {p.get("path") for p in (old_manifest or {}).get("parts") or ()}
    foreign = sorted(
        rel
        for rel in (posixpath.relpath(f, path) for f in found)
        if rel not in listed and not _is_job_output(rel)
    )
    if foreign:
        raise MlopsConfigError(
            f"output folder {output_uri} holds files that are not an earlier scoring job's parts ({foreign[:5]}); "
            "a re-run replaces the whole folder, so nothing was deleted. Give each job a folder of its own."
        )


def _staging_uri(output_uri: str) -> str:
    head, _, name = output_uri.rpartition("/")
    staged = f"{TMP_PREFIX}spark{uuid.uuid4().hex[:12]}-{name}"  # remove_stale_temporaries knows the pattern
    return f"{head}/{staged}" if head else staged


def folder_parts(output_uri: str) -> list[dict[str, Any]]:
    """The data files of a predictions folder (hidden files skipped, as Spark does): relative path and bytes."""
    fs, path = get_fs(output_uri)
    try:
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        return []
    parts = []
    for file, info in sorted(found.items()):
        rel = posixpath.relpath(file, path)
        if any(p.startswith((".", "_")) for p in rel.split("/")) or info.get("type") == "directory":
            continue
        parts.append({"path": rel, "bytes": int(info.get("size") or 0)})
    return parts


@dataclass
class SparkScoringJob:
    """One prepared Spark scoring job: what to submit, and how to commit its output (or the skip result)."""

    model: ModelInputs
    dataset: DatasetRef
    output_uri: str
    manifest_uri: str
    staging_uri: str
    fingerprint: str
    passthrough_columns: list[str]
    prediction_column: str
    input_files: list[str] | None
    started: float
    total_rows: int
    done: ScoringResult | None = None
    log: Any = field(default=logger, repr=False)

    def job_spec(self, *, app_name: str = "mlops-batch-inference") -> dict[str, Any]:
        """The JSON the Spark application takes (``--spec``): paths in Spark's form, the pinned version, columns."""
        files = [spark_path(to_uri(self.dataset.fs, f)) for f in self.dataset.files]
        listed = self.dataset.is_dir and sum(len(f) for f in files) <= MAX_LISTED_PATHS_CHARS
        return {
            "app_name": app_name,
            "model_uri": self.model.ref.uri,
            "input_paths": files if listed or not self.dataset.is_dir else [spark_path(self.dataset.uri)],
            "recursive": bool(self.dataset.is_dir and not listed),
            "staging_path": spark_path(self.staging_uri),
            "features": [dataclasses.asdict(f) for f in self.model.features],
            "passthrough": self.passthrough_columns,
            "prediction_column": self.prediction_column,
            "prediction_type": self.model.prediction_type,
            "prediction_width": self.model.prediction_width,
        }

    def job_arguments(self, **kwargs: Any) -> list[str]:
        return ["--spec", json.dumps(self.job_spec(**kwargs), sort_keys=True)]

    def commit(self) -> ScoringResult:
        """
        After the Spark job succeeded: check its commit marker, move the staged folder into place, then write
        the manifest (parts, rows, schema) last. Raises SparkJobFailed (retried) when the job left no committed output.
        """
        fs, staging = get_fs(self.staging_uri)
        if not fs.exists(posixpath.join(staging, SUCCESS_MARKER)):
            raise SparkJobFailed(
                f"the Spark job reported success but {self.staging_uri} has no {SUCCESS_MARKER} marker: its output "
                "was not committed. Nothing was published; retry the task."
            )
        parts = folder_parts(self.staging_uri)
        rows, schema = self._read_footers(parts)
        remove(self.manifest_uri)  # the old manifest describes the folder this move replaces
        remove(self.output_uri, recursive=True)
        _, output_path = get_fs(self.output_uri)
        fs.mv(staging, output_path, recursive=True)
        remove(self.staging_uri, recursive=True)  # object stores: mv copies; what is left of the source goes
        moved = folder_parts(self.output_uri)
        if sorted(p["path"] for p in moved) != sorted(p["path"] for p in parts):
            raise SparkJobFailed(
                f"moving the committed parts into {self.output_uri} left {len(moved)} part(s) where the job wrote "
                f"{len(parts)}; no manifest was written. Retry the task."
            )
        rows_of = {p["path"]: p["rows"] for p in parts}
        for part in moved:
            part["rows"] = rows_of[part["path"]]
        return self._write_manifest(moved, rows, schema, output_written=True)

    def empty_result(self) -> ScoringResult:
        """An input without rows: no job is submitted, no folder written; the manifest records rows=0."""
        remove(self.manifest_uri)
        remove(self.output_uri, recursive=True)
        return self._write_manifest([], 0, [], output_written=False)

    def _read_footers(self, parts: list[dict[str, Any]]) -> tuple[int, list[dict[str, str]]]:
        import pyarrow.parquet as pq

        fs, staging = get_fs(self.staging_uri)
        rows, schema = 0, []
        for index, part in enumerate(parts):
            with fs.open(posixpath.join(staging, part["path"]), "rb") as handle:
                meta = pq.ParquetFile(handle)
                part["rows"] = int(meta.metadata.num_rows)
                rows += part["rows"]
                if index == 0:
                    schema = [{"name": f.name, "type": str(f.type)} for f in meta.schema_arrow]
        if rows != self.total_rows:
            raise ScoringError(
                f"the Spark job wrote {rows} prediction row(s) for {self.total_rows} input row(s) of "
                f"{self.dataset.uri}; nothing was published. Check the job's log (a filter or join in a custom "
                "application?) and retry."
            )
        return rows, schema

    def _write_manifest(
        self, parts: list[dict[str, Any]], rows: int, schema: list[dict[str, str]], *, output_written: bool
    ) -> ScoringResult:
        ref = self.model.ref
        result = ScoringResult(
            model_name=ref.name,
            model_version=ref.version,
            model_run_id=ref.run_id,
            model_uri=ref.uri,
            requested_model_uri=ref.requested_uri,
            flavor=JOB_FLAVOR,
            input_uri=self.dataset.uri,
            input_files=self.input_files,
            input_fingerprint=self.fingerprint,
            rows=rows,
            output_uri=self.output_uri,
            manifest_uri=self.manifest_uri,
            output_written=output_written,
            output_bytes=sum(int(p["bytes"]) for p in parts),
            output_schema=schema,
            passthrough_columns=self.passthrough_columns,
            prediction_columns=[s["name"] for s in schema if s["name"] not in self.passthrough_columns],
            prediction_column=self.prediction_column,
            batch_size=ARROW_BATCH_ROWS,
            elapsed_s=time.monotonic() - self.started,
            engine=ENGINE,
            parts=[{k: p[k] for k in ("path", "bytes", "rows") if k in p} for p in parts],
        )
        write_json(self.manifest_uri, result.manifest())
        self.log.info(
            "Committed %d prediction row(s) of %s in %d part(s) to %s (manifest %s) in %.1f s",
            rows,
            ref.describe(),
            len(parts),
            self.output_uri,
            self.manifest_uri,
            result.elapsed_s,
        )
        return result


@contextlib.contextmanager
def prepared_spark_job(
    client: MlflowClient,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    *,
    input_files: Sequence[str] | None = None,
    passthrough_columns: Sequence[str] = (),
    prediction_column: str = DEFAULT_PREDICTION_COLUMN,
    feature_columns: Sequence[str] | None = None,
    force: bool = False,
    log: logging.Logger | Any = None,
) -> Iterator[SparkScoringJob]:
    """
    Prepare one Spark scoring job and hold the output's writer lock while the caller submits and commits it.

    The yielded job has ``done`` set when there is nothing to submit (the manifest proves the work done, or the
    input has no rows); otherwise the caller runs the Spark application with ``job.job_arguments()`` and then
    calls ``job.commit()``. Everything that can be checked without Spark is checked before the yield: the model
    URI and version, its signature, the input's format and every file's schema, the passthrough columns.
    """
    from airflow_mlops.core.lineage import algorithm_of
    from airflow_mlops.core.lineage import fingerprint as content_fingerprint

    log = log or logger
    started = time.monotonic()
    output_uri = check_output_folder(output_uri)
    input_uri = check_uri(input_uri, what="input URI")
    passthrough = list(dict.fromkeys(passthrough_columns or ()))
    if prediction_column in passthrough:
        raise MlopsConfigError(
            f"passthrough column {prediction_column!r} clashes with the prediction column; rename prediction_column."
        )
    ref = resolve_model(client, model_uri)
    log.info("Resolved %s to %s (run %s)", model_uri, ref.uri, ref.run_id)
    inputs = read_model_inputs(ref, feature_columns=feature_columns)
    dataset = _select_files(data_mod.resolve_dataset(input_uri), input_files)
    if dataset.format != "parquet":
        raise MlopsConfigError(
            f"the Spark backend reads parquet; {dataset.describe()} is {dataset.format}. Convert the data to "
            "parquet, or score it with the single-machine BatchInferenceOperator."
        )
    with _exclusive_output(output_uri, log):
        manifest_uri = manifest_uri_for(output_uri)
        old = None if force else read_manifest(manifest_uri)
        fingerprint = content_fingerprint(
            dataset, algorithm=algorithm_of((old or {}).get("input_fingerprint"))
        )
        job = SparkScoringJob(
            model=inputs,
            dataset=dataset,
            output_uri=output_uri,
            manifest_uri=manifest_uri,
            staging_uri=_staging_uri(output_uri),
            fingerprint=fingerprint,
            passthrough_columns=passthrough,
            prediction_column=prediction_column,
            input_files=list(input_files) if input_files else None,
            started=started,
            total_rows=int(data_mod.count_rows(dataset) or 0),
            log=log,
        )
        params = {
            "passthrough_columns": passthrough,
            "prediction_column": prediction_column,
            "input_files": job.input_files,
            "output_uri": output_uri,
            "engine": ENGINE,
        }
        if old is not None and same_job(old, ref, fingerprint, params) and output_intact(old):
            log.info(
                "Skipping: %s already holds %d row(s) scored by %s from input %s",
                output_uri,
                old.get("rows", 0),
                ref.describe(),
                fingerprint,
            )
            job.done = ScoringResult.from_manifest(old, skipped=True)
            yield job
            return
        _check_all_files(inputs, dataset, passthrough)  # before anything is submitted or written
        check_replaceable(output_uri, old)
        if job.total_rows == 0:
            log.warning("Input %s has no rows: nothing to score, no Spark job submitted.", dataset.uri)
            job.done = job.empty_result()
        try:
            yield job
        finally:
            with contextlib.suppress(Exception):
                remove(job.staging_uri, recursive=True)  # a failed or killed job's staged parts go now
