"""`create_app(hub, operators)`: the FastAPI application of one hub replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud.api import errors
from cloud.api.routes import alerts, edges, identities, search, session, sightings, web
from cloud.api.uploads import BodyLimit
from cloud.operators import OperatorAuth

if TYPE_CHECKING:
    from cloud.hub import Hub


def create_app(hub: Hub, operators: OperatorAuth, *, poll_s: float = alerts.POLL_S,
               keep_alive_s: float = alerts.KEEP_ALIVE_S) -> FastAPI:
    """The REST API and web UI over `hub`, with log-ins checked by `operators`.

    `poll_s` / `keep_alive_s`: how often the alert stream reads the store and sends a keep-alive.
    """
    app = FastAPI(title="crossview hub", version="1", summary="Operators' API of a crossview hub: gallery, "
                  "sightings, watchlist, search across edges, alerts, edges.")
    app.state.hub = hub
    app.state.operators = operators
    app.state.stopping = False  # set when the server stops: alert streams end
    app.state.poll_s = poll_s
    app.state.keep_alive_s = keep_alive_s
    errors.install(app)
    for module in (session, identities, sightings, alerts, search, edges, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(BodyLimit)
    return app
