"""The Models view's routes through a real ``airflow api-server``, its auth manager and a real MLflow server.

Users (SimpleAuthManager narrowed per DAG by :mod:`tests.helpers.dag_acl_auth_manager`): ``alice`` may edit
DAG A only, ``bob`` may read every DAG but edit none, ``nobody`` reads no DAG. Model A is owned by DAG A
(it registered the newest version), model B by DAG B. Data is written with the provider's own core functions
on the session's MLflow server; the browser test (test_models_view.py) covers a lifecycle run's data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_mlops.core.aliases import alias_history
from airflow_mlops.core.gate import promote_if_better
from airflow_mlops.core.registration import register_model_version
from airflow_mlops.core.tags import TAG_DAG_ID, TAG_RUN_ID
from tests.helpers.airflow_api_server import AirflowApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_A, DAG_B = "models_dag_a", "models_dag_b"
USERS = {
    "alice": ("user", "alice-pw"),
    "bob": ("viewer", "bob-pw"),
    "nobody": ("viewer", "nobody-pw"),
}
ACL = {"alice": [DAG_A], "nobody": []}
ACTION = {"X-Requested-With": "airflow-mlops"}


def _client(mlflow_server: Any) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _model(client: Any, uri: str, name: str, dag_id: str, aucs: list[float]) -> None:
    """Versions trained and registered by ``dag_id``, each through the gate (the better ones promoted)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    from tests.unit.operators._support import _fluent

    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    model = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    for index, auc in enumerate(aucs):
        identity = {TAG_DAG_ID: dag_id, TAG_RUN_ID: f"manual__{index}"}
        with _fluent(uri), mlflow.start_run(experiment_id=experiment_id, tags=identity) as run:
            mlflow.log_metric("val_auc", auc)
            logged = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
        registered = register_model_version(
            client,
            name=name,
            run_id=run.info.run_id,
            model_uri=f"models:/{logged.model_id}",
            key=f"{dag_id}/manual__{index}/register",
            tags=identity,
            await_ready_timeout=30,
        )
        promote_if_better(
            client,
            name,
            registered.version,
            [{"metric": "val_auc", "min_delta": 0.0}],
            by=f"{dag_id}/gate/{index}",
        )


@pytest.fixture(scope="module")
def models(mlflow_server: Any) -> dict[str, str]:
    client = _client(mlflow_server)
    suffix = uuid.uuid4().hex[:6]
    names = {"a": f"models-api-a-{suffix}", "b": f"models-api-b-{suffix}"}
    _model(client, mlflow_server.url, names["a"], DAG_A, [0.80, 0.90, 0.85])  # v1, v2 promoted; v3 rejected
    _model(client, mlflow_server.url, names["b"], DAG_B, [0.70])
    return names


@pytest.fixture(scope="module")
def server(
    airflow_db: Path, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowApiServer]:
    with AirflowApiServer(
        tmp_path_factory.mktemp("models-api-server"),
        USERS,
        auth_manager="tests.helpers.dag_acl_auth_manager.DagAclAuthManager",
        extra_env={"MLOPS_TEST_DAG_ACL": json.dumps(ACL)},
    ) as api:
        yield api


@pytest.fixture(scope="module")
def tokens(server: AirflowApiServer) -> dict[str, str]:
    return {user: server.token(user) for user in USERS}


def _get(server: AirflowApiServer, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.url}/mlops{path}", headers=headers, timeout=30, **kwargs)


