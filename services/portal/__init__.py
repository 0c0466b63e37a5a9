"""Portal: the advocates' web pages (`/`) and JSON API (`/api/v1`).

Staff sign in with a password and a TOTP code; an advocate sees their own survivors, a supervisor
their team's, operations no personal data. The portal records advocate actions on held messages;
the dispatcher carries them out (`services.rules.actions`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from services.core.logs import get_logger
from services.core.runtime import Runtime
from services.portal import api, feedback, pages
from services.portal.web import STATIC_DIR

NAME = "portal"
log = get_logger(NAME)


def mount(rt: Runtime, app: FastAPI) -> None:
    if not (STATIC_DIR / "govuk" / "govuk-frontend.min.css").exists():
        # `make install` fetches GOV.UK Frontend; without it the pages work, unstyled.
        log.warning("portal.assets_missing", fetch="make assets")
    app.mount("/portal-assets", StaticFiles(directory=STATIC_DIR), name="portal-assets")
    app.include_router(pages.router)
    app.include_router(feedback.router)
    app.include_router(api.router)
    document: dict[str, Any] = {}

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        """The OpenAPI document of the portal API (the pages are not part of it)."""
        if not document:
            document.update(
                get_openapi(title="carehub portal API", version="1", routes=api.router.routes)
            )
        return document
