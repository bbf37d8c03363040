"""Object storage through Airflow connections, against a real S3 server (moto's standalone server on loopback).

How URIs name their connection, checked without a server: tests/unit/core/test_storage_connections.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from airflow_mlops.core import storage
from tests.helpers.process import LoopbackService

pytestmark = pytest.mark.integration


class _S3Server(LoopbackService):
    what = "moto S3 server"
    poll = 0.3

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/moto-api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False


@pytest.fixture(scope="module")
def s3_conn(tmp_path_factory: pytest.TempPathFactory):
    """A bucket on a real S3 server, reachable only through the ``mlops_s3`` Airflow connection."""
    import boto3

    with _S3Server(tmp_path_factory.mktemp("s3") / "s3.log") as server:
        boto3.client(
            "s3",
            endpoint_url=server.url,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
        ).create_bucket(Bucket="lake")
        conn = {"conn_type": "aws", "login": "key-id", "password": "secret-key",
                "extra": {"endpoint_url": server.url, "region_name": "us-east-1"}}  # fmt: skip
        os.environ["AIRFLOW_CONN_MLOPS_S3"] = json.dumps(conn)
        ambient = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
        storage._CONNECTION_FS.clear()
        try:
            yield "mlops_s3"
        finally:
            os.environ.pop("AIRFLOW_CONN_MLOPS_S3", None)
            os.environ.update(ambient)
            storage._CONNECTION_FS.clear()


def test_reads_and_writes_go_through_the_named_connection(s3_conn: str):
    uri = f"s3://{s3_conn}@lake/reports/r.json"
    storage.write_json(uri, {"ok": 1})
    assert storage.exists(uri) and storage.read_json(uri) == {"ok": 1}
    with storage.atomic_local_path(f"s3://{s3_conn}@lake/data/p.bin") as tmp:
        Path(tmp).write_bytes(b"payload")
    assert storage.read_bytes(f"s3://{s3_conn}@lake/data/p.bin") == b"payload"
    storage.remove(uri)
    assert not storage.exists(uri)


def test_the_default_connection_option_serves_uris_that_name_none(s3_conn: str, monkeypatch):
    from airflow_mlops.settings import get_settings

    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", s3_conn)
    get_settings.cache_clear()
    try:
        storage.write_text("s3://lake/plain.txt", "via [mlops] storage_conn_id")
        assert storage.read_bytes(f"s3://{s3_conn}@lake/plain.txt") == b"via [mlops] storage_conn_id"
        assert storage.storage_conn_id("s3://lake/plain.txt") == s3_conn
        assert storage.storage_conn_id("/local/path") is None
    finally:
        get_settings.cache_clear()


def test_a_child_process_gets_only_the_connections_its_uris_use(s3_conn: str):
    env = storage.connection_env([f"s3://{s3_conn}@lake/train.parquet", "/local/ckpt.pt", None])
    assert list(env) == ["AIRFLOW_CONN_MLOPS_S3"]
    assert json.loads(env["AIRFLOW_CONN_MLOPS_S3"])["login"] == "key-id"
