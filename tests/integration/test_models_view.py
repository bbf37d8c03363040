"""The Models view in a real headless Chromium, inside the real Airflow UI, on the registry of a real demo run.

One demo lifecycle run (the session fixture ``demo_root``, shared with test_lifecycle.py) leaves an MLflow store
and an Airflow home. A real ``mlflow server`` serves a copy of that store (the rollback below changes it), and a
real ``airflow api-server`` runs on the demo's Airflow home, metadata DB and storage, with an admin and a viewer.
The browser (:mod:`tests.helpers.browser`) signs in through the simple auth manager's login form, finds
"Models" in the Airflow nav, reads the pages, rolls the champion back as admin and is refused as viewer; what
the pages show is checked against the registry read with MlflowClient. Screenshots and the pages' load timings
are written to ``$MLOPS_TEST_ARTIFACTS`` (default ``.artifacts/browser/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.airflow_api_server import AirflowApiServer
from tests.helpers.browser import Chromium
from tests.helpers.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "churn"
USERS = {"admin": ("admin", "pw1"), "viewer": ("viewer", "pw2")}
REASON = "browser test rollback"
ROW = f'table#models tr[data-model="{MODEL}"]'


@dataclass
class Stack:
    """The servers of the module and where the test's evidence goes."""

    api: AirflowApiServer
    store_uri: str  # sqlite URI of the MLflow store the MLflow server serves
    artifacts: Path
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.api.url + path

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.store_uri, registry_uri=self.store_uri)

    def shot(self, page: Chromium, name: str, *, full_page: bool = False) -> Path:
        """A screenshot in the artifacts folder, checked to be a real PNG of a rendered page."""
        path = page.screenshot(self.artifacts / name, full_page=full_page)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
        assert width >= 400 and height >= 300 and len(data) > 10_000, (
            f"{path}: {width}x{height}, {len(data)} B"
        )
        return path

    def record_timing(self, path: str, page: Chromium) -> dict[str, float]:
        timing = page.navigation_timing()
        self.timings[path] = timing
        (self.artifacts / "timings.json").write_text(json.dumps(self.timings, indent=2, sort_keys=True))
        print(f"page load {path}: {json.dumps(timing, sort_keys=True)}")
        return timing


@pytest.fixture(scope="module")
def stack(demo_root: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root, output = demo_root
    work = tmp_path_factory.mktemp("models-view")
    store = work / "mlflow"
    store.mkdir()
    shutil.copy2(root / "mlflow" / "mlflow.db", store / "mlflow.db")  # artifact URIs in it stay absolute
    reports = re.search(r"validation and drift reports: (\S+)", output)
    assert reports, f"the demo printed no reports folder:\n{output[-3000:]}"
    artifacts = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO / ".artifacts" / "browser")
    artifacts.mkdir(parents=True, exist_ok=True)
    home = root / "airflow"
    with MlflowServer(store) as mlflow:
        env = {  # the demo's Airflow settings (airflow_mlops/demo.py _setup_env), MLflow through the server
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "logs"),
            "AIRFLOW__MLOPS__STORAGE_BASE_URI": str(root / "storage"),
            "AIRFLOW__MLOPS__REPORT_BASE_URI": reports.group(1),
            "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow.connection_json(),
        }
        with AirflowApiServer(work / "api-server", USERS, extra_env=env) as api:
            yield Stack(api, f"sqlite:///{store / 'mlflow.db'}", artifacts)


def sign_in(page: Chromium, base: str, user: str, password: str) -> str:
    """Open the UI, get redirected to the login form, fill it in and submit it; returns the login page's URL."""
    page.goto(base + "/")
    page.wait_for(
        "location.pathname.startsWith('/auth/login') && !!document.querySelector('form input[name=username]')"
    )
    login_url = page.url
    page.type("form input[name=username]", user)
    page.type("form input[name=password][type=password]", password)
    page.wait_for("!document.querySelector('form button[type=submit]').disabled")
    page.click("form button[type=submit]")
    page.wait_for("!location.pathname.startsWith('/auth/')", timeout=60)
    deadline_js = "document.readyState === 'complete'"
    page.wait_for(deadline_js)
    return login_url


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Iterator[tuple[Chromium, str]]:
    with Chromium() as page:
        login_url = sign_in(page, stack.api.url, "admin", "pw1")
        yield page, login_url


def _text(page: Chromium, selector: str) -> str:
    return str(page.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"))


def _count(page: Chromium, selector: str, *, frame: str | None = None) -> int:
    if frame:
        return int(page.frame_eval(frame, f"doc.querySelectorAll({json.dumps(selector)}).length"))
    return int(page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))


def _shows_version(text: str, version: object) -> bool:
    return re.search(rf"(?<!\d){re.escape(str(version))}(?!\d)", text) is not None


def _open(page: Chromium, stack: Stack, path: str, ready: str) -> None:
    page.goto(stack.url(path))
    page.wait_for(f"document.readyState === 'complete' && !!document.querySelector({json.dumps(ready)})")


