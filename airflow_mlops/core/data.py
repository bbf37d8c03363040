"""Reading datasets by URI: a parquet file, a folder of parquet parts, or CSV, on any fsspec filesystem.

Every reader reads only the columns asked for, and :func:`iter_batches` streams Arrow record batches with
bounded memory (parquet row groups are read one at a time with ``pre_buffer=False``; CSV in blocks). Errors
name the dataset and say what to fix.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.storage import check_uri, get_fs, to_uri
from airflow_mlops.exceptions import (
    DatasetError,
    DatasetNotFound,
    EmptyDatasetError,
    SchemaMismatch,
    ServiceUnreachable,
    first_line,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import pandas as pd
    import pyarrow as pa
    from fsspec import AbstractFileSystem

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
DEFAULT_BATCH_SIZE = 65_536
PARQUET_STREAM_BUFFER = 1 << 20


@dataclass(frozen=True)
class DatasetRef:
    """A resolved dataset: its filesystem, format and the data files it is made of (sorted)."""

    uri: str
    fs: AbstractFileSystem
    path: str
    format: str  # "parquet" | "csv"
    files: tuple[str, ...]
    is_dir: bool

    def describe(self) -> str:
        kind = f"folder of {len(self.files)} {self.format} file(s)" if self.is_dir else f"{self.format} file"
        return f"{self.uri} ({kind})"


_TRANSIENT_NAMES = (
    "Timeout",
    "ConnectionError",
    "ConnectionClosed",
    "EndpointConnection",
    "Throttl",
    "SlowDown",
)


def _raise_if_transient(err: BaseException, uri: str) -> None:
    """
    A network fault while reading (connection reset, timeout, throttling) is not bad data: raise
    ServiceUnreachable, which keeps Airflow's retries, instead of the permanent DatasetError.
    """
    names = [cls.__name__ for cls in type(err).__mro__]
    if isinstance(err, ConnectionError | TimeoutError) or any(
        t in n for n in names for t in _TRANSIENT_NAMES
    ):
        raise ServiceUnreachable(
            f"reading dataset {uri} failed with a network error ({type(err).__name__}: {str(err)[:200]}); "
            "a retry may succeed. Check the object store's reachability and credentials."
        ) from err


def _format_of(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def _hidden(path: str, root: str) -> bool:
    rel = posixpath.relpath(path, root) if root else path
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def resolve_dataset(uri: str) -> DatasetRef:
    """Find the data files behind ``uri``; raise DatasetNotFound / DatasetError with the fix."""
    uri = check_uri(uri, what="dataset URI")
    fs, path = get_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise DatasetNotFound(
            f"dataset {uri} does not exist. Check the URI (and the templated date in it), or produce the data first."
        ) from None
    if info.get("type") == "directory":
        found = [p for p in fs.find(path) if not _hidden(p, path)]
        formats = {p: _format_of(p) for p in found}
        typed = sorted(p for p, f in formats.items() if f)
        if not typed:
            raise DatasetError(
                f"dataset {uri} is a folder with no parquet or CSV files "
                f"(found {len(found)} other file(s)); write *.parquet parts or *.csv files into it."
            )
        kinds = {formats[p] for p in typed}
        if len(kinds) > 1:
            raise DatasetError(
                f"dataset {uri} mixes parquet and CSV files; keep one format per dataset folder."
            )
        return DatasetRef(uri, fs, path, kinds.pop() or "parquet", tuple(typed), True)
    fmt = _format_of(path)
    if fmt is None:
        with fs.open(path, "rb") as handle:
            fmt = "parquet" if handle.read(4) == b"PAR1" else "csv"
    return DatasetRef(uri, fs, path, fmt, (path,), False)


def _where(ref: DatasetRef, file: str) -> str:
    """``dataset <uri>``, plus the file for a folder: the start of a message about one data file."""
    return f"dataset {ref.uri}" if not ref.is_dir else f"dataset {ref.uri} (file {to_uri(ref.fs, file)})"


def check_unique_columns(ref: DatasetRef, file: str, names: Sequence[str]) -> None:
    """
    Raise DatasetError naming the duplicated column names of one data file.

    Every stage looks columns up by name, so a duplicate makes the data ambiguous: Arrow refuses to select
    it ("Multiple matches for FieldRef", read as corruption), Evidently and the models fail on it later.
    """
    counts = Counter(names)
    duplicated = [n for n in counts if counts[n] > 1]
    if duplicated:
        raise DatasetError(
            f"{_where(ref, file)} has duplicate column name(s) {duplicated} (its columns: {list(names)}); "
            "every column needs a unique name. Rename or drop the duplicates where the data is written."
        )


_DELIMITER_NAMES = {";": "';'", "\t": "tab", "|": "'|'"}


def _check_delimiter(ref: DatasetRef, file: str, names: Sequence[str], delimiter: str) -> None:
    """A CSV read as one column whose name splits on another delimiter was written with that delimiter."""
    if len(names) != 1:
        return
    for candidate, label in _DELIMITER_NAMES.items():
        parts = names[0].split(candidate)
        if candidate == delimiter or len(parts) < 2 or not all(p.strip() for p in parts):
            continue
        fix = (
            "Name the file *.tsv (read as tab-separated) or convert it to comma-separated CSV or parquet."
            if candidate == "\t"
            else "Convert it to comma-separated CSV or to parquet, e.g. with "
            f"pandas.read_csv(path, sep={candidate!r}).to_parquet(...)."
        )
        read_as = "tab" if delimiter == "\t" else "comma"
        raise DatasetError(
            f"{_where(ref, file)} was read as one column {names[0]!r}: it looks {label}-delimited, but "
            f"{'*.tsv' if read_as == 'tab' else 'CSV'} files are read as {read_as}-separated. {fix}"
        )


def _open_parquet(ref: DatasetRef, file: str) -> Any:
    import pyarrow.parquet as pq

    try:
        # buffer_size: read column chunks page by page instead of whole; a 1Mi-row row group of 20 float
        # columns otherwise holds ~160 MB of chunk buffers while streaming (measured: 300 MB -> 135 MB peak).
        opened = pq.ParquetFile(ref.fs.open(file, "rb"), pre_buffer=False, buffer_size=PARQUET_STREAM_BUFFER)
    except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
        _raise_if_transient(err, ref.uri)
        raise DatasetError(
            f"dataset {ref.uri}: {to_uri(ref.fs, file)} is not a readable parquet file ({first_line(err)}). "
            "It may be truncated or corrupt; rewrite it."
        ) from None
    try:
        check_unique_columns(ref, file, opened.schema_arrow.names)
    except DatasetError:
        opened.close()
        raise
    return opened


def _reraise_duplicates(ref: DatasetRef, file: str, err: BaseException) -> None:
    """Arrow reports a duplicated column it was asked for as a read error: name the duplicates instead."""
    if ref.format == "parquet" and "Multiple matches for FieldRef" in str(err):
        _open_parquet(ref, file)


def schema(ref: DatasetRef) -> pa.Schema:
    """The Arrow schema of the dataset (the first file's, for a folder)."""
    if ref.format == "parquet":
        return _open_parquet(ref, ref.files[0]).schema_arrow
    reader = _open_csv(ref, ref.files[0], None)
    return reader.schema


def column_names(ref: DatasetRef) -> list[str]:
    return list(schema(ref).names)


def check_columns(ref: DatasetRef, columns: Sequence[str] | None, *, needed_by: str = "") -> None:
    """Raise SchemaMismatch naming the missing columns and the ones the dataset has."""
    if not columns:
        return
    have = column_names(ref)
    missing = [c for c in columns if c not in have]
    if missing:
        who = f" needed by {needed_by}" if needed_by else ""
        raise SchemaMismatch(
            f"column(s) {missing}{who} missing from dataset {ref.uri}; it has {have}. "
            "Fix the column names or the data."
        )


def count_rows(ref: DatasetRef) -> int | None:
    """Row count from parquet footers without reading data; None for CSV."""
    if ref.format != "parquet":
        return None
    return sum(int(_open_parquet(ref, f).metadata.num_rows) for f in ref.files)


def _open_csv(ref: DatasetRef, file: str, columns: Sequence[str] | None, block_size: int = 16 << 20) -> Any:
    import pyarrow.csv as pcsv

    delimiter = "\t" if file.lower().endswith(".tsv") else ","
    compression = None
    for suffix, codec in ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd")):
        if file.lower().endswith(suffix):
            compression = codec
    import pyarrow as pa

    try:
        stream = pa.input_stream(ref.fs.open(file, "rb"), compression=compression)
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=block_size),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(include_columns=list(columns) if columns else None),
        )
    except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
        _raise_if_transient(err, ref.uri)
        raise DatasetError(
            f"dataset {ref.uri}: {to_uri(ref.fs, file)} is not a readable CSV file ({first_line(err)})."
        ) from None
    if not columns:  # the whole header: with include_columns only the selected names are in the schema
        names = reader.schema.names
        try:
            check_unique_columns(ref, file, names)
            _check_delimiter(ref, file, names, delimiter)
        except DatasetError:
            reader.close()  # stop its read-ahead thread (left running, it aborts the interpreter at exit)
            stream.close()
            raise
    return reader


