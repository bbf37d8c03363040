"""MlflowHook configuration parsing and failure reporting (no server needed)."""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.exceptions import ConnectionConfigError, ServiceUnreachable
from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.mlflow_server import free_port


def _conn(monkeypatch, conn_id: str, **body):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", **body}))


@pytest.mark.parametrize(
    ("body", "uri"),
    [
        ({"host": "http://mlflow:5000/"}, "http://mlflow:5000"),
        ({"host": "mlflow", "port": 5000}, "http://mlflow:5000"),
        ({"host": "mlflow.example.com", "extra": {"scheme": "https"}}, "https://mlflow.example.com"),
        (
            {"host": "https://mlflow.example.com/prefix", "port": 8443},
            "https://mlflow.example.com:8443/prefix",
        ),
        ({"host": "sqlite:////tmp/x/mlflow.db"}, "sqlite:////tmp/x/mlflow.db"),
    ],
)
def test_tracking_uri_forms(monkeypatch, body, uri):
    _conn(monkeypatch, "m1", **body)
    assert MlflowHook("m1").tracking_uri == uri


def test_explicit_argument_beats_connection(monkeypatch):
    _conn(monkeypatch, "m2", host="http://a:1", extra={"registry_uri": "http://reg:2"})
    hook = MlflowHook("m2", tracking_uri="http://b:3")
    assert hook.tracking_uri == "http://b:3"
    assert hook.registry_uri == "http://reg:2"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "has no host"),
        ({"host": "ftp://x"}, "unsupported scheme 'ftp'"),
        ({"host": "http://"}, "no host name"),
        ({"host": "h", "login": "u"}, "login but no password"),
        ({"host": "h", "extra": {"timeout": "soon"}}, "timeout"),
    ],
)
def test_malformed_connection_names_conn_id(monkeypatch, body, match):
    _conn(monkeypatch, "broken_mlflow", **body)
    with pytest.raises(ConnectionConfigError, match=match) as info:
        _ = MlflowHook("broken_mlflow").config
    assert "broken_mlflow" in str(info.value)
    ok, message = MlflowHook("broken_mlflow").test_connection()
    assert ok is False and "broken_mlflow" in message


def test_missing_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOT_THERE", raising=False)
    with pytest.raises(ConnectionConfigError, match="'not_there' is not defined"):
        _ = MlflowHook("not_there").config


def test_unreachable_server_fails_fast_with_url(monkeypatch):
    port = free_port()  # nothing listens there
    _conn(monkeypatch, "down", host=f"http://127.0.0.1:{port}", extra={"timeout": 2})
    hook = MlflowHook("down")
    with pytest.raises(ServiceUnreachable, match=f"http://127.0.0.1:{port}.*'down'.*unreachable"):
        hook.get_conn()
    ok, message = hook.test_connection()
    assert not ok and "unreachable" in message


def test_env_handoff_separates_secrets(monkeypatch):
    _conn(monkeypatch, "auth", host="http://m:5000", login="alice", password="s3cr3t-pass",
          extra={"registry_uri": "http://r:1", "insecure_tls": "true", "unknown": "x"})  # fmt: skip
    hook = MlflowHook("auth")
    assert hook.public_env() == {
        "MLFLOW_TRACKING_URI": "http://m:5000",
        "MLFLOW_REGISTRY_URI": "http://r:1",
        "MLFLOW_TRACKING_INSECURE_TLS": "true",
    }
    assert hook.secret_env() == {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "s3cr3t-pass",
    }
    assert "s3cr3t-pass" not in repr(hook.config)
    _conn(
        monkeypatch,
        "tok",
        host="http://m:5000",
        login="alice",
        password="pw-12345",
        extra={"token": "tok-123456"},
    )
    assert MlflowHook("tok").secret_env() == {"MLFLOW_TRACKING_TOKEN": "tok-123456"}  # token beats basic auth


def test_session_restores_environment(monkeypatch, tmp_path):
    db = tmp_path / "m.db"
    _conn(monkeypatch, "local", host=f"sqlite:///{db}", password="pw-abcdef", login="bob")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "outer")
    import mlflow

    before = mlflow.get_tracking_uri()
    with MlflowHook("local").session() as client:
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"
        assert mlflow.get_tracking_uri() == f"sqlite:///{db}"
        client.create_experiment("inside")
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "outer"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert mlflow.get_tracking_uri() == before
