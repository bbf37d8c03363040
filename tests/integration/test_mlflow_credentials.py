"""Issue 14.5: one triggerer process, two MLflow servers with different credentials, both trigger kinds at once.

Two ``mlflow server --app-name basic-auth`` servers each have their own admin user and password. A recording
proxy in front of each logs the ``Authorization`` header of every request. An ``MlflowModelAliasTrigger``
watches server A and a ``DriftConfirmedTrigger`` watches server B, in one asyncio event loop (as the triggerer
runs them), for many polls each. Every request to A must carry A's credentials, every request to B B's, and
``os.environ`` must never be written while they run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from airflow_mlops.core.policy import DriftCheck, MlflowPolicyStore, RetrainingPolicy
from airflow_mlops.triggers.drift import DriftConfirmedTrigger
from airflow_mlops.triggers.mlflow import MlflowModelAliasTrigger
from tests.helpers.mlflow_server import MlflowServer
from tests.helpers.recording_http import RecordingProxy, basic, watch_environ_writes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = {"a": ("admin-a", "canary-pw-a-51c2"), "b": ("admin-b", "canary-pw-b-9e07")}
POLLS = 40  # API requests each proxy must see before the test lets the triggers fire


def _auth_server(root: Path, username: str, password: str) -> MlflowServer:
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {username}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return MlflowServer(
        root,
        app_name="basic-auth",
        extra_env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"},
    )


class _Admin:
    """Direct REST calls to one server (not through its proxy, not through the code under test)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.auth = (username, password)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, f"{self.url}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    # the two MlflowClient methods MlflowPolicyStore uses
    def get_registered_model(self, name: str) -> SimpleNamespace:
        model = self.call("GET", "registered-models/get", params={"name": name})["registered_model"]
        return SimpleNamespace(name=name, tags={t["key"]: t["value"] for t in model.get("tags", [])})

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "registered-models/set-tag", json={"name": name, "key": key, "value": value})


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    servers = {side: _auth_server(tmp_path_factory.mktemp(f"mlflow-{side}"), *USERS[side]) for side in USERS}
    try:
        with ThreadPoolExecutor(2) as pool:  # start both at once
            list(pool.map(lambda server: server.start(), servers.values()))
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def proxies(two_servers):
    started = {side: RecordingProxy(upstream=server.url).start() for side, server in two_servers.items()}
    yield started
    for proxy in started.values():
        proxy.stop()


def test_alias_and_drift_triggers_in_one_loop_each_send_their_own_credentials(
    two_servers, proxies, monkeypatch
):
    admins = {side: _Admin(two_servers[side].url, *USERS[side]) for side in USERS}
    for side, proxy in proxies.items():
        user, password = USERS[side]
        monkeypatch.setenv(
            f"AIRFLOW_CONN_MLFLOW_{side.upper()}",
            json.dumps({"conn_type": "mlflow", "host": proxy.url, "login": user, "password": password}),
        )
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)

    alias_model, drift_model = f"creds-alias-{uuid.uuid4().hex[:6]}", f"creds-drift-{uuid.uuid4().hex[:6]}"
    admins["a"].call("POST", "registered-models/create", json={"name": alias_model})
    for _ in range(2):
        admins["a"].call("POST", "model-versions/create", json={"name": alias_model, "source": "s3://b/m"})
    admins["a"].call(
        "POST", "registered-models/alias", json={"name": alias_model, "alias": "champion", "version": "1"}
    )
    admins["b"].call("POST", "registered-models/create", json={"name": drift_model})
    start = admins["b"].call("GET", "registered-models/get", params={"name": drift_model})
    since = float(start["registered_model"]["creation_timestamp"]) / 1000 - 1

    alias_trigger = MlflowModelAliasTrigger(
        name=alias_model, alias="champion", not_version="1", mlflow_conn_id="mlflow_a",
        poll_interval=0.01, max_consecutive_errors=10_000,
    )  # fmt: skip
    drift_trigger = DriftConfirmedTrigger(
        model_name=drift_model, since=since, mlflow_conn_id="mlflow_b",
        poll_interval=0.01, max_consecutive_errors=10_000,
    )  # fmt: skip
    before = dict(os.environ)
    writes = watch_environ_writes(monkeypatch)

    async def triggerer():
        alias_task = asyncio.create_task(anext(alias_trigger.run()))
        drift_task = asyncio.create_task(anext(drift_trigger.run()))
        while len(proxies["a"].api_requests()) < POLLS or len(proxies["b"].api_requests()) < POLLS:
            if alias_task.done() or drift_task.done():
                break
            await asyncio.sleep(0.02)
        # now let both fire, still polling side by side
        await asyncio.to_thread(
            admins["a"].call,
            "POST",
            "registered-models/alias",
            json={"name": alias_model, "alias": "champion", "version": "2"},
        )
        await asyncio.to_thread(
            MlflowPolicyStore(admins["b"], drift_model).apply,  # type: ignore[arg-type]
            RetrainingPolicy(),
            DriftCheck("k1", "1", True, 0.9, "report.html"),
        )
        return await alias_task, await drift_task

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # preempt threads often, so unsafe interleavings would actually happen
    try:
        alias_event, drift_event = asyncio.run(asyncio.wait_for(triggerer(), 300))
    finally:
        sys.setswitchinterval(switch)

    for side, proxy in proxies.items():
        api = proxy.api_requests()
        assert len(api) >= POLLS, (side, len(api))
        carried = {seen.authorization for seen in api}
        assert carried == {basic(*USERS[side])}, f"server {side} got other credentials: {len(carried)} kinds"
        assert {s.authorization for s in proxy.seen if s.path == "/health"} == {None}
        assert {s.cookie for s in proxy.seen} == {None}  # no session cookie crosses servers either
    assert writes == [], "os.environ was written while the triggers ran"
    assert dict(os.environ) == before
    assert alias_event.payload == {
        "status": "success",
        "name": alias_model,
        "alias": "champion",
        "version": "2",
    }
    assert drift_event.payload["status"] == "success", drift_event.payload
    assert drift_event.payload["drift"]["key"] == "k1"
