"""Operator roles over the REST API (issue 12): the role x route table, the admins' operator routes, and the
audit trail each sensitive action writes (read back through /api/audit and its export)."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import types
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from crossview_testing.hub_api import HubApi, colour_hub_kwargs, colour_jpeg, login, start_hub_api

ROLES = ("viewer", "operator", "admin")
PASSWORD = "role test password"
_counter = itertools.count()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubApi, dict[str, httpx.Client]]]:
    """One hub for the whole table (admin = the hub's first operator), and a logged-in client per role."""
    with start_hub_api(tmp_path_factory.mktemp("roles"), **colour_hub_kwargs()) as api:
        clients = {"admin": api.client}
        for role in ("viewer", "operator"):
            reply = api.client.post("/api/operators", json={"username": role, "password": PASSWORD, "role": role})
            assert reply.status_code == 201, reply.text
            clients[role] = login(api.url, role, PASSWORD)[0]
        yield api, clients
        for role in ("viewer", "operator"):
            clients[role].close()


def _identity(api: HubApi) -> str:
    reply = api.client.post("/api/identities", files=[("photos", ("p.jpg", colour_jpeg("red"), "image/jpeg"))],
                            data={"display_name": f"person {next(_counter)}"})
    assert reply.status_code == 201, reply.text
    return reply.json()["identity_id"]


def _victim(api: HubApi) -> str:
    name = f"victim-{next(_counter)}"
    assert api.client.post("/api/operators", json={"username": name, "password": "x"}).status_code == 201
    return name


# method, path ({id}: a fresh identity, {op}: a fresh operator), request keywords, status for viewer/operator/admin
TABLE: list[tuple[str, str, dict[str, Any], tuple[int, int, int]]] = [
    ("GET", "/api/me", {}, (200, 200, 200)),
    ("GET", "/api/identities", {}, (200, 200, 200)),
    ("GET", "/api/identities/{id}", {}, (200, 200, 200)),
    ("GET", "/api/identities/{id}/crops/0", {}, (200, 200, 200)),
    ("GET", "/api/identities/{id}/sightings", {}, (200, 200, 200)),
    ("GET", "/api/sightings", {}, (200, 200, 200)),
    ("GET", "/api/watchlist", {}, (200, 200, 200)),
    ("GET", "/api/alerts", {}, (200, 200, 200)),
    ("GET", "/api/edges", {}, (200, 200, 200)),
    ("POST", "/api/search", {"data": {"identity_id": "{id}", "deadline_s": "1"}}, (200, 200, 200)),
    ("POST", "/api/identities", {"files": "photo"}, (403, 201, 201)),
    ("POST", "/api/identities/from-sighting", {"json": {"sighting_id": 999999}}, (403, 404, 404)),
    ("PATCH", "/api/identities/{id}", {"json": {"display_name": "renamed"}}, (403, 200, 200)),
    ("PUT", "/api/watchlist/{id}", {"json": {"threshold": 0.5}}, (403, 200, 200)),
    ("DELETE", "/api/watchlist/{id}", {}, (403, 200, 200)),
    ("DELETE", "/api/identities/{id}", {}, (403, 204, 204)),
    ("GET", "/api/operators", {}, (403, 403, 200)),
    ("POST", "/api/operators", {"json": {"username": "{new}", "password": "x", "role": "viewer"}}, (403, 403, 201)),
    ("PUT", "/api/operators/{op}/role", {"json": {"role": "viewer"}}, (403, 403, 200)),
    ("POST", "/api/operators/{op}/disable", {}, (403, 403, 200)),
    ("POST", "/api/operators/{op}/enable", {}, (403, 403, 200)),
    ("PUT", "/api/operators/{op}/password", {"json": {"password": "y"}}, (403, 403, 200)),
    ("GET", "/api/audit", {}, (403, 403, 200)),
    ("GET", "/api/audit/export", {"params": {"format": "jsonl"}}, (403, 403, 200)),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "kwargs", "expected"), TABLE, ids=[f"{m} {p}" for m, p, _, _ in TABLE])
def test_role_matrix(hub: tuple[HubApi, dict[str, httpx.Client]], role: str, method: str, path: str,
                     kwargs: dict[str, Any], expected: tuple[int, int, int]) -> None:
    api, clients = hub
    names = {"new": f"new-{next(_counter)}"}
    if "{id}" in path or "{id}" in json.dumps(kwargs):
        names["id"] = _identity(api)
    if "{op}" in path:
        names["op"] = _victim(api)
    request = _fill(kwargs, names)
    if request.get("files") == "photo":
        request["files"] = [("photos", ("p.jpg", colour_jpeg("blue"), "image/jpeg"))]
    reply = clients[role].request(method, _fill(path, names), **request)
    status = expected[ROLES.index(role)]
    assert reply.status_code == status, reply.text
    if status == 403:
        needed = "admin" if expected[1] == 403 else "operator"
        article = "an" if role == "operator" else "a"
        assert reply.json() == {"detail": f"forbidden: {role!r} is {article} {role}; this needs the {needed} role"}


