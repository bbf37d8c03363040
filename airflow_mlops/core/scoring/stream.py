"""Streaming one dataset through one model version into one predictions file, exactly once.

:func:`run_batch_inference` is the whole job: resolve the model once, skip when the manifest proves the work
done, load the model, check every input file's schema, stream Arrow batches (bounded memory) into a hidden
temporary file, rename it into place complete, and write the manifest last. One writer per output holds its lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import posixpath
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_mod
from airflow_mlops.core.scoring.manifest import (
    ScoringResult,
    check_output_uri,
    manifest_uri_for,
    output_intact,
    read_manifest,
    remove_stale_temporaries,
    same_job,
)
from airflow_mlops.core.scoring.model import LoadedModel, ModelFlavor, ModelInputs, load_model
from airflow_mlops.core.scoring.refs import resolve_model
from airflow_mlops.core.scoring.schema import (
    bad_values_error,
    check_input_schema,
    removing_new_folders_on_error,
)
from airflow_mlops.core.storage import atomic_write, check_uri, exclusive, get_fs, remove, to_uri, write_json
from airflow_mlops.core.tags import PARQUET_MODEL_KEY
from airflow_mlops.exceptions import (
    DatasetNotFound,
    MlopsConfigError,
    SchemaMismatch,
    ScoringError,
    first_line,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from mlflow import MlflowClient

    from airflow_mlops.core.data import DatasetRef

DEFAULT_PREDICTION_COLUMN = "prediction"
DEFAULT_BATCH_SIZE = 65_536
DEFAULT_PROGRESS_INTERVAL = 5.0

logger = logging.getLogger(__name__)


class _Progress:
    def __init__(self, total: int | None, interval: float, log: logging.Logger | Any) -> None:
        self.total, self.interval, self.log = total, interval, log
        self.start = self.last = time.monotonic()
        self.rows = 0

    def update(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.report(now)

    def report(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.rows / elapsed
        if self.total:
            left = (self.total - self.rows) / rate if rate > 0 else math.inf
            self.log.info(
                "Scored %d of %d rows (%.1f%%), %.0f rows/s, ETA %.0f s",
                self.rows,
                self.total,
                100.0 * self.rows / self.total,
                rate,
                left,
            )
        else:
            self.log.info("Scored %d rows, %.0f rows/s", self.rows, rate)


class _Background:
    """Run one function in a daemon thread (the input fingerprint overlaps with scoring)."""

    def __init__(self, fn: Callable[[], str]) -> None:
        self._result: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="mlops-fingerprint")
        self._thread.start()

    def _run(self, fn: Callable[[], str]) -> None:
        try:
            self._result = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread by get()
            self._error = err

    def get(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _select_files(ref: DatasetRef, input_files: Sequence[str] | None) -> DatasetRef:
    if not input_files:
        return ref
    if not ref.is_dir:
        raise MlopsConfigError(
            f"input_files was given but input {ref.uri} is a single file; input_files selects parts of a folder."
        )
    wanted = [check_uri(f, what="input file").strip("/") for f in input_files]
    by_rel = {posixpath.relpath(f, ref.path): f for f in ref.files}
    missing = [w for w in wanted if w not in by_rel]
    if missing:
        raise DatasetNotFound(
            f"input file(s) {missing} are not data files of dataset {ref.uri} (it has {sorted(by_rel)[:20]}); "
            "plan the shards again."
        )
    return dataclasses.replace(ref, files=tuple(by_rel[w] for w in wanted))


def _check_all_files(model: LoadedModel | ModelInputs, ref: DatasetRef, passthrough: Sequence[str]) -> None:
    if ref.format == "parquet":
        for file in ref.files:
            schema = data_mod._open_parquet(ref, file).schema_arrow
            check_input_schema(model, schema, dataset=to_uri(ref.fs, file), passthrough=passthrough)
    else:
        check_input_schema(model, data_mod.schema(ref), dataset=ref.uri, passthrough=passthrough)


def _prediction_arrays(pred: Any, rows: int, column: str) -> list[tuple[str, Any]]:
    import numpy as np
    import pyarrow as pa

    if hasattr(pred, "columns") and hasattr(pred, "iloc"):  # pandas DataFrame
        cols = list(pred.columns)
        if len(cols) == 1:
            return [(column, pa.array(np.asarray(pred.iloc[:, 0])))]
        return [(f"{column}_{c}", pa.array(np.asarray(pred[c]))) for c in cols]
    array = np.asarray(pred)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1:
        if len(array) != rows:
            raise ScoringError(f"the model returned {len(array)} predictions for a batch of {rows} rows.")
        return [(column, pa.array(array))]
    if array.ndim == 2:
        if array.shape[0] != rows:
            raise ScoringError(
                f"the model returned {array.shape[0]} rows of predictions for {rows} input rows."
            )
        return [(f"{column}_{j}", pa.array(array[:, j])) for j in range(array.shape[1])]
    raise ScoringError(
        f"the model returned predictions of shape {array.shape}; expected one or two dimensions."
    )


def score_dataset(model: LoadedModel, input_uri: str, output_uri: str, **options: Any) -> ScoringResult:
    """
    Stream ``input_uri`` through ``model`` into ``output_uri`` exactly once, then write the manifest.

    One writer per output URI: a concurrent attempt on the same output waits for the writer's lock (see
    :func:`airflow_mlops.core.storage.exclusive`), then removes what killed attempts left. Options are those
    of :func:`run_batch_inference` that concern the data (``input_files``, ``passthrough_columns``,
    ``prediction_column``, ``batch_size``, ``fingerprint``, ``progress_interval``, ``log``, ``started``).

    Nothing is written before the schema of every input file passed :func:`check_input_schema`. The data goes
    to a hidden temporary sibling and is renamed into place complete; the previous manifest is removed just
    before that rename and the new one is written last, so a manifest always describes the file beside it.
    """
    output_uri = check_output_uri(output_uri)
    with _exclusive_output(output_uri, options.get("log") or logger):
        return _score_dataset(model, input_uri, output_uri, **options)


@contextlib.contextmanager
def _exclusive_output(output_uri: str, log: logging.Logger | Any) -> Iterator[None]:
    """Hold the writer's lock of ``output_uri``, then delete the temporaries killed attempts left beside it."""

    def waiting(lock: str) -> None:
        log.info("Waiting for another attempt writing %s to finish (it holds %s)", output_uri, lock)

    with removing_new_folders_on_error(output_uri), exclusive(output_uri, on_wait=waiting):
        removed = remove_stale_temporaries(output_uri)
        if removed:
            log.info("Removed %d temporary file(s) of an interrupted attempt: %s", len(removed), removed)
        yield


