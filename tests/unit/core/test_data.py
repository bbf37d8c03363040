from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.core import data
from airflow_mlops.core.lineage import fingerprint
from airflow_mlops.exceptions import (
    DatasetError,
    DatasetNotFound,
    EmptyDatasetError,
    MlopsConfigError,
    SchemaMismatch,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"id": np.arange(1000), "x": rng.normal(size=1000), "c": rng.choice(["a", "b"], 1000)}
    )


def test_parquet_file_csv_and_folder_read_alike(tmp_path, frame):
    frame.to_parquet(tmp_path / "one.parquet", row_group_size=100)
    frame.to_csv(tmp_path / "one.csv", index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.iloc[:400].to_parquet(parts / "part-0.parquet")
    frame.iloc[400:].to_parquet(parts / "part-1.parquet")
    (parts / "_SUCCESS").write_text("")
    (parts / ".hidden.parquet").write_text("junk")
    for uri in (str(tmp_path / "one.parquet"), (tmp_path / "one.csv").as_uri(), str(parts)):
        got = data.read_frame(uri, ["id", "x"])
        assert list(got.columns) == ["id", "x"]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), frame[["id", "x"]], check_dtype=False)
    ref = data.resolve_dataset(str(parts))
    assert ref.is_dir and ref.format == "parquet" and len(ref.files) == 2
    assert data.count_rows(ref) == 1000


def test_iter_batches_is_bounded(tmp_path, frame):
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=250)
    ref = data.resolve_dataset(str(tmp_path / "d.parquet"))
    sizes = [b.num_rows for b in data.iter_batches(ref, ["x"], batch_size=100)]
    assert max(sizes) <= 100 and sum(sizes) == 1000
    frame.to_csv(tmp_path / "d.csv", index=False)
    ref = data.resolve_dataset(str(tmp_path / "d.csv"))
    assert sum(b.num_rows for b in data.iter_batches(ref, ["x"], batch_size=64)) == 1000


def test_missing_dataset_names_uri(tmp_path):
    with pytest.raises(DatasetNotFound, match="does not exist"):
        data.resolve_dataset(str(tmp_path / "nope.parquet"))


def test_corrupt_parquet_is_clear(tmp_path, frame):
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    ref = data.resolve_dataset(str(path))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        data.read_table(ref)


def test_missing_columns_lists_available(tmp_path, frame):
    frame.to_parquet(tmp_path / "d.parquet")
    ref = data.resolve_dataset(str(tmp_path / "d.parquet"))
    with pytest.raises(SchemaMismatch, match=r"\['nope'\].*it has \['id', 'x', 'c'\]"):
        data.read_table(ref, ["x", "nope"])


def test_empty_folder_and_empty_dataset(tmp_path, frame):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no parquet or CSV"):
        data.resolve_dataset(str(tmp_path / "empty"))
    frame.iloc[:0].to_parquet(tmp_path / "zero.parquet")
    with pytest.raises(EmptyDatasetError, match="empty"):
        data.read_frame(str(tmp_path / "zero.parquet"), allow_empty=False)


def test_fingerprint_is_content_based_and_stable(tmp_path, frame):
    frame.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "a.parquet").write_bytes((tmp_path / "a.parquet").read_bytes())
    fp = fingerprint(str(tmp_path / "a.parquet"))
    assert fp.startswith("xxh3:") and len(fp) == 5 + 32  # xxh3-128 by default
    assert fingerprint(str(tmp_path / "copy" / "a.parquet")) == fp  # same bytes, other place
    assert fingerprint(str(tmp_path / "a.parquet")) == fp
    frame.iloc[:-1].to_parquet(tmp_path / "a.parquet")
    assert fingerprint(str(tmp_path / "a.parquet")) != fp


