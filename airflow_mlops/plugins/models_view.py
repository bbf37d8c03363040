"""The Models view: pages and JSON under ``/mlops`` on the Airflow API server, in the Airflow UI's nav.

The plugin registers an *external view* (``url_route="mlops-models"``): the Airflow UI shows ``/mlops/models``
in a frame under its own navigation, at ``/plugin/mlops-models``. The pages are rendered on the server
(:mod:`airflow_mlops.plugins.models_html`); one small script (``/mlops/static/models.js``) runs the actions.

Routes (all need an authenticated Airflow user, like the report viewer; none is a 401):

* ``GET /models`` and ``GET /api/models``: the managed models whose owner DAG (the DAG that registered the
  newest version, tag ``mlops.airflow.dag_id``) the user may read (``is_authorized_dag(GET, RUN)``); a model
  without a recorded owner is listed only to users who may read every DAG;
* ``GET /models/{name}`` and ``GET /api/model?name=...``: one model, same rule (403 otherwise);
* ``POST /api/models/rollback`` ``{"name", "reason"?, "request_id"}`` and ``POST /api/models/promote``
  ``{"name", "version", "reason", "request_id"}``: move the champion alias through the code the
  :class:`~airflow_mlops.operators.mlflow.MlflowRollbackModelOperator` and
  :class:`~airflow_mlops.operators.mlflow.MlflowSetModelAliasOperator` run
  (:func:`~airflow_mlops.core.aliases.rollback_alias`, :func:`~airflow_mlops.core.aliases.set_alias`), so the
  move lands in the model's alias history with its reason and ``by = models-view:<user>:<request_id>``. They
  need edit rights on the owner DAG (``is_authorized_dag(PUT, RUN)``), a JSON body and the header
  ``X-Requested-With: airflow-mlops`` (a cross-site form cannot send either, so the UI's cookie cannot be
  used from another site). The same ``request_id`` sent twice (a double click, a client retry) moves once.

Scoring runs and predictions manifests come from the Airflow metadata DB (the predictions Asset events carry
the model name and version); everything else from MLflow (:mod:`airflow_mlops.core.model_view`).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at run time.
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
    from fastapi import FastAPI

#: The Airflow UI route of the view (``/plugin/<route>``) and its nav entry.
URL_ROUTE = "mlops-models"
EXTERNAL_VIEW = {
    "name": "Models",
    "href": "/mlops/models",
    "url_route": URL_ROUTE,
    "destination": "nav",
    "category": "browse",
}
ACTION_HEADER = "X-Requested-With"
ACTION_HEADER_VALUE = "airflow-mlops"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_MAX_EVENTS = 2000  # newest predictions Asset events read for the pages
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")

# Our own pages: scripts only from /mlops/static, no inline script, fetches to this origin only.
CSP_PAGES = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": CSP_PAGES,
}


def ui_prefix() -> str:
    """The path the Airflow UI is served under (``[api] base_url``'s path, usually empty)."""
    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def clean_reason(value: Any, *, required: bool) -> str:
    """A one-line reason of at most MAX_REASON characters; ValueError naming the fix."""
    from airflow_mlops.core.registry import MAX_REASON

    text = _CONTROL_RE.sub(" ", str(value or "")).strip()
    if required and not text:
        raise ValueError(
            "a reason is required: say why this version should serve (it is kept in the history)"
        )
    if len(text) > MAX_REASON:
        raise ValueError(f"the reason is {len(text)} characters; keep it to {MAX_REASON}")
    return text


def scoring_by_model(session: Any, names: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The predictions Asset events of each model, newest first (from the newest :data:`_MAX_EVENTS`)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    query = (
        select(AssetEvent, AssetModel.uri)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .order_by(AssetEvent.timestamp.desc())
        .limit(_MAX_EVENTS)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for event, uri in session.execute(query):
        extra = event.extra if isinstance(event.extra, dict) else {}
        name = extra.get("model_name")
        if not name or not extra.get("manifest_uri") or (names is not None and name not in names):
            continue
        out.setdefault(str(name), []).append(
            {
                "at": event.timestamp.timestamp() if event.timestamp else None,
                "version": str(extra.get("model_version", "")),
                "rows": extra.get("rows"),
                "manifest_uri": str(extra.get("manifest_uri")),
                "output_uri": str(extra.get("output_uri") or uri),
                "asset_id": event.asset_id,
                "dag_id": event.source_dag_id,
                "run_id": event.source_run_id,
            }
        )
    return out


def run_states(session: Any, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The state of each (dag_id, run_id) that still exists in the metadata DB."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    run_ids = sorted({run_id for _, run_id in pairs if run_id})
    states: dict[tuple[str, str], str] = {}
    for start in range(0, len(run_ids), 500):
        query = select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
            DagRun.run_id.in_(run_ids[start : start + 500])
        )
        for dag_id, run_id, state in session.execute(query):
            if (dag_id, run_id) in pairs:
                states[(dag_id, run_id)] = str(state)
    return states


class Access:
    """What the user may read and edit, asked of the deployment's auth manager once per request."""

    def __init__(self, user: Any) -> None:
        from airflow.api_fastapi.app import get_auth_manager

        self.user = user
        self.manager = get_auth_manager()
        self._readable: set[str] | None = None
        self._all: bool | None = None

    def _allowed(self, method: "ResourceMethod", dag_id: str | None) -> bool:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

        details = DagDetails(id=dag_id) if dag_id else None
        return bool(
            self.manager.is_authorized_dag(
                method=method, access_entity=DagAccessEntity.RUN, details=details, user=self.user
            )
        )

    def can_read(self, dag_id: str | None) -> bool:
        if not dag_id:
            if self._all is None:
                self._all = self._allowed("GET", None)
            return self._all
        if self._readable is None:
            self._readable = set(self.manager.get_authorized_dag_ids(user=self.user, method="GET"))
        return dag_id in self._readable or self._allowed("GET", dag_id)

    def can_edit(self, dag_id: str | None) -> bool:
        return self._allowed("PUT", dag_id)


def _client_session() -> Any:
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.settings import get_settings

    return MlflowHook(mlflow_conn_id=get_settings().mlflow_conn_id).session()


def _ui_url() -> str | None:
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.settings import get_settings

    try:
        return MlflowHook(mlflow_conn_id=get_settings().mlflow_conn_id).ui_url
    except Exception:  # noqa: BLE001 - a link is a nicety: the page shows without it
        return None


def register_routes(app: "FastAPI") -> None:  # noqa: C901 - the routes are nested in one factory, as FastAPI apps are
    """Add the Models pages, their JSON and the two actions to the plugin's FastAPI app."""
    from pathlib import Path
    from typing import Annotated

    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep
    from fastapi import Body, HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    from airflow_mlops.plugins import models_html

    static = Path(__file__).with_name("static")

    def load_rows(access: Access, session: Any) -> tuple[list[Any], dict[str, Any]]:
        from airflow_mlops.core.model_view import list_models

        with _client_session() as client:
            rows = [r for r in list_models(client) if access.can_read(r.owner_dag)]
        scoring = scoring_by_model(session, {r.name for r in rows})
        return rows, scoring

    def load_detail(name: str, access: Access, session: Any) -> tuple[Any, list[dict[str, Any]]]:
        from airflow_mlops.core.model_view import model_detail
        from airflow_mlops.exceptions import ModelNotFound

        try:
            with _client_session() as client:
                detail = model_detail(client, name)
        except ModelNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        if not access.can_read(detail.owner_dag):
            raise HTTPException(
                status_code=403, detail=f"you may not read the DAG {detail.owner_dag!r} of {name!r}"
            )
        return detail, scoring_by_model(session, {name}).get(name, [])

    def states_for(pairs: set[tuple[str, str]], session: Any) -> dict[tuple[str, str], str]:
        return run_states(session, {p for p in pairs if p[0] and p[1]})

    @app.get("/static/{file}", include_in_schema=False)
    def static_file(file: str) -> FileResponse:
        if file not in {"models.js", "models.css"}:
            raise HTTPException(status_code=404, detail="no such file")
        media = "text/javascript" if file.endswith(".js") else "text/css"
        return FileResponse(static / file, media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/models", response_class=HTMLResponse)
    def models_page(user: GetUserDep, session: SessionDep) -> HTMLResponse:
        started = time.perf_counter()
        access = Access(user)
        rows, scoring = load_rows(access, session)
        pairs = {
            (r.last_training.get("dag_id", ""), r.last_training.get("airflow_run_id", ""))
            for r in rows
            if r.last_training
        }
        pairs |= {(e[0]["dag_id"], e[0]["run_id"]) for e in scoring.values() if e}
        markup = models_html.list_page(
            rows, scoring, states_for(pairs, session), ui_prefix=ui_prefix(), mlflow_ui=_ui_url(),
            user=user.get_name(), elapsed=time.perf_counter() - started,
        )  # fmt: skip
        return HTMLResponse(markup, headers=PAGE_HEADERS)

    @app.get("/api/models")
    def models_json(user: GetUserDep, session: SessionDep) -> JSONResponse:
        rows, scoring = load_rows(Access(user), session)
        data = [{**r.to_dict(), "last_scoring": (scoring.get(r.name) or [None])[0]} for r in rows]
        return JSONResponse({"models": data}, headers={"Cache-Control": "no-store"})

    @app.get("/models/{name:path}", response_class=HTMLResponse)
    def model_page(name: str, user: GetUserDep, session: SessionDep) -> HTMLResponse:
        started = time.perf_counter()
        access = Access(user)
        detail, scoring = load_detail(name, access, session)
        pairs = {(v.dag_id, v.airflow_run_id) for v in detail.versions} | {
            (e["dag_id"], e["run_id"]) for e in scoring
        }
        markup = models_html.model_page(
            detail, scoring, states_for(pairs, session), can_edit=access.can_edit(detail.owner_dag),
            ui_prefix=ui_prefix(), mlflow_ui=_ui_url(), user=user.get_name(),
            elapsed=time.perf_counter() - started,
        )  # fmt: skip
        return HTMLResponse(markup, headers=PAGE_HEADERS)

    @app.get("/api/model")
    def model_json(user: GetUserDep, session: SessionDep, name: str = Query(...)) -> JSONResponse:
        detail, scoring = load_detail(name, Access(user), session)
        return JSONResponse({**detail.to_dict(), "scoring": scoring}, headers={"Cache-Control": "no-store"})

    def check_action(request: Request, body: Any, user: Any) -> tuple[str, str, str]:
        """The model name, the actor and the owner DAG of an action request, or the HTTP error."""
        if request.headers.get(ACTION_HEADER) != ACTION_HEADER_VALUE:
            raise HTTPException(
                status_code=403, detail=f"actions need the header {ACTION_HEADER}: {ACTION_HEADER_VALUE}"
            )
        if not (request.headers.get("content-type") or "").startswith("application/json"):
            raise HTTPException(
                status_code=415, detail="send the action as JSON (Content-Type: application/json)"
            )
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            raise HTTPException(
                status_code=400, detail='the body must be a JSON object with the model "name"'
            )
        request_id = str(body.get("request_id") or "")
        if not _REQUEST_ID_RE.match(request_id):
            raise HTTPException(
                status_code=400,
                detail='"request_id" must be 8-64 letters, digits, "-" or "_" (the page makes one)',
            )
        name = body["name"].strip()
        from airflow_mlops.core.model_view import model_row
        from airflow_mlops.core.registry import get_registered_model
        from airflow_mlops.exceptions import ModelNotFound

        try:
            with _client_session() as client:
                owner = model_row(get_registered_model(client, name)).owner_dag
        except ModelNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        access = Access(user)
        if not access.can_edit(owner):
            raise HTTPException(
                status_code=403,
                detail=f"moving the champion of {name!r} needs edit rights on its DAG {owner!r}",
            )
        return name, f"models-view:{user.get_name()}:{request_id}", owner or ""

    def action_reason(body: Any, *, required: bool) -> str:
        """The request's cleaned ``reason``, or HTTP 400 naming the fix."""
        try:
            return clean_reason(body.get("reason"), required=required)
        except ValueError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None

    def run_move(move: Any) -> JSONResponse:
        from airflow_mlops.exceptions import MlopsConfigError, ModelNotFound, ModelRegistryError

        try:
            with _client_session() as client:
                result = move(client)
        except ModelNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        except MlopsConfigError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        except ModelRegistryError as err:
            raise HTTPException(status_code=409, detail=str(err)) from None
        return JSONResponse(result.to_summary(), headers={"Cache-Control": "no-store"})

    @app.post("/api/models/rollback")
    def rollback(request: Request, user: GetUserDep, body: Annotated[Any, Body()]) -> JSONResponse:
        from airflow_mlops.core.aliases import rollback_alias
        from airflow_mlops.settings import get_settings

        name, by, _ = check_action(request, body, user)
        reason = action_reason(body, required=False)
        alias = get_settings().champion_alias
        text = f"rolled back from the Models view by {user.get_name()}" + (f": {reason}" if reason else "")
        return run_move(lambda client: rollback_alias(client, name, alias, reason=text, by=by))

    @app.post("/api/models/promote")
    def promote(request: Request, user: GetUserDep, body: Annotated[Any, Body()]) -> JSONResponse:
        from airflow_mlops.core.aliases import set_alias
        from airflow_mlops.settings import get_settings

        name, by, _ = check_action(request, body, user)
        reason = action_reason(body, required=True)
        version = body.get("version")
        if not isinstance(version, str | int) or isinstance(version, bool) or not str(version).strip():
            raise HTTPException(status_code=400, detail='give the "version" to promote (a number, e.g. "3")')
        alias = get_settings().champion_alias
        text = f"promoted from the Models view by {user.get_name()}: {reason}"
        return run_move(
            lambda client: set_alias(client, name, alias, str(version).strip(), reason=text, by=by)
        )
