"""The report viewer (``/mlops/reports/view``) through a real ``airflow api-server`` and its auth manager.

One API server (SimpleAuthManager narrowed per user by :mod:`tests.helpers.dag_acl_auth_manager`) runs on the
test session's DB and storage. Reports are real: a validation report written by GXValidateDatasetOperator in
a dag.test() run, and an Evidently drift report, both built from data holding a ``</script>`` payload. Users:
``alice`` may read ``viewer_dag_a`` only, ``bob`` ``viewer_dag_b`` only, ``nobody`` no DAG at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests.helpers.airflow import run_dag
from tests.helpers.airflow_api_server import AirflowApiServer
from tests.helpers.xcom import xcom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYLOAD = "</script><script>alert(1)</script>"
DAG_A, DAG_B = "viewer_dag_a", "viewer_dag_b"
USERS = {"alice": ("viewer", "alice-pw"), "bob": ("viewer", "bob-pw"), "nobody": ("viewer", "nobody-pw")}
ACL = {"alice": [DAG_A], "bob": [DAG_B], "nobody": []}


class _Scripts(HTMLParser):
    """Counts the script elements a browser would create, and collects the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(markup: str) -> _Scripts:
    parser = _Scripts()
    parser.feed(markup)
    parser.close()
    return parser


def _frame(rows: int, shift: float, payload_every: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    city = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, rows)]
    city[::payload_every] = PAYLOAD
    return pd.DataFrame({"amount": rng.normal(shift, 1.0, rows), "city": city})


@pytest.fixture(scope="module")
def server(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowApiServer]:
    with AirflowApiServer(
        tmp_path_factory.mktemp("api-server"),
        USERS,
        auth_manager="tests.helpers.dag_acl_auth_manager.DagAclAuthManager",
        extra_env={"MLOPS_TEST_DAG_ACL": json.dumps(ACL)},
    ) as api:
        yield api


@pytest.fixture(scope="module")
def tokens(server: AirflowApiServer) -> dict[str, str]:
    return {user: server.token(user) for user in USERS}


