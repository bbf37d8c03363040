from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_mlops.core import storage
from airflow_mlops.exceptions import UnsafeUriError


@pytest.mark.parametrize("uri", ["../etc/passwd", "s3://bucket/a/../../b", "/data/x/../y.parquet", "  ", ""])
def test_check_uri_rejects_traversal_and_empty(uri):
    with pytest.raises(UnsafeUriError):
        storage.check_uri(uri)


def test_check_uri_accepts_normal_uris():
    assert storage.check_uri(" s3://bucket/key.parquet ") == "s3://bucket/key.parquet"
    assert storage.check_uri("/tmp/a..b/c") == "/tmp/a..b/c"  # '..' inside a name is fine


def test_join_uri_keeps_scheme_and_rejects_traversal(tmp_path):
    assert storage.join_uri("s3://bucket/base/", "reports", "x.html") == "s3://bucket/base/reports/x.html"
    assert storage.join_uri(str(tmp_path), "a", "b.json") == os.path.join(str(tmp_path), "a", "b.json")
    with pytest.raises(UnsafeUriError):
        storage.join_uri(str(tmp_path), "..", "x")


def test_atomic_write_publishes_complete_file_only(tmp_path):
    target = tmp_path / "out" / "r.json"
    storage.write_json(str(target), {"a": 1})
    assert storage.read_json(str(target)) == {"a": 1}
    with pytest.raises(RuntimeError):
        with storage.atomic_write(str(target)) as handle:
            handle.write(b"partial")
            raise RuntimeError("boom")
    assert storage.read_json(str(target)) == {"a": 1}  # untouched
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temp file left


def test_atomic_write_file_uri_and_memory_fs(tmp_path):
    storage.write_text((tmp_path / "x.txt").as_uri(), "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"
    storage.write_text("memory://bucket/dir/y.txt", "remote")
    assert storage.read_bytes("memory://bucket/dir/y.txt") == b"remote"
    fs, path = storage.get_fs("memory://bucket/dir")
    assert [p.rsplit("/", 1)[1] for p in fs.ls(path, detail=False)] == ["y.txt"]


def test_atomic_local_path_cleans_up_on_error(tmp_path):
    target = tmp_path / "model.bin"
    with pytest.raises(ValueError):
        with storage.atomic_local_path(str(target)) as tmp:
            Path(tmp).write_text("x")
            raise ValueError("fail")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with storage.atomic_local_path(str(target)) as tmp:
        Path(tmp).write_text("done")
    assert target.read_text() == "done"


def test_published_files_get_the_usual_mode(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    target = tmp_path / "report.html"
    with storage.atomic_local_path(str(target)) as tmp:
        Path(tmp).write_text("x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