def test_fingerprint_algorithm_option_and_recorded_values_compare_in_their_own(tmp_path, frame, monkeypatch):
    import hashlib

    from airflow_mlops.core.lineage import algorithm_of, same_content
    from airflow_mlops.settings import get_settings

    frame.to_parquet(tmp_path / "a.parquet")
    uri = str(tmp_path / "a.parquet")
    fast = fingerprint(uri)
    slow = fingerprint(uri, algorithm="sha256")
    assert (
        slow
        == "sha256:"
        + hashlib.sha256(hashlib.sha256((tmp_path / "a.parquet").read_bytes()).digest()).hexdigest()
    )
    assert (algorithm_of(fast), algorithm_of(slow), algorithm_of("md5:x"), algorithm_of(None)) == (
        "xxh3",
        "sha256",
        None,
        None,
    )
    assert same_content(slow, uri) and same_content(fast, uri)  # a value recorded under either setting
    assert not same_content("sha256:" + "0" * 64, uri) and not same_content("", uri)
    monkeypatch.setenv("AIRFLOW__MLOPS__FINGERPRINT_ALGORITHM", "sha256")
    get_settings.cache_clear()
    try:
        assert fingerprint(uri) == slow
        monkeypatch.setenv("AIRFLOW__MLOPS__FINGERPRINT_ALGORITHM", "md5")
        get_settings.cache_clear()
        with pytest.raises(MlopsConfigError, match=r"fingerprint_algorithm to one of xxh3, sha256"):
            fingerprint(uri)
    finally:
        monkeypatch.delenv("AIRFLOW__MLOPS__FINGERPRINT_ALGORITHM")
        get_settings.cache_clear()


# ---------------------------------------------------------------------------------------------- issue 14
def _dup_parquet(path, names=("a", "b", "a")):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table([pa.array([1.0, 2.0])] * len(names), names=list(names)), path)
    return str(path)


def test_duplicate_column_names_are_named_not_called_corrupt(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    for uri in (_dup_parquet(tmp_path / "dup.parquet"), str(tmp_path / "dup.csv")):
        ref = data.resolve_dataset(uri)
        for read in (data.column_names, lambda r: data.read_frame(r, ["b"]), data.read_frame):
            with pytest.raises(
                DatasetError, match=r"dup\.(parquet|csv) has duplicate column name\(s\) \['a'\]"
            ):
                read(ref)


def test_duplicates_in_a_later_part_name_that_part(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_parquet(parts / "part-0.parquet")
    _dup_parquet(parts / "part-1.parquet", names=("a", "b", "b"))
    ref = data.resolve_dataset(str(parts))
    assert data.column_names(ref) == ["a", "b"]  # the first part is fine
    with pytest.raises(
        DatasetError, match=r"\(file .*part-1\.parquet\) has duplicate column name\(s\) \['b'\]"
    ):
        data.read_frame(ref, ["a", "b"])
    with pytest.raises(DatasetError, match=r"part-1\.parquet\) has duplicate column name\(s\) \['b'\]"):
        list(data.iter_batches(ref, ["a", "b"]))
    with pytest.raises(DatasetError, match=r"part-1\.parquet\) has duplicate column name\(s\) \['b'\]"):
        data.read_frame(ref)  # every column: Arrow would read the duplicates without complaint


@pytest.mark.parametrize(
    ("text", "label"),
    [("a;b;c\n1;2;3\n", "';'"), ("a|b\n1|2\n", "'|'"), ("a\tb\n1\t2\n", "tab")],
)
def test_a_csv_read_as_one_column_hints_the_delimiter(tmp_path, text, label):
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"x\.csv was read as one column .*: it looks {label}-delimited"):
        data.read_frame(str(path))


def test_a_real_one_column_csv_is_fine(tmp_path):
    (tmp_path / "ids.csv").write_text("id\n1\n2\n")
    (tmp_path / "odd.csv").write_text("a;\n1;\n")  # a ';' but nothing after it: not a delimiter
    assert data.read_frame(str(tmp_path / "ids.csv")).id.tolist() == [1, 2]
    assert data.column_names(data.resolve_dataset(str(tmp_path / "odd.csv"))) == ["a;"]