def test_admins_manage_operators_with_clear_errors(hub: tuple[HubApi, dict[str, httpx.Client]]) -> None:
    api, clients = hub
    listing = {o["username"]: (o["role"], o["disabled"]) for o in api.client.get("/api/operators").json()}
    assert listing[api.username] == ("admin", False) and listing["viewer"] == ("viewer", False)
    assert clients["operator"].get("/api/me").json()["role"] == "operator"
    taken = api.client.post("/api/operators", json={"username": "viewer", "password": "x"})
    assert (taken.status_code, taken.json()["detail"]) == (409, "operator 'viewer' already exists")
    for change in (("put", f"/api/operators/{api.username}/role", {"json": {"role": "operator"}}),
                   ("post", f"/api/operators/{api.username}/disable", {})):
        reply = getattr(api.client, change[0])(change[1], **change[2])
        verb = "demote" if "role" in change[1] else "disable"
        assert (reply.status_code, reply.json()["detail"]) == (
            409, f"cannot {verb} '{api.username}': it is the last enabled admin")
    unknown = api.client.post("/api/operators/nobody/disable")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "unknown operator 'nobody'")
    bad_role = api.client.put("/api/operators/viewer/role", json={"role": "root"})
    assert bad_role.status_code == 422 and bad_role.json()["detail"].startswith("role:")
    bad_name = api.client.post("/api/operators/bad%20name/disable")
    assert bad_name.status_code == 422


def _ops(api: HubApi) -> httpx.Client:
    assert api.client.post("/api/operators", json={"username": "ops", "password": PASSWORD}).status_code == 201
    return login(api.url, "ops", PASSWORD)[0]


def test_each_sensitive_action_writes_an_audit_line(api: HubApi, kit: types.SimpleNamespace,
                                                    edge_runner: Callable) -> None:
    ops = _ops(api)
    try:
        photo = [("photos", ("p.jpg", kit.jpeg("red"), "image/jpeg"))]
        red = ops.post("/api/identities", files=photo, data={"display_name": "Red"}).json()["identity_id"]
        asyncio.run(edge_runner(kit, api.running, [kit.short_list("k1", "green", [])]))
        [sighting] = [s["sighting_id"] for s in ops.get("/api/sightings").json()]
        promoted = ops.post("/api/identities/from-sighting", json={"sighting_id": sighting}).json()["identity_id"]
        for method, path, kwargs in [
            ("GET", f"/api/identities/{red}", {}), ("GET", f"/api/identities/{red}/crops/0", {}),
            ("GET", f"/api/identities/{red}/sightings", {}), ("PATCH", f"/api/identities/{red}",
                                                             {"json": {"display_name": "Red coat"}}),
            ("PUT", f"/api/watchlist/{red}", {"json": {"threshold": 0.4}}), ("DELETE", f"/api/watchlist/{red}", {}),
            ("GET", f"/api/sightings/{sighting}", {}), ("GET", f"/api/sightings/{sighting}/crop", {}),
            ("POST", "/api/search", {"data": {"identity_id": red, "deadline_s": "1"}}),
            ("DELETE", f"/api/identities/{red}", {}),
        ]:
            assert ops.request(method, path, **kwargs).status_code < 300, (method, path)
    finally:
        ops.close()
    lines = api.client.get("/api/audit", params={"username": "ops", "limit": 1000}).json()
    assert {(a["role"], a["client"]) for a in lines} == {("operator", "127.0.0.1")}
    seen = [(a["action"], a["target"]) for a in reversed(lines)]  # oldest first
    search_job = next(t for a, t in seen if a == "search")
    assert seen == [
        ("login", ""), ("enrol", red), ("view_sighting", ""), ("enrol", promoted), ("view_identity", red),
        ("view_crop", f"{red}/0"), ("view_identity", red), ("rename", red), ("watch", red), ("unwatch", red),
        ("view_sighting", str(sighting)), ("view_crop", f"sighting {sighting}"), ("search", search_job),
        ("delete", red)]
    details = {a["action"]: a["detail"] for a in lines}
    assert details["rename"] == "name 'Red coat'" and details["search"].startswith(f"by identity {red}; ")
    assert details["enrol"] == "1 photo(s)"  # the newest enrol line: the photo one is older


def test_audit_api_filters_pages_and_exports(api: HubApi) -> None:
    _ops(api).close()
    for _ in range(3):
        assert api.client.get("/api/identities/nobody").status_code == 404  # a failed view writes no line
    for _ in range(4):
        httpx.post(f"{api.url}/api/login", json={"username": "ops", "password": "wrong"})
    failed = api.client.get("/api/audit", params={"action": "login_failed", "limit": 3}).json()
    rest = api.client.get("/api/audit", params={"action": "login_failed", "before_id": failed[-1]["audit_id"]}).json()
    assert len(failed) == 3 and len(rest) == 1 and failed[0]["audit_id"] > failed[-1]["audit_id"] > rest[0]["audit_id"]
    assert api.client.get("/api/audit", params={"action": "view_identity"}).json() == []
    newest = failed[0]["at_s"]
    assert api.client.get("/api/audit", params={"since_s": newest + 1e6}).json() == []
    bad = api.client.get("/api/audit", params={"action": "dance"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("action: expected one of")
    exported = api.client.get("/api/audit/export", params={"format": "csv", "username": "ops"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["action"] for r in rows] == ["login"] + ["login_failed"] * 4
    jsonl = api.client.get("/api/audit/export", params={"format": "jsonl", "action": "login_failed"})
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line)["audit_id"] for line in jsonl.text.splitlines()] == [
        r["audit_id"] for r in reversed(failed + rest)]
    exports = api.client.get("/api/audit", params={"action": "audit_exported"}).json()
    assert [e["target"] for e in exports] == ["jsonl", "csv"] and exports[1]["detail"] == "username=ops"
    assert api.client.get("/api/audit/export", params={"format": "xml"}).status_code == 422


def test_the_admin_page_is_served(api: HubApi) -> None:
    page = api.client.get("/")
    assert page.status_code == 200 and 'data-testid="nav-admin"' in page.text
    assert "export async function renderAdmin" in api.client.get("/static/pages/admin.js").text
    calls = api.client.get("/static/api.js").text
    assert "/api/operators" in calls and "/api/audit/export" in calls  # the page's calls (Chromium: tests/browser)