def iter_batches(
    ref: DatasetRef, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[pa.RecordBatch]:
    """Stream the dataset as record batches of at most ``batch_size`` rows, in file order."""
    check_columns(ref, columns)
    cols = list(columns) if columns else None
    for file in ref.files:
        if ref.format == "parquet":
            pf = _open_parquet(ref, file)
            try:
                yield from pf.iter_batches(batch_size=batch_size, columns=cols, use_threads=True)
            except DatasetError:
                raise
            except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
                _raise_if_transient(err, ref.uri)
                _reraise_duplicates(ref, file, err)
                raise DatasetError(
                    f"dataset {ref.uri}: reading {to_uri(ref.fs, file)} failed ({first_line(err)}). "
                    "The file may be truncated or corrupt; rewrite it."
                ) from None
        else:
            reader = _open_csv(ref, file, cols)
            try:
                for batch in reader:
                    for start in range(0, batch.num_rows, batch_size):
                        yield batch.slice(start, batch_size)
            except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
                _raise_if_transient(err, ref.uri)
                raise DatasetError(
                    f"dataset {ref.uri}: parsing {to_uri(ref.fs, file)} failed ({first_line(err)})."
                ) from None


def read_table(ref: DatasetRef, columns: Sequence[str] | None = None) -> pa.Table:
    """Read the whole dataset (only ``columns``) into one Arrow table."""
    import pyarrow as pa

    check_columns(ref, columns)
    cols = list(columns) if columns else None
    if ref.format == "parquet":
        import pyarrow.parquet as pq

        tables = []
        for file in ref.files:
            try:
                with ref.fs.open(file, "rb") as handle:
                    tables.append(pq.read_table(handle, columns=cols, pre_buffer=False))
            except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
                _raise_if_transient(err, ref.uri)
                _reraise_duplicates(ref, file, err)
                raise DatasetError(
                    f"dataset {ref.uri}: {to_uri(ref.fs, file)} is not a readable parquet file ({first_line(err)}). "
                    "It may be truncated or corrupt; rewrite it."
                ) from None
            # Reading every column, Arrow keeps duplicated names without complaint.
            check_unique_columns(ref, file, tables[-1].schema.names)
    else:
        tables = []
        for file in ref.files:
            reader = _open_csv(ref, file, cols)
            try:
                tables.append(reader.read_all())
            except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
                _raise_if_transient(err, ref.uri)
                raise DatasetError(
                    f"dataset {ref.uri}: parsing {to_uri(ref.fs, file)} failed ({first_line(err)})."
                ) from None
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except Exception as err:  # noqa: BLE001 - any reader error (pyarrow, fsspec, a backend) becomes one DatasetError naming the file
        _raise_if_transient(err, ref.uri)
        raise DatasetError(
            f"dataset {ref.uri}: its parts have incompatible schemas ({first_line(err)}); rewrite them with one schema."
        ) from None


def read_frame(
    uri_or_ref: str | DatasetRef, columns: Sequence[str] | None = None, *, allow_empty: bool = True
) -> pd.DataFrame:
    """Read a dataset into pandas; with ``allow_empty=False`` an empty dataset raises EmptyDatasetError."""
    ref = uri_or_ref if isinstance(uri_or_ref, DatasetRef) else resolve_dataset(uri_or_ref)
    frame = read_table(ref, columns).to_pandas()
    if not allow_empty and frame.empty:
        raise EmptyDatasetError(f"dataset {ref.uri} is empty (0 rows).")
    return frame
