"""MlflowHook credentials are scoped per client (issue 14): two connections used at once from two threads, each
against its own fake MLflow REST API on loopback, every request carrying its own connection's credentials.

Parsing and the scoped client's wiring, without a server: tests/unit/hooks/test_mlflow.py.
"""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.recording_http import RecordingProxy, basic, watch_environ_writes

pytestmark = pytest.mark.integration


def _conn(monkeypatch, conn_id: str, **body):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", **body}))


def _fake_mlflow(label: str):
    """A fake MLflow REST API on loopback that names itself in every registered model it returns."""

    def answer(method, path, query, body):
        if path == "/health":
            return 200, {}
        if path == "/api/2.0/mlflow/registered-models/get":
            name = query["name"][0]
            return 200, {"registered_model": {"name": name, "tags": [{"key": "server", "value": label}]}}
        if path == "/api/2.0/mlflow/experiments/search":
            return 200, {"experiments": []}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path}

    return RecordingProxy(answer=answer).start()


def test_get_conn_clients_send_their_own_credentials_from_two_threads(monkeypatch):
    """Two connections used at once from two threads: every request carries its own connection's credentials,
    never the process environment's, and os.environ is never written."""
    import threading

    servers = {"a": _fake_mlflow("a"), "b": _fake_mlflow("b")}
    try:
        _conn(monkeypatch, "cred_a", host=servers["a"].url, login="alice", password="pw-alice-1")
        _conn(monkeypatch, "cred_b", host=servers["b"].url, login="bob", password="pw-bob-22")
        for key, value in {"MLFLOW_TRACKING_USERNAME": "ambient", "MLFLOW_TRACKING_PASSWORD": "pw-ambient",
                           "MLFLOW_TRACKING_TOKEN": "tok-ambient"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)  # must never be sent: the connection is the only source
        before = dict(os.environ)
        writes = watch_environ_writes(monkeypatch)
        start = threading.Barrier(2)
        answers: dict[str, set[str]] = {"a": set(), "b": set()}
        errors: list[BaseException] = []

        def work(side: str) -> None:
            try:
                hook = MlflowHook(f"cred_{side}")
                start.wait(timeout=30)
                client = hook.get_conn()
                for i in range(40):
                    if i % 10 == 0:
                        client = hook.get_conn()  # fresh clients too, not just one
                    answers[side].add(client.get_registered_model("m").tags["server"])
                assert hook.test_connection()[0]
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(side,)) for side in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert answers == {"a": {"a"}, "b": {"b"}}
        for side, user, password in (("a", "alice", "pw-alice-1"), ("b", "bob", "pw-bob-22")):
            api = servers[side].api_requests()
            assert len(api) >= 41
            assert {seen.authorization for seen in api} == {basic(user, password)}, side
            assert {s.authorization for s in servers[side].seen if s.path == "/health"} == {None}
        assert writes == [] and dict(os.environ) == before
    finally:
        for server in servers.values():
            server.stop()
