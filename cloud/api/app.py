"""`create_app(hub, operators)`: the FastAPI application of one hub replica."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from cloud.api import errors
from cloud.api.deps import require_operator
from cloud.api.guards import OriginCheck
from cloud.api.routes import alerts, edges, identities, search, session, sightings, web
from cloud.api.routes import audit as audit_routes
from cloud.api.routes import operators as operator_routes
from cloud.api.uploads import BodyLimit
from cloud.operators import OperatorAuth

if TYPE_CHECKING:
    from cloud.hub import Hub


def create_app(hub: Hub, operators: OperatorAuth, *, poll_s: float = alerts.POLL_S,
               keep_alive_s: float = alerts.KEEP_ALIVE_S, allowed_origins: Iterable[str] = ()) -> FastAPI:
    """The REST API and web UI over `hub`, with log-ins checked by `operators`.

    `poll_s` / `keep_alive_s`: how often the alert stream reads the store and sends a keep-alive.
    `allowed_origins`: origins besides the hub's own (its Host header) whose pages may send
    state-changing requests with the session cookie (`cloud.api.guards.OriginCheck`).
    """
    app = FastAPI(title="crossview hub", version="1", summary="Operators' API of a crossview hub: gallery, "
                  "sightings, watchlist, search across edges, alerts, edges.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.operators = operators
    app.state.stopping = False  # set when the server stops: alert streams end
    app.state.poll_s = poll_s
    app.state.keep_alive_s = keep_alive_s
    errors.install(app)
    for module in (session, identities, sightings, alerts, search, edges, operator_routes, audit_routes, web):
        app.include_router(module.router)
    _add_docs(app)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(BodyLimit)
    app.add_middleware(OriginCheck, allowed_origins=list(allowed_origins))
    app.add_middleware(errors.ErrorGuard)  # added last: the outermost of the app's own
    return app


def _add_docs(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc, for logged-in operators only (the schema maps the attack surface)."""
    logged_in = [Depends(require_operator)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=logged_in)
    def openapi() -> JSONResponse:
        schema: dict[str, Any] = app.openapi()
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False, dependencies=logged_in)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API")

    @app.get("/redoc", include_in_schema=False, dependencies=logged_in)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - API")