def _diagnose(page: Chromium) -> str:
    body = page.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
    return f"at {page.url}: {body!r}; page errors {list(page.errors)}"


# ------------------------------------------------------------------------------------------------ a. sign in
def test_sign_in_through_the_login_form_sets_the_token_cookie(
    admin: tuple[Chromium, str], stack: Stack
) -> None:
    page, login_url = admin
    assert "/auth/login" in login_url, f"/ did not redirect to the login page but to {login_url}"
    assert page.evaluate("location.pathname") == "/"
    assert "_token" in page.cookies(), f"no _token cookie after signing in: {sorted(page.cookies())}"


# ------------------------------------------------------------------------------------------------ b. in the UI
BROWSE = "button[aria-label=Browse], button[title=Browse]"
FIND_MODELS = """Array.from(document.querySelectorAll('a, button, [role=menuitem]')).filter(
  e => e.textContent.trim() === 'Models' && e.offsetParent !== null).map(
  e => ({tag: e.tagName, href: e.getAttribute('href') || ''}))"""


def test_the_nav_has_models_and_the_plugin_page_frames_the_list(
    admin: tuple[Chromium, str], stack: Stack
) -> None:
    page, _ = admin
    page.goto(stack.url("/"))
    # the nav renders its menus once the UI has fetched the auth menus and plugins: wait for the Models entry
    # itself or for the menu a view with a category sits in (Browse, Admin, ...)
    page.wait_for(
        f"(() => {{ const e = {FIND_MODELS}; return e.length > 0 || !!document.querySelector({BROWSE!r}); }})()",
        timeout=90,
    )
    entries = page.evaluate(FIND_MODELS)
    if not entries:
        page.click(BROWSE)
        entries = page.wait_for(f"(() => {{ const e = {FIND_MODELS}; return e.length ? e : null; }})()")
    assert entries, f"no 'Models' entry in the Airflow nav; {_diagnose(page)}"
    hrefs = [e["href"] for e in entries if e["href"]]
    assert not hrefs or any(h.endswith("/plugin/mlops-models") for h in hrefs), entries

    page.evaluate(
        """Array.from(document.querySelectorAll('a, button, [role=menuitem]')).find(
             e => e.textContent.trim() === 'Models' && e.offsetParent !== null).click()"""
    )
    page.wait_for("location.pathname === '/plugin/mlops-models'", timeout=30)
    page.wait_for(
        "(() => { const f = document.querySelector('iframe'); const d = f && f.contentDocument;"
        " return !!(d && d.readyState === 'complete' && d.querySelector('table#models')); })()",
        timeout=60,
    )
    src = page.evaluate("document.querySelector('iframe').src")
    assert src.endswith("/mlops/models"), src
    assert _count(page, ROW, frame="iframe") == 1
    assert page.frame_eval("iframe", "win.location.pathname") == "/mlops/models"
    # still inside the Airflow UI: its nav is around the frame
    assert page.evaluate("document.querySelectorAll('a[href=\"/dags\"]').length") > 0
    stack.shot(page, "models-in-airflow.png")


# ------------------------------------------------------------------------------------------------ c. the list
def test_the_list_shows_the_registry_aliases_gate_and_drift(
    admin: tuple[Chromium, str], stack: Stack
) -> None:
    page, _ = admin
    _open(page, stack, "/mlops/models", ROW)
    stack.record_timing("/mlops/models", page)
    aliases = stack.client().get_registered_model(MODEL).aliases
    cells = {
        cell: _text(page, f"{ROW} td.{cell}").strip() for cell in ("champion", "challenger", "gate", "drift")
    }
    assert _shows_version(cells["champion"], aliases["champion"]), (cells, aliases)
    assert _shows_version(cells["challenger"], aliases["challenger"]), (cells, aliases)
    assert cells["gate"] and cells["gate"] != "—", cells
    assert re.search(r"\d+\.\d+|\d", cells["drift"]), cells
    stack.shot(page, "models-list.png", full_page=True)


# ------------------------------------------------------------------------------------------------ d. one model
def test_the_model_page_shows_timeline_drift_plot_and_versions(
    admin: tuple[Chromium, str], stack: Stack
) -> None:
    page, _ = admin
    _open(page, stack, "/mlops/models", ROW)
    page.click(f"{ROW} a.model-link")
    page.wait_for(
        f"location.pathname === '/mlops/models/{MODEL}' && document.readyState === 'complete'"
        " && !!document.querySelector('ol#timeline')",
        timeout=60,
    )
    stack.record_timing(f"/mlops/models/{MODEL}", page)

    events = page.evaluate(
        "Array.from(document.querySelectorAll('ol#timeline li.event')).map("
        "li => ({action: li.getAttribute('data-action'), version: li.getAttribute('data-version')}))"
    )
    assert len(events) >= 1, _diagnose(page)
    assert all(e["action"] and e["version"] for e in events), events

    client = stack.client()
    model = client.get_registered_model(MODEL)
    checks = json.loads(model.tags["mlops.drift.state"])["history"]
    assert _count(page, "svg#drift-plot") == 1, _diagnose(page)
    assert _count(page, "svg#drift-plot circle.check") == len(checks), checks
    assert _count(page, "svg#drift-plot line.threshold") == 1
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert _count(page, "table#versions tr[data-version]") == len(versions)
    shown = page.evaluate(
        "Array.from(document.querySelectorAll('table#versions tr[data-version]')).map(r => r.dataset.version)"
    )
    assert sorted(shown) == sorted(str(v.version) for v in versions)
    stack.shot(page, "model-page.png", full_page=True)


