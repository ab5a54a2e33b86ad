"""The REST client never reuses a keep-alive connection the hub may be closing at that moment.

A request sent on a pooled connection just as the hub closes it for idleness reads "connection reset by
peer" (seen in CI. Reproduced with a server closing idle connections after 1 s and a client
reusing them at 0.996-1.0 s fails about once in 40). httpx's default expiry equals the hub's 5 s.
"""

from __future__ import annotations

from cloud.api.server import HEADER_TIMEOUT_S, KEEP_ALIVE_S
from crossview.api_client import KEEPALIVE_EXPIRY_S, HubClient, http_client


def test_clients_drop_idle_connections_seconds_before_the_hub_does() -> None:
    assert min(KEEP_ALIVE_S, HEADER_TIMEOUT_S) >= KEEPALIVE_EXPIRY_S + 2
    with http_client("http://127.0.0.1:1", timeout_s=1) as client:
        assert client._transport._pool._keepalive_expiry == KEEPALIVE_EXPIRY_S  # type: ignore[attr-defined]
    with HubClient("http://127.0.0.1:1") as hub:
        assert hub._http._transport._pool._keepalive_expiry == KEEPALIVE_EXPIRY_S  # type: ignore[attr-defined]
