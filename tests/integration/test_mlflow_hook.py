"""MlflowHook against a real MLflow tracking server over HTTP (plain and with basic auth)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_mlops.exceptions import ServiceUnreachable
from airflow_mlops.hooks.mlflow import MlflowHook
from tests.helpers.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_PASSWORD = "canary-admin-pw-7f3a9"


def test_create_experiment_log_run_and_read_back(mlflow_server):
    hook = MlflowHook()  # mlflow_default -> the session server
    ok, message = hook.test_connection()
    assert ok, message
    with hook.session() as client:
        exp_id = client.create_experiment("hook-roundtrip")
        run = client.create_run(exp_id, tags={"team": "ml"})
        client.log_param(run.info.run_id, "alpha", "0.5")
        client.log_metric(run.info.run_id, "auc", 0.91)
        client.set_terminated(run.info.run_id)
    fetched = hook.get_conn().get_run(run.info.run_id)
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.data.metrics == {"auc": 0.91}
    assert fetched.data.tags["team"] == "ml"
    assert fetched.info.experiment_id == exp_id


def test_fluent_api_inside_session_uses_connection(mlflow_server):
    import mlflow

    with MlflowHook().session():
        mlflow.set_experiment("hook-fluent")
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 1.0)
    assert MlflowHook().get_conn().get_run(run.info.run_id).data.metrics == {"m": 1.0}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("mlflow-auth")
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = admin\n"
        f"admin_password = {ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = MlflowServer(
        root,
        app_name="basic-auth",
        extra_env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"},
    )
    server.start()
    yield server
    server.stop()


def test_basic_auth_reaches_server(auth_server, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_AUTH",
        json.dumps(
            {"conn_type": "mlflow", "host": auth_server.url, "login": "admin", "password": ADMIN_PASSWORD}
        ),  # fmt: skip
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_BADAUTH",
        json.dumps(
            {"conn_type": "mlflow", "host": auth_server.url, "login": "admin", "password": "wrong-password"}
        ),  # fmt: skip
    )
    ok, message = MlflowHook("mlflow_auth").test_connection()
    assert ok, message
    with MlflowHook("mlflow_auth").session() as client:
        assert client.create_experiment("authed")
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # scoped, not left behind
    ok, message = MlflowHook("mlflow_badauth").test_connection()
    assert not ok
    assert "401" in message or "unauthenticated" in message.lower() or "credentials" in message.lower(), (
        message
    )


def test_server_stopped_mid_lifecycle_is_named(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path)
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_SHORTLIVED", server.connection_json(extra={"timeout": 2}))
    MlflowHook("shortlived").get_conn().search_experiments()
    server.stop()
    with pytest.raises(ServiceUnreachable, match=server.url):
        MlflowHook("shortlived").get_conn()