# ------------------------------------------------------------------------------------------------ e. roll back
def test_rolling_back_from_the_page_moves_the_champion_and_records_why(
    admin: tuple[Chromium, str], stack: Stack
) -> None:
    from airflow_mlops.core.aliases import alias_history, previous_version

    page, _ = admin
    client = stack.client()
    current = str(client.get_registered_model(MODEL).aliases["champion"])
    target = previous_version(alias_history(client, MODEL, "champion"), "champion", current)
    if target is None:
        pytest.skip(
            f"the demo kept v{current} as its first champion: there is no earlier one to roll back to"
        )
    seen = {
        int(k.rsplit(".", 1)[1])
        for k in client.get_registered_model(MODEL).tags
        if k.startswith("mlops.history.")
    }

    _open(page, stack, f"/mlops/models/{MODEL}", "button#rollback")
    # The page shows the result, then reloads: keep what #action-result said across the reload.
    page.evaluate(
        """(() => {
          window.__beforeRollback = true;
          const box = document.querySelector('#action-result');
          new MutationObserver(() => sessionStorage.setItem('mlops-test-result', box.textContent)).observe(
            box, {childList: true, characterData: true, subtree: true});
        })()"""
    )
    page.type("input#rollback-reason", REASON)
    page.click("button#rollback")
    said = page.wait_for(
        "(() => { const t = sessionStorage.getItem('mlops-test-result') || ''; return t.includes('rolled back') ? t"
        " : (t.startsWith('Refused') || t.startsWith('The request failed') ? 'FAILED: ' + t : ''); })()",
        timeout=60,
    )
    assert not said.startswith("FAILED"), said
    page.wait_for(
        "!window.__beforeRollback && document.readyState === 'complete' && "
        "(document.querySelector('ol#timeline li.event') || {dataset: {}}).dataset.action === 'rollback'",
        timeout=60,
    )
    assert page.evaluate("document.querySelector('ol#timeline li.event').dataset.version") == target
    assert _text(page, "#champion").strip().lstrip("v") == target

    model = client.get_registered_model(MODEL)
    assert str(model.aliases["champion"]) == target, (model.aliases, current, target)
    new = {k: json.loads(v) for k, v in model.tags.items() if k.startswith("mlops.history.")}
    new = {k: v for k, v in new.items() if int(k.rsplit(".", 1)[1]) not in seen}
    assert len(new) == 1, new
    (event,) = new.values()
    assert event["action"] == "rollback" and event["alias"] == "champion", event
    assert (str(event["from"]), str(event["to"])) == (current, target), event
    assert REASON in event["reason"], event
    assert "admin" in event["by"], event
    stack.shot(page, "after-rollback.png", full_page=True)


# ------------------------------------------------------------------------------------------------ f. read-only
def test_a_viewer_sees_no_rollback_and_the_action_is_refused(stack: Stack) -> None:
    client = stack.client()
    before = dict(client.get_registered_model(MODEL).aliases)
    with Chromium() as page:  # a fresh profile: no admin cookie
        sign_in(page, stack.api.url, "viewer", "pw2")
        _open(page, stack, f"/mlops/models/{MODEL}", "ol#timeline")
        button = page.evaluate(
            "(() => { const b = document.querySelector('button#rollback');"
            " return b === null ? 'absent' : (b.disabled ? 'disabled' : 'enabled'); })()"
        )
        assert button in ("absent", "disabled"), _diagnose(page)
        body = json.dumps({"name": MODEL, "reason": "viewer attempt", "request_id": "viewer-attempt-1"})
        status = page.evaluate(
            "fetch('/mlops/api/models/rollback', {method: 'POST', credentials: 'include',"
            " headers: {'Content-Type': 'application/json', 'X-Requested-With': 'airflow-mlops'},"
            f" body: {json.dumps(body)}}}).then(r => r.text().then(t => [r.status, t]))"
        )
        assert status[0] == 403, status
        stack.shot(page, "viewer-model-page.png", full_page=True)
        pgid = page.pgid
    assert page.survivors() == [], f"chromium processes of group {pgid} outlived the browser"
    assert dict(client.get_registered_model(MODEL).aliases) == before
