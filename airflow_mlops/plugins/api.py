"""A FastAPI app mounted by the plugin at ``/mlops`` on the Airflow API server.

``GET /mlops/reports/view?uri=...`` serves a stored validation or drift report so that operator extra links
open in a browser whatever the storage (local folder or object store). Only files under the configured
``[mlops] report_base_uri`` are served; anything else is a 403.
"""

from __future__ import annotations

import mimetypes
from typing import Any


def create_app() -> Any:
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import Response

    app = FastAPI(title="airflow-mlops", description="Reports and status of airflow-mlops")

    @app.get("/health")
    def health() -> dict[str, str]:
        from airflow_mlops import __version__

        return {"status": "ok", "version": __version__}

    @app.get("/reports/view")
    def view_report(
        uri: str = Query(..., description="report URI under [mlops] report_base_uri"),
    ) -> Response:
        from airflow_mlops.core import storage
        from airflow_mlops.exceptions import UnsafeUriError
        from airflow_mlops.settings import get_settings

        try:
            storage.check_uri(uri, what="report URI")
        except UnsafeUriError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        base = get_settings().report_base_uri.rstrip("/")
        allowed = uri == base or uri.startswith(base + "/")
        if storage.is_local(base) and storage.is_local(uri):
            allowed = storage.local_path(uri).startswith(storage.local_path(base).rstrip("/") + "/")
        if not allowed:
            raise HTTPException(status_code=403, detail=f"only reports under {base} are served")
        try:
            data = storage.read_bytes(uri)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"no report at {uri}") from None
        media = mimetypes.guess_type(uri)[0] or "application/octet-stream"
        return Response(content=data, media_type=media)

    return app