def _score_dataset(  # noqa: C901 - the streaming write: schema check, first batch, the rest, rename, manifest, in order
    model: LoadedModel,
    input_uri: str,
    output_uri: str,
    *,
    input_files: Sequence[str] | None = None,
    passthrough_columns: Sequence[str] = (),
    prediction_column: str = DEFAULT_PREDICTION_COLUMN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fingerprint: str | None = None,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    log: logging.Logger | Any = None,
    started: float | None = None,
) -> ScoringResult:
    """
    Stream ``input_uri`` through ``model`` into ``output_uri`` exactly once, then write the manifest.

    Nothing is written before the schema of every input file passed :func:`check_input_schema`. The data goes
    to a hidden temporary sibling and is renamed into place complete; the previous manifest is removed just
    before that rename and the new one is written last, so a manifest always describes the file beside it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.core.lineage import fingerprint as content_fingerprint

    log = log or logger
    started = time.monotonic() if started is None else started
    output_uri = check_output_uri(output_uri)
    if batch_size < 1:
        raise MlopsConfigError(f"batch_size must be a positive number of rows, not {batch_size}.")
    passthrough = list(dict.fromkeys(passthrough_columns or ()))
    clash = [c for c in passthrough if c == prediction_column or c.startswith(f"{prediction_column}_")]
    if clash:
        raise MlopsConfigError(
            f"passthrough column(s) {clash} clash with the prediction column {prediction_column!r}; "
            "rename prediction_column."
        )
    ref = _select_files(data_mod.resolve_dataset(input_uri), input_files)
    _check_all_files(model, ref, passthrough)
    manifest_uri = manifest_uri_for(output_uri)
    total = data_mod.count_rows(ref)
    fp_job = None if fingerprint else _Background(lambda: content_fingerprint(ref))
    features = [f.name for f in model.features if f.name in set(data_mod.column_names(ref))]
    read_cols = list(dict.fromkeys([*features, *passthrough]))
    batches = data_mod.iter_batches(ref, read_cols, batch_size=batch_size)
    progress = _Progress(total, progress_interval, log)
    rows = 0
    pred_names: list[str] = []
    out_schema: pa.Schema | None = None
    first = next((b for b in batches if b.num_rows), None)

    def predict(batch: pa.RecordBatch) -> pa.RecordBatch:
        try:
            raw = model.predict(batch)
        except (ScoringError, SchemaMismatch):
            raise
        except Exception as err:
            bad = bad_values_error(model, batch, dataset=ref.uri, first_row=rows, cause=err)
            if bad is not None:
                raise bad from err
            raise ScoringError(
                f"model {model.ref.name} v{model.ref.version} failed on a batch of {batch.num_rows} rows from "
                f"{ref.uri}: {first_line(err)}"
            ) from err
        arrays = [(c, batch.column(c)) for c in passthrough]
        arrays += _prediction_arrays(raw, batch.num_rows, prediction_column)
        return pa.RecordBatch.from_arrays([a for _, a in arrays], names=[n for n, _ in arrays])

    if first is None:
        log.warning(
            "Input %s has no rows: nothing to score. Writing a manifest with rows=0 and no predictions file.",
            ref.uri,
        )
        remove(manifest_uri)
        remove(output_uri)
        output_written, output_bytes = False, 0
    else:
        with atomic_write(output_uri) as handle:
            out = predict(first)
            out_schema = out.schema.with_metadata(
                {PARQUET_MODEL_KEY: f"{model.ref.name}/{model.ref.version}".encode()}
            )
            pred_names = [n for n in out.schema.names if n not in passthrough]
            writer = pq.ParquetWriter(handle, out_schema, compression="snappy")
            try:
                writer.write_batch(out.replace_schema_metadata(out_schema.metadata))
                rows += out.num_rows
                progress.update(out.num_rows)
                for batch in batches:
                    if not batch.num_rows:
                        continue
                    out = predict(batch)
                    if out.schema.names != out_schema.names:
                        raise ScoringError(
                            f"the model returned columns {out.schema.names[len(passthrough) :]} for a later batch "
                            f"but {pred_names} for the first; its output must have a fixed shape."
                        )
                    if not out.schema.equals(out_schema, check_metadata=False):
                        out = out.cast(out_schema)
                    writer.write_batch(out)
                    rows += out.num_rows
                    progress.update(out.num_rows)
            finally:
                writer.close()
            # The old manifest describes the file this rename replaces: drop it first.
            remove(manifest_uri)
        progress.report()
        output_written = True
        fs, path = get_fs(output_uri)
        output_bytes = int(fs.info(path).get("size") or 0)
    input_fingerprint = fingerprint or (fp_job.get() if fp_job else "")
    schema_list = (
        [{"name": f.name, "type": str(f.type)} for f in out_schema] if out_schema is not None else []
    )
    result = ScoringResult(
        model_name=model.ref.name,
        model_version=model.ref.version,
        model_run_id=model.ref.run_id,
        model_uri=model.ref.uri,
        requested_model_uri=model.ref.requested_uri,
        flavor=model.flavor,
        input_uri=ref.uri,
        input_files=list(input_files) if input_files else None,
        input_fingerprint=input_fingerprint,
        rows=rows,
        output_uri=output_uri,
        manifest_uri=manifest_uri,
        output_written=output_written,
        output_bytes=output_bytes,
        output_schema=schema_list,
        passthrough_columns=passthrough,
        prediction_columns=pred_names,
        prediction_column=prediction_column,
        batch_size=batch_size,
        elapsed_s=time.monotonic() - started,
    )
    write_json(manifest_uri, result.manifest())
    log.info(
        "Wrote %d prediction row(s) of %s to %s (manifest %s) in %.1f s",
        rows,
        model.ref.describe(),
        output_uri,
        manifest_uri,
        result.elapsed_s,
    )
    return result


def run_batch_inference(
    client: MlflowClient,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    *,
    input_files: Sequence[str] | None = None,
    passthrough_columns: Sequence[str] = (),
    prediction_column: str = DEFAULT_PREDICTION_COLUMN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    flavor: str = ModelFlavor.AUTO,
    feature_columns: Sequence[str] | None = None,
    force: bool = False,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    log: logging.Logger | Any = None,
) -> ScoringResult:
    """
    The whole job: resolve the model once, skip if already done, load, check the schema, stream, manifest.

    ``client`` is an ``MlflowClient`` whose server MLflow's fluent API also uses (``MlflowHook.session()``
    arranges both). With ``force=True`` the job runs even when the manifest says it is already done.
    """
    log = log or logger
    started = time.monotonic()
    output_uri = check_output_uri(output_uri)
    input_uri = check_uri(input_uri, what="input URI")
    ref = resolve_model(client, model_uri)
    log.info("Resolved %s to %s (run %s)", model_uri, ref.uri, ref.run_id)
    dataset = _select_files(data_mod.resolve_dataset(input_uri), input_files)
    with _exclusive_output(output_uri, log):  # one writer per output; what killed attempts left goes first
        manifest_uri = manifest_uri_for(output_uri)
        old = None if force else read_manifest(manifest_uri)
        fingerprint = None
        if old is not None:
            from airflow_mlops.core.lineage import algorithm_of
            from airflow_mlops.core.lineage import fingerprint as content_fingerprint

            # in the manifest's own algorithm: a changed [mlops] fingerprint_algorithm still skips done work
            fingerprint = content_fingerprint(dataset, algorithm=algorithm_of(old.get("input_fingerprint")))
            params = {
                "passthrough_columns": list(dict.fromkeys(passthrough_columns or ())),
                "prediction_column": prediction_column,
                "input_files": list(input_files) if input_files else None,
                "output_uri": output_uri,
            }
            if same_job(old, ref, fingerprint, params) and output_intact(old):
                log.info(
                    "Skipping: %s already holds %d row(s) scored by %s v%s from input %s",
                    output_uri,
                    old.get("rows", 0),
                    ref.name,
                    ref.version,
                    fingerprint,
                )
                return ScoringResult.from_manifest(old, skipped=True)
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as model_dir:
            model = load_model(ref, flavor=flavor, feature_columns=feature_columns, local_dir=model_dir)
            return _score_dataset(
                model,
                input_uri,
                output_uri,
                input_files=input_files,
                passthrough_columns=passthrough_columns,
                prediction_column=prediction_column,
                batch_size=batch_size,
                fingerprint=fingerprint,
                progress_interval=progress_interval,
                log=log,
                started=started,
            )
