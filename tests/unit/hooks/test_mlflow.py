"""MlflowHook configuration parsing and failure reporting (no server needed).

Credentials per client against HTTP servers on loopback: tests/integration/test_mlflow_hook_connections.py.
"""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.exceptions import ConnectionConfigError, ServiceUnreachable
from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.process import free_port


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


# ---------------------------------------------------------------------- credentials scoped per client (issue 14)
def test_scoped_client_relies_on_these_mlflow_internals(monkeypatch):
    """Fails loudly when an MLflow release renames what hooks/_mlflow_client.py replaces."""
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracing.client import TracingClient
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from airflow_mlops.hooks._mlflow_client import scoped_client

    stock = MlflowClient(tracking_uri="http://stock:5000", registry_uri="http://stock:5000")
    assert isinstance(stock._tracking_client, TrackingServiceClient)
    assert isinstance(stock._tracing_client, TracingClient)
    assert stock._get_registry_client() is stock._registry_client_lazy  # the lazy attribute it caches in
    for cls in (TrackingServiceClient, TracingClient, ModelRegistryClient):
        assert isinstance(cls.__dict__["store"], property), cls
    assert isinstance(stock._tracking_client.store, TrackingRestStore)
    assert isinstance(stock._get_registry_client().store, RegistryRestStore)

    _conn(monkeypatch, "scoped", host="http://track:5000", login="ann", password="pw-ann-1",
          extra={"registry_uri": "https://reg:5443", "ca_bundle": "/etc/ca.pem"})  # fmt: skip
    hook = MlflowHook("scoped")
    client = scoped_client(hook.config, hook.tracking_uri, hook.registry_uri)
    tracking = client._tracking_client.store.get_host_creds()
    assert (tracking.host, tracking.username, tracking.password) == ("http://track:5000", "ann", "pw-ann-1")
    assert tracking.server_cert_path == "/etc/ca.pem" and tracking.ignore_tls_verification is False
    assert client._tracing_client.store is client._tracking_client.store
    registry = client._get_registry_client().store.get_host_creds()
    assert (registry.host, registry.username, registry.password) == ("https://reg:5443", "ann", "pw-ann-1")
    assert "pw-ann-1" not in repr(client._tracking_client.store.get_host_creds)

    _conn(monkeypatch, "scoped_tok", host="http://track:5000", login="ann", password="pw-ann-1",
          extra={"token": "tok-abcdef", "insecure_tls": True, "ca_bundle": "/etc/ca.pem"})  # fmt: skip
    tok = MlflowHook("scoped_tok")
    creds = scoped_client(
        tok.config, tok.tracking_uri, tok.registry_uri
    )._tracking_client.store.get_host_creds()
    assert (creds.token, creds.username, creds.password) == (
        "tok-abcdef",
        None,
        None,
    )  # token beats basic auth
    assert creds.ignore_tls_verification is True and creds.server_cert_path is None

    local = scoped_client(hook.config, "sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db")
    assert type(local._tracking_client) is TrackingServiceClient  # non-http stores keep MLflow's default


def test_session_holds_one_process_wide_reentrant_lock(monkeypatch, tmp_path):
    import threading

    from airflow_mlops.hooks.mlflow import _SESSION_LOCK

    _conn(monkeypatch, "outer", host=f"sqlite:///{tmp_path / 'o.db'}", login="olga", password="pw-olga-1")
    _conn(monkeypatch, "inner", host=f"sqlite:///{tmp_path / 'i.db'}", login="igor", password="pw-igor-1")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)

    def free_elsewhere() -> bool:
        got: list[bool] = []

        def probe() -> None:
            got.append(_SESSION_LOCK.acquire(blocking=False))
            if got[0]:
                _SESSION_LOCK.release()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return got[0]

    assert free_elsewhere()
    with MlflowHook("outer").session():
        assert not free_elsewhere()  # another thread's session would wait here
        with MlflowHook("inner").session():  # re-entrant in the same thread
            assert os.environ["MLFLOW_TRACKING_USERNAME"] == "igor"
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "olga"
        assert not free_elsewhere()
    assert free_elsewhere()
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
