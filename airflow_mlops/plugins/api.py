"""A FastAPI app mounted by the plugin at ``/mlops`` on the Airflow API server: the report viewer and health.

``GET /mlops/reports/view?uri=...`` serves a stored validation or drift report so that operator extra links
open in a browser whatever the storage (local folder or object store). Airflow does not protect plugin apps,
so the viewer does it itself, with the deployment's auth manager:

* the caller must be an authenticated Airflow user: the UI's ``_token`` cookie (what a browser opening an
  extra link sends) or an ``Authorization: Bearer`` token from ``POST /auth/token``; none is a 401;
* the file must lie under ``[mlops] report_base_uri`` (else 403) and be listed, with the SHA-256 of its
  current bytes, in the owner record (``.mlops-owner.json``) that the operator wrote next to it
  (:mod:`airflow_mlops.core.report_owner`); no record, an unlisted file or a changed file is a 403/409;
* the auth manager must let the user read the task instances of the DAG named in that record
  (``is_authorized_dag(method="GET", access_entity=TASK_INSTANCE)``), else 403. The DAG never comes from
  the request, so access to one DAG does not open the reports of another.

Every stored file is served with ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` and a
``Content-Security-Policy`` whose ``sandbox`` directive gives the page an opaque origin: even a report whose
markup carries a script from the data (``</script><script>...``) cannot read the Airflow session, the
Airflow API or other Airflow pages. HTML is script-free (``sandbox`` without ``allow-scripts``) unless the
owner record says the file needs its own scripts (Evidently's report is a JavaScript app); those get
``sandbox allow-scripts`` (never ``allow-same-origin``) with no network access (``connect-src 'none'``).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint's annotations (Request, GetUserDep)
# at runtime, and they are imported inside create_app, out of reach of string annotations.
import mimetypes
from typing import Any

# Served with every stored file. ``sandbox`` without allow-same-origin = an opaque origin (no Airflow cookies,
# no same-origin API calls, no access to other Airflow windows); no forms, popups or top-level navigation.
CSP_STATIC = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
# Reports that are JavaScript apps (Evidently): their inline scripts run, still in the opaque origin, and
# cannot fetch anything (connect-src 'none') or load code from elsewhere.
CSP_SCRIPTS = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_INLINE_TYPES = {"text/html", "application/json", "text/plain", "text/csv"}


def _under_base(uri: str, base: str) -> bool:
    from airflow_mlops.core import storage

    base = base.rstrip("/")
    if storage.is_local(base) and storage.is_local(uri):
        return storage.local_path(uri).startswith(storage.local_path(base).rstrip("/") + "/")
    return uri.startswith(base + "/")


class LazyApp:
    """The ASGI app the plugin mounts: :func:`create_app` runs on the first request, in the API server only.

    Plugins are imported by every Airflow process (task workers load them for the macros); building the app
    at import would cost them FastAPI and the API server's security module for nothing.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


def create_app() -> Any:  # noqa: C901 - the API routes are nested in one factory, as FastAPI apps are
    """The FastAPI app: ``/health``, ``/reports/view`` and the Models view (:mod:`.models_view`)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import Response

    app = FastAPI(title="airflow-mlops", description="Reports and status of airflow-mlops")

    @app.get("/health")
    def health() -> dict[str, str]:
        from airflow_mlops import __version__

        return {"status": "ok", "version": __version__}

    @app.get("/reports/view")
    def view_report(
        request: Request,
        user: GetUserDep,
        uri: str = Query(..., description="report URI under [mlops] report_base_uri"),
    ) -> Response:
        from airflow_mlops.core import storage
        from airflow_mlops.core.report_owner import OWNER_NAME, read_owner, sha256, split_uri
        from airflow_mlops.exceptions import UnsafeUriError
        from airflow_mlops.settings import get_settings

        try:
            uri = storage.check_uri(uri, what="report URI")
        except UnsafeUriError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        base = get_settings().report_base_uri.rstrip("/")
        if not _under_base(uri, base):
            raise HTTPException(status_code=403, detail=f"only reports under {base} are served")
        folder, name = split_uri(uri)
        if not name or name.startswith("."):
            raise HTTPException(status_code=403, detail=f"{uri} is not a report file")
        try:
            owner = read_owner(folder)
        except ValueError as err:
            raise HTTPException(status_code=403, detail=f"bad owner record in {folder}: {err}") from None
        if owner is None or name not in owner.files:
            raise HTTPException(
                status_code=403,
                detail=(
                    f"{uri} is not listed in an owner record ({folder}/{OWNER_NAME}), so the DAG that wrote "
                    "it is unknown; only reports written by the airflow-mlops validation and drift operators "
                    "are served (re-run the task to write the record)"
                ),
            )
        # Airflow's own dependency, with the DAG taken from the record: 403 "Forbidden" when not allowed.
        requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=owner.dag_id)(request, user)
        try:
            data = storage.read_bytes(uri)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"no report at {uri}") from None
        if sha256(data) != owner.files[name]:
            raise HTTPException(
                status_code=409,
                detail=f"{uri} changed after its owner record was written (a retry rewriting it?); reload later",
            )
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = dict(SECURITY_HEADERS)
        headers["Content-Security-Policy"] = CSP_SCRIPTS if name in owner.scripts else CSP_STATIC
        if media not in _INLINE_TYPES:
            headers["Content-Disposition"] = "attachment"
        return Response(content=data, media_type=media, headers=headers)

    from airflow_mlops.plugins.models_view import register_routes

    register_routes(app)
    return app
