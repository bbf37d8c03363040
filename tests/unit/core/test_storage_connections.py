"""How object-storage URIs name their Airflow connection, checked without a server.

Reads and writes through a connection, against a real S3 server: tests/integration/test_storage_connections.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops.core import storage
from airflow_mlops.exceptions import MlopsConfigError, UnsafeUriError


@pytest.mark.parametrize(
    ("uri", "plain", "conn_id"),
    [
        ("s3://aws_default@bucket/key.parquet", "s3://bucket/key.parquet", "aws_default"),
        ("s3://bucket/key.parquet", "s3://bucket/key.parquet", None),
        ("gs://google_cloud_default@b", "gs://b", "google_cloud_default"),
        (
            "abfs://container@account.dfs.core.windows.net/x",
            "abfs://container@account.dfs.core.windows.net/x",
            None,
        ),
        ("/data/x@y.parquet", "/data/x@y.parquet", None),
        ("file:///data/x@y/z", "file:///data/x@y/z", None),
    ],
)
def test_a_uri_names_its_connection_the_object_storage_path_way(uri, plain, conn_id):
    assert storage.split_conn_id(uri) == (plain, conn_id)


def test_credentials_in_a_uri_are_refused_without_echoing_them():
    with pytest.raises(UnsafeUriError) as err:
        storage.get_fs("s3://AKIAXXXX:hunter2@bucket/key")
    assert "hunter2" not in str(err.value) and "s3://<conn_id>@bucket" in str(err.value)


def test_asset_uris_drop_the_connection_so_one_data_set_is_one_asset(tmp_path: Path):
    assert storage.asset_uri("s3://aws_default@bucket/a/b.parquet") == "s3://bucket/a/b.parquet"
    assert storage.asset_uri("s3://bucket/a/b.parquet") == "s3://bucket/a/b.parquet"
    assert storage.asset_uri(str(tmp_path / "x.parquet")) == "file://" + str(tmp_path / "x.parquet")


def test_a_missing_connection_is_an_error_not_anonymous_access():
    with pytest.raises(MlopsConfigError, match=r"'no_such_conn'.*not found.*AIRFLOW_CONN_NO_SUCH_CONN"):
        storage.get_fs("s3://no_such_conn@lake/x")
