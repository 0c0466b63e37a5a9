"""Portal: the advocates' web pages (`/`) and JSON API (`/api/v1`). It records advocate actions;
the dispatcher carries them out. Sign-in, caseloads and held messages come with the portal work.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

from services.core.runtime import Runtime

NAME = "portal"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>carehub</title></head>
<body><main><h1>carehub</h1>
<p>The advocate portal is not built yet. This process is running:
<a href="/healthz">health</a>, <a href="/readyz">readiness</a>, <a href="/metrics">metrics</a>.</p>
</main></body></html>"""


def mount(rt: Runtime, app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return _PAGE

    api = APIRouter(prefix="/api/v1")

    @api.get("")
    async def api_root() -> dict[str, str]:
        return {"api": "carehub portal", "version": "v1"}

    app.include_router(api)
