"""The hub's REST API for operators (FastAPI): identities, sightings, watchlist, search, alerts, edges.

    >>> app = create_app(hub, OperatorAuth(hub.store))              # doctest: +SKIP
    >>> server = ApiServer(app, host="127.0.0.1", port=0)           # doctest: +SKIP
    >>> port = await server.start()                                 # doctest: +SKIP

The routes and their JSON are a contract the web UI and the CLI rely on; FastAPI serves it as an
OpenAPI schema at /openapi.json (and /docs). `cloud.running.RunningHub` and `crossview hub` run
this next to the hub's gRPC server, on the same asyncio loop.
"""

from __future__ import annotations

from cloud.api.app import create_app
from cloud.api.server import ApiServer

__all__ = ["ApiServer", "create_app"]
