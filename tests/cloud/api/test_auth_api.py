"""Operator log-in over the REST API: cookie and Bearer sessions, log-out, expiry, and the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from crossview_testing.hub_api import HubApi, start_hub_api

from cloud.hub import Hub
from cloud.operators import OperatorAuth, OperatorAuthError, hash_password, verify_password
from cloud.store import HubStore
from crossview.api_client import http_client

PROTECTED = [("GET", "/api/me"), ("GET", "/api/identities"), ("GET", "/api/identities/x"),
             ("GET", "/api/sightings"), ("GET", "/api/alerts"), ("GET", "/api/alerts/stream"), ("GET", "/api/edges"),
             ("GET", "/api/watchlist"), ("POST", "/api/search"), ("POST", "/api/logout")]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_health_needs_no_login_and_everything_else_does(api: HubApi) -> None:
    with http_client(api.url, timeout_s=30) as anonymous:
        assert anonymous.get("/api/health").json() == {"status": "ok", "hub_id": api.running.hub.hub_id}
        for method, path in PROTECTED:
            reply = anonymous.request(method, path)
            assert (reply.status_code, reply.json()) == (401, {"detail": "not logged in"}), (method, path)
        reply = anonymous.get("/api/me", headers={"authorization": "Bearer cvs_forged"})
        assert (reply.status_code, reply.json()["detail"]) == (401, "not logged in")


def test_login_cookie_bearer_and_logout(api: HubApi) -> None:
    with http_client(api.url, timeout_s=30) as browser:
        wrong = browser.post("/api/login", json={"username": api.username, "password": "nope"})
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "wrong username or password"})
        unknown = browser.post("/api/login", json={"username": "mallory", "password": "nope"})
        assert unknown.json() == wrong.json()  # no hint which one was wrong
        reply = browser.post("/api/login", json={"username": api.username, "password": api.password})
        assert reply.status_code == 200
        body = reply.json()
        assert body["username"] == api.username and body["token"].startswith("cvs_")
        cookie = reply.headers["set-cookie"]
        assert "crossview_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
            "Strict", "strict") and "Path=/" in cookie
        me = browser.get("/api/me")  # the cookie alone
        assert me.status_code == 200 and me.json()["username"] == api.username
        assert me.json()["expires_s"] == pytest.approx(body["expires_s"])
        bearer = httpx.get(f"{api.url}/api/me", headers={"authorization": f"Bearer {body['token']}"})
        assert bearer.status_code == 200
        # a browser names the page's origin on a POST (a cookie-only POST without one is refused: issue 12)
        assert browser.post("/api/logout", headers={"origin": api.url}).json() == {"status": "logged out"}
        after = httpx.get(f"{api.url}/api/me", headers={"authorization": f"Bearer {body['token']}"})
        assert (after.status_code, after.json()["detail"]) == (401, "not logged in")
    assert api.client.get("/api/me").status_code == 200  # other sessions are untouched


def test_sessions_expire(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    clock = Clock()
    with start_hub_api(tmp_path, hub=make_hub(), operator_clock=clock, session_ttl_s=3600) as api:
        assert api.client.get("/api/me").json()["expires_s"] == clock.now + 3600
        clock.now += 3599
        assert api.client.get("/api/identities").status_code == 200
        clock.now += 1
        reply = api.client.get("/api/identities")
        assert (reply.status_code, reply.json()) == (401, {"detail": "session expired; log in again"})
        assert api.client.get("/api/identities").json()["detail"] == "not logged in"  # forgotten
        again = api.client.post("/api/login", json={"username": api.username, "password": api.password})
        assert again.status_code == 200
        headers = {"authorization": f"Bearer {again.json()['token']}"}
        assert api.client.get("/api/identities", headers=headers).status_code == 200


def test_login_input_errors_are_one_line(api: HubApi) -> None:
    for body, status in [({"username": "admin"}, 422), ({"username": "", "password": "x"}, 422),
                         ({"username": "admin", "password": "x", "role": "root"}, 422)]:
        reply = api.client.post("/api/login", json=body)
        assert reply.status_code == status and "\n" not in reply.json()["detail"], reply.text
    reply = api.client.post("/api/login", content=b'{"username": ', headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["detail"].startswith("malformed JSON body")
    assert api.client.get("/api/me").status_code == 200


def test_openapi_schema_lists_the_routes(api: HubApi) -> None:
    assert httpx.get(f"{api.url}/openapi.json").status_code == 401  # a map of the API: operators only
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ["/api/login", "/api/logout", "/api/me", "/api/health", "/api/identities",
                 "/api/identities/from-sighting", "/api/identities/{identity_id}",
                 "/api/identities/{identity_id}/crops/{index}", "/api/identities/{identity_id}/sightings",
                 "/api/identities/{identity_id}/timeline.png", "/api/sightings", "/api/sightings/{sighting_id}",
                 "/api/sightings/{sighting_id}/crop", "/api/watchlist", "/api/watchlist/{identity_id}",
                 "/api/search", "/api/alerts", "/api/alerts/stream", "/api/edges"]:
        assert path in paths, path
    assert set(paths["/api/watchlist/{identity_id}"]) == {"put", "delete"}
    assert "Identity" in schema["components"]["schemas"]
    assert api.client.get("/docs").status_code == 200


def test_operator_auth_keeps_only_hashes(store: HubStore) -> None:
    clock = Clock()
    auth = OperatorAuth(store, clock=clock, session_ttl_s=60)
    assert auth.create_operator("ops", "first password")
    assert not auth.create_operator("ops", "second password")  # a new password, same operator
    with pytest.raises(OperatorAuthError, match="wrong username or password"):
        auth.login("ops", "first password")
    session = auth.login("ops", "second password")
    record = store.get_operator("ops")
    assert record is not None and "second password" not in record.password_hash
    assert verify_password("second password", record.password_hash)
    assert not verify_password("second password", hash_password("other"))
    assert auth.check(session.token).username == "ops"
    clock.now += 60
    with pytest.raises(OperatorAuthError, match="session expired"):
        auth.check(session.token)
    with pytest.raises(OperatorAuthError, match="not logged in"):
        auth.check(session.token)
    second = auth.login("ops", "second password")
    assert auth.logout(second.token) and not auth.logout(second.token)
    third = auth.login("ops", "second password")
    assert auth.delete_operator("ops")
    with pytest.raises(OperatorAuthError, match="not logged in"):
        auth.check(third.token)
