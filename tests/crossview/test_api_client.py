"""No REST client of the hub reuses a keep-alive connection the hub may be closing at that moment.

A request sent on a pooled connection just as the hub closes it for idleness reads "connection reset by
peer" (seen once in CI, when the hub's idle close and httpx's default reuse were both 5 s; reproduced with
a server closing idle connections after 1 s and a client reusing them at 0.996-1.0 s: about once in 40).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from cloud.api.server import HEADER_TIMEOUT_S, KEEP_ALIVE_S
from crossview.api_client import KEEPALIVE_EXPIRY_S, HubClient, http_client

ROOT = Path(__file__).resolve().parents[2]


def test_clients_drop_idle_connections_seconds_before_the_hub_does() -> None:
    assert min(KEEP_ALIVE_S, HEADER_TIMEOUT_S) >= KEEPALIVE_EXPIRY_S + 2
    assert httpx.Limits().keepalive_expiry < KEEP_ALIVE_S  # a plain httpx client is safe too
    with http_client("http://127.0.0.1:1", timeout_s=1) as client:
        assert client._transport._pool._keepalive_expiry == KEEPALIVE_EXPIRY_S  # type: ignore[attr-defined]
    with HubClient("http://127.0.0.1:1") as hub:
        assert hub._http._transport._pool._keepalive_expiry == KEEPALIVE_EXPIRY_S  # type: ignore[attr-defined]


def test_every_pooled_client_in_the_repository_comes_from_http_client() -> None:
    built_here = [str(path.relative_to(ROOT)) for folder in ("cloud", "crossview", "edge", "models", "tools", "tests")
                  for path in (ROOT / folder).rglob("*.py")
                  if re.search(r"httpx\.(Async)?Client\(", path.read_text()) and path.name != "api_client.py"
                  and path != Path(__file__).resolve()]
    assert built_here == [], "build the hub's HTTP clients with crossview.api_client.http_client"