def _act(
    server: AirflowApiServer, token: str | None, action: str, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    sent = {**ACTION, **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return requests.post(f"{server.url}/mlops/api/models/{action}", json=body, headers=sent, timeout=60)


def _rid() -> str:
    return uuid.uuid4().hex


def test_anonymous_callers_get_401_everywhere(server, models):
    for path in ("/models", "/api/models", f"/models/{models['a']}", f"/api/model?name={models['a']}"):
        assert _get(server, path).status_code == 401, path
    assert _act(server, None, "rollback", {"name": models["a"], "request_id": _rid()}).status_code == 401


def test_each_user_lists_only_the_models_of_the_dags_they_may_read(server, tokens, models):
    def listed(user: str) -> set[str]:
        response = _get(server, "/api/models", tokens[user])
        assert response.status_code == 200, response.text
        return {m["name"] for m in response.json()["models"]} & set(models.values())

    assert listed("alice") == {models["a"]}
    assert listed("bob") == {models["a"], models["b"]}
    assert listed("nobody") == set()
    row = next(
        m for m in _get(server, "/api/models", tokens["bob"]).json()["models"] if m["name"] == models["a"]
    )
    assert row["aliases"] == {"champion": "2", "challenger": "3"}
    assert row["owner_dag"] == DAG_A and row["last_gate"]["decision"] == "rejected"


def test_a_model_of_another_dag_is_403_and_an_unknown_one_404(server, tokens, models):
    assert _get(server, f"/models/{models['b']}", tokens["alice"]).status_code == 403
    assert _get(server, f"/api/model?name={models['b']}", tokens["alice"]).status_code == 403
    missing = _get(server, "/models/no-such-model-anywhere", tokens["bob"])
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]


def test_pages_render_with_their_security_headers_by_cookie_too(server, tokens, models):
    page = requests.get(
        f"{server.url}/mlops/models/{models['a']}", cookies={"_token": tokens["alice"]}, timeout=30
    )

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="timeline"' in page.text and 'id="rollback"' in page.text
    read_only = _get(server, f"/models/{models['a']}", tokens["bob"])
    assert read_only.status_code == 200 and 'id="rollback"' not in read_only.text
    script = _get(server, "/static/models.js", tokens["bob"])
    assert script.status_code == 200 and "X-Requested-With" in script.text
    assert _get(server, "/static/..%2Fapi.py", tokens["bob"]).status_code == 404


def test_actions_refuse_readers_cross_site_requests_and_bad_bodies(server, tokens, models):
    name = models["a"]
    body = {"name": name, "request_id": _rid()}
    refused = _act(server, tokens["bob"], "rollback", body)
    assert refused.status_code == 403 and "edit rights" in refused.json()["detail"]
    no_header = requests.post(
        f"{server.url}/mlops/api/models/rollback",
        json=body,
        headers={"Authorization": f"Bearer {tokens['alice']}"},
        timeout=30,
    )
    assert no_header.status_code == 403 and "X-Requested-With" in no_header.json()["detail"]
    form = requests.post(
        f"{server.url}/mlops/api/models/rollback",
        data=json.dumps(body),
        headers={**ACTION, "Authorization": f"Bearer {tokens['alice']}", "Content-Type": "text/plain"},
        timeout=30,
    )
    assert form.status_code == 415
    assert _act(server, tokens["alice"], "rollback", {"name": name, "request_id": "x"}).status_code == 400
    assert _act(server, tokens["alice"], "rollback", ["not", "an", "object"]).status_code == 400
    no_reason = _act(server, tokens["alice"], "promote", {**body, "version": "1", "reason": "  "})
    assert no_reason.status_code == 400 and "reason is required" in no_reason.json()["detail"]
    unknown = _act(server, tokens["alice"], "promote", {**body, "version": "99", "reason": "why not"})
    assert unknown.status_code == 404 and "no version 99" in unknown.json()["detail"]
    other_dag = _act(server, tokens["alice"], "rollback", {"name": models["b"], "request_id": _rid()})
    assert other_dag.status_code == 403
    # nothing of the above moved or recorded anything
    assert [e.action for e in alias_history(_client_for(server), name, "champion")] == ["promote", "promote"]


def _client_for(server: AirflowApiServer) -> Any:
    import os

    from mlflow import MlflowClient

    uri = json.loads(os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"])["host"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_rollback_then_promote_are_recorded_once_each_with_who_and_why(server, tokens, models):
    name = models["a"]
    client = _client_for(server)
    rid = _rid()

    first = _act(
        server, tokens["alice"], "rollback", {"name": name, "request_id": rid, "reason": "p99 latency"}
    )
    again = _act(
        server, tokens["alice"], "rollback", {"name": name, "request_id": rid, "reason": "p99 latency"}
    )

    assert first.status_code == 200, first.text
    assert first.json()["moved"] is True and first.json()["version"] == "1"
    assert again.status_code == 200 and again.json()["moved"] is False  # a double click moves once
    assert client.get_registered_model(name).aliases["champion"] == "1"
    newest = alias_history(client, name, "champion")[-1]
    assert newest.action == "rollback" and newest.by == f"models-view:alice:{rid}"
    assert newest.reason == "rolled back from the Models view by alice: p99 latency"
    nothing_left = _act(server, tokens["alice"], "rollback", {"name": name, "request_id": _rid()})
    assert nothing_left.status_code == 409 and "nothing to roll back" in nothing_left.json()["detail"]

    promoted = _act(
        server,
        tokens["alice"],
        "promote",
        {"name": name, "request_id": _rid(), "version": 3, "reason": "canary ok"},
    )

    assert promoted.status_code == 200 and promoted.json()["moved"] is True
    assert client.get_registered_model(name).aliases["champion"] == "3"
    newest = alias_history(client, name, "champion")[-1]
    assert newest.action == "set" and newest.reason == "promoted from the Models view by alice: canary ok"
    page = _get(server, f"/models/{name}", tokens["bob"]).text
    assert page.index('data-action="set"') < page.index('data-action="rollback"')  # newest first