@pytest.fixture(scope="module")
def validation_report(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The HTML report GXValidateDatasetOperator wrote in a DAG run of viewer_dag_a (failed suite, warn)."""
    from airflow.sdk import DAG

    from airflow_mlops.operators.validation import GXValidateDatasetOperator

    data = tmp_path_factory.mktemp("viewer-data") / "cities.parquet"
    _frame(200, 0.0, payload_every=4).to_parquet(data)
    suite = [
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "city", "value_set": ["a", "b", "c"]},
        }
    ]
    with DAG(DAG_A, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        GXValidateDatasetOperator(task_id="validate", dataset_uri=str(data), suite=suite, on_failure="warn")
    summary = xcom(run_dag(dag), "validate")
    assert summary["success"] is False, summary
    assert f"/validation/{DAG_A}/" in summary["report_uri"]
    return str(summary["report_uri"])


@pytest.fixture(scope="module")
def drift_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An Evidently report of viewer_dag_b, written and recorded the way EvidentlyDetectDriftOperator does."""
    from airflow_mlops.core.drift import detect_drift
    from airflow_mlops.core.lineage import AirflowIdentity
    from airflow_mlops.core.report_owner import split_uri, write_owner
    from airflow_mlops.core.storage import join_uri
    from airflow_mlops.settings import get_settings

    folder = tmp_path_factory.mktemp("viewer-drift")
    _frame(300, 0.0, payload_every=3).to_parquet(folder / "ref.parquet")
    _frame(300, 1.0, payload_every=2).to_parquet(folder / "cur.parquet")
    report_uri = join_uri(get_settings().report_base_uri, "drift", "viewer_model", "manual__1", "drift")
    result = detect_drift(
        str(folder / "ref.parquet"),
        str(folder / "cur.parquet"),
        report_uri=report_uri,
        categorical_columns=["city"],
        sample_size=0,
    )
    identity = AirflowIdentity(dag_id=DAG_B, run_id="manual__1", task_id="drift")
    write_owner(
        identity,
        [result.html_uri, result.json_uri, result.result_uri],
        scripts=[split_uri(result.html_uri)[1]],
    )
    return result.html_uri


def _view(server: AirflowApiServer, uri: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{server.url}/mlops/reports/view", params={"uri": uri}, timeout=30, **kwargs)


def _bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def _assert_security_headers(response: requests.Response) -> str:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    directives = [d.strip() for d in csp.split(";")]
    sandbox = [d for d in directives if d.split()[0] == "sandbox"]
    assert sandbox, csp  # an opaque origin: no Airflow cookies, API or windows for whatever runs in the page
    assert "allow-same-origin" not in csp and "allow-top-navigation" not in csp and "allow-popups" not in csp
    assert "default-src 'none'" in directives
    return sandbox[0]


# ---------------------------------------------------------------------------------------------------- tests
def test_anonymous_requests_are_401_whatever_the_path(server, validation_report):
    for uri in (validation_report, "/etc/passwd", "../../etc/passwd"):
        response = _view(server, uri)
        assert response.status_code == 401, (uri, response.text[:300])
    forged = _view(server, validation_report, **_bearer("not-a-jwt"))
    assert forged.status_code == 403 and PAYLOAD not in forged.text  # Airflow's "Invalid JWT token"
    cookie = _view(server, validation_report, cookies={"_token": "not-a-jwt"})
    assert cookie.status_code in (401, 403) and PAYLOAD not in cookie.text


def test_user_without_access_to_the_dag_is_403(server, tokens, validation_report, drift_report):
    for uri in (validation_report, drift_report):
        response = _view(server, uri, **_bearer(tokens["nobody"]))
        assert response.status_code == 403, response.text[:300]
        assert "<" not in response.text  # a JSON error, none of the report


def test_allowed_user_gets_the_report_with_the_headers_by_bearer_and_by_cookie(
    server, tokens, validation_report
):
    by_bearer = _view(server, validation_report, **_bearer(tokens["alice"]))
    by_cookie = _view(server, validation_report, cookies={"_token": tokens["alice"]})  # what a browser sends
    for response in (by_bearer, by_cookie):
        assert response.status_code == 200, response.text[:300]
        assert response.headers["Content-Type"].startswith("text/html")
        assert _assert_security_headers(response) == "sandbox"  # no scripts at all in a validation report
    assert by_bearer.content == by_cookie.content == Path(validation_report).read_bytes()

    json_uri = validation_report.rsplit("/", 1)[0] + "/validation.json"
    as_json = _view(server, json_uri, **_bearer(tokens["alice"]))
    assert as_json.status_code == 200 and as_json.headers["Content-Type"] == "application/json"
    _assert_security_headers(as_json)
    assert as_json.json()["success"] is False


def test_a_report_of_another_dag_is_403_whatever_the_request_says(
    server, tokens, validation_report, drift_report
):
    assert _view(server, drift_report, **_bearer(tokens["bob"])).status_code == 200
    # alice reads DAG A; the DAG comes from the owner record, so naming DAG A in the request changes nothing
    for params in ({}, {"dag_id": DAG_A}):
        response = requests.get(
            f"{server.url}/mlops/reports/view",
            params={"uri": drift_report, **params},
            timeout=30,
            **_bearer(tokens["alice"]),
        )
        assert response.status_code == 403, response.text[:300]
    assert _view(server, validation_report, **_bearer(tokens["bob"])).status_code == 403


def test_paths_outside_the_reports_or_without_an_owner_record_are_refused(server, tokens, validation_report):
    from airflow_mlops.core.report_owner import OWNER_NAME
    from airflow_mlops.settings import get_settings

    alice = _bearer(tokens["alice"])
    folder = Path(validation_report).parent
    assert _view(server, "/etc/passwd", **alice).status_code == 403
    assert _view(server, f"{folder}/../../../../etc/passwd", **alice).status_code == 400
    assert _view(server, f"{folder}/{OWNER_NAME}", **alice).status_code == 403  # hidden files: never

    stray = folder / "stray.html"  # in DAG A's folder, but not written by its task
    stray.write_text("<script>alert(2)</script>")
    response = _view(server, str(stray), **alice)
    assert response.status_code == 403 and "owner record" in response.json()["detail"]

    loose = Path(get_settings().report_base_uri) / "loose" / "report.html"  # no owner record at all
    loose.parent.mkdir(parents=True, exist_ok=True)
    loose.write_text("<p>hello</p>")
    assert _view(server, str(loose), **alice).status_code == 403

    original = Path(validation_report).read_bytes()  # changed after the record was written
    try:
        Path(validation_report).write_bytes(original + b"<script>alert(3)</script>")
        assert _view(server, validation_report, **alice).status_code == 409
    finally:
        Path(validation_report).write_bytes(original)
    assert _view(server, validation_report, **alice).status_code == 200


def test_a_script_payload_in_the_data_cannot_run_in_the_airflow_origin(
    server, tokens, validation_report, drift_report
):
    # Validation report: the payload is escaped text and the page has no script element; sandbox blocks any.
    page = _view(server, validation_report, cookies={"_token": tokens["alice"]})
    assert page.status_code == 200
    assert _assert_security_headers(page) == "sandbox"
    parsed = _parse(page.text)
    assert parsed.scripts == 0
    assert PAYLOAD not in page.text and "&lt;/script&gt;&lt;script&gt;alert(1)" in page.text
    assert any(PAYLOAD in text for text in parsed.text)  # shown to the reader, as text

    # Evidently's report is a JavaScript app and embeds the data in inline scripts: it is served with
    # scripts allowed only inside the sandbox (an opaque origin), with no network access at all.
    drift = _view(server, drift_report, cookies={"_token": tokens["bob"]})
    assert drift.status_code == 200 and drift.headers["Content-Type"].startswith("text/html")
    assert _assert_security_headers(drift) == "sandbox allow-scripts"
    csp = drift.headers["Content-Security-Policy"]
    assert "connect-src 'none'" in csp and "form-action 'none'" in csp and "script-src 'unsafe-inline'" in csp
    # ... and the data Evidently embeds is defused: the payload is in the page only as inert JSON escapes,
    # so it cannot close the script element that holds it (core.drift.engine._defuse_embedded_json).
    assert PAYLOAD not in drift.text
    assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in drift.text
