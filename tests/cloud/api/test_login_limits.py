"""Log-in limits and session revocation over the REST API (issue 12, findings 3 and 6), against a real hub:
guessing is answered 429 with Retry-After and a clear message (lockout per account, token bucket per address),
audited, and does not stop a logged-in operator; a new password, disabling and logging out end sessions,
also across a hub restart, and an open alert stream closes when its session ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from crossview_testing.hub_api import HubApi, colour_hub_kwargs, login, start_hub_api

from cloud.login_limits import LoginLimiter, LoginLimits

OPS = ("ops", "ops password 1")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[HubApi]:
    """A hub whose log-in limiter's clock stands still (no token comes back while a test runs: deterministic)."""
    with start_hub_api(tmp_path, **colour_hub_kwargs(), alert_keep_alive_s=0.3) as running_api:
        assert running_api.running.operators is not None
        running_api.running.operators.limiter = LoginLimiter(LoginLimits(), clock=lambda: 1000.0)
        yield running_api


def _login(api: HubApi, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{api.url}/api/login", json={"username": username, "password": password}, timeout=60)


def _me(api: HubApi, token: str) -> int:
    return httpx.get(f"{api.url}/api/me", headers={"authorization": f"Bearer {token}"}, timeout=60).status_code


def _add_ops(api: HubApi, role: str = "operator") -> None:
    reply = api.client.post("/api/operators", json={"username": OPS[0], "password": OPS[1], "role": role})
    assert reply.status_code == 201, reply.text


def test_guessing_one_account_locks_it_with_a_clear_429(api: HubApi) -> None:
    for _ in range(5):
        reply = _login(api, api.username, "guess")
        assert (reply.status_code, reply.json()["detail"]) == (401, "wrong username or password")
    locked = _login(api, api.username, api.password)  # even the right password: the account is locked
    assert locked.status_code == 429
    assert locked.json()["detail"].startswith(f"too many log-in attempts for '{api.username}'; try again in ")
    assert locked.headers["retry-after"] == "900"
    assert api.client.get("/api/me").status_code == 200  # a session opened before is still served
    failed = api.client.get("/api/audit", params={"action": "login_failed"}).json()
    assert len(failed) == 5 and {(a["username"], a["client"], a["detail"]) for a in failed} == {
        (api.username, "127.0.0.1", "wrong password")}
    [lockout] = api.client.get("/api/audit", params={"action": "lockout"}).json()
    assert lockout["username"] == api.username and "locked for 900 s" in lockout["detail"]
    # an admin's password reset lifts the lockout
    _add_ops(api, "admin")
    ops_client, _ = login(api.url, *OPS)
    try:
        reset = ops_client.put(f"/api/operators/{api.username}/password", json={"password": "new one"})
        assert reset.status_code == 200
    finally:
        ops_client.close()
    assert _login(api, api.username, "new one").status_code == 200


def test_one_address_guessing_many_accounts_is_slowed(api: HubApi) -> None:
    statuses = [_login(api, f"user-{i}", "guess").status_code for i in range(21)]
    assert statuses == [401] * 20 + [429]  # a bucket of 20 log-ins a minute per address
    reply = _login(api, "someone", "guess")
    assert reply.status_code == 429 and reply.json()["detail"].startswith(
        "too many log-in attempts from 127.0.0.1; try again in ")
    assert reply.headers["retry-after"] == "3"  # one log-in comes back every 3 s


def test_a_logged_in_operator_is_served_while_someone_guesses(api: HubApi) -> None:
    assert api.running.operators is not None  # a smaller bucket: fewer hashes, a faster test, the same rule
    api.running.operators.limiter = LoginLimiter(LoginLimits(address_burst=6), clock=lambda: 1000.0)

    def guess(i: int) -> int:
        return _login(api, f"user-{i % 3}", f"guess {i}").status_code

    def browse(_: int) -> int:
        return api.client.get("/api/identities").status_code

    with ThreadPoolExecutor(16) as pool:
        guesses = [pool.submit(guess, i) for i in range(60)]
        reads = [pool.submit(browse, i) for i in range(40)]
        assert [f.result() for f in reads] == [200] * 40
        outcomes = [f.result() for f in guesses]
    assert set(outcomes) == {401, 429} and outcomes.count(401) == 6


def test_password_changes_disable_and_logout_end_sessions_also_after_a_restart(tmp_path: Path) -> None:
    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:
        _add_ops(api)
        first, second = _login(api, *OPS).json()["token"], _login(api, *OPS).json()["token"]
        changed = httpx.put(f"{api.url}/api/me/password", headers={"authorization": f"Bearer {first}"},
                            json={"old_password": OPS[1], "new_password": "ops password 2"}, timeout=60)
        assert changed.status_code == 200, changed.text
        assert (_me(api, first), _me(api, second)) == (401, 401)  # every session of the operator ended
        fresh = _login(api, "ops", "ops password 2").json()["token"]
        wrong_old = httpx.put(f"{api.url}/api/me/password", json={"old_password": "x", "new_password": "y"},
                              headers={"authorization": f"Bearer {fresh}"}, timeout=60)
        assert (wrong_old.status_code, wrong_old.json()["detail"]) == (401, "wrong password")
        kept = _login(api, "ops", "ops password 2").json()["token"]
        assert _me(api, kept) == 200
        before_reset = _login(api, "ops", "ops password 2").json()["token"]
        assert api.client.put("/api/operators/ops/password", json={"password": "ops password 3"}).status_code == 200
        assert _me(api, before_reset) == 401
        survivor = _login(api, "ops", "ops password 3").json()["token"]
        admin_token = api.token
    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:  # the same database, a new hub process state
        assert _me(api, survivor) == 200 and _me(api, admin_token) == 200  # sessions outlive a restart ...
        assert _me(api, before_reset) == 401  # ... a revoked one does not come back
        assert api.client.post("/api/operators/ops/disable").json()["disabled"] is True
        assert _me(api, survivor) == 401
        reply = _login(api, "ops", "ops password 3")
        assert (reply.status_code, reply.json()["detail"]) == (401, "operator 'ops' is disabled; ask an admin")
        assert api.client.post("/api/operators/ops/enable").json()["disabled"] is False
        assert _login(api, "ops", "ops password 3").status_code == 200


def _read_stream(api: HubApi, token: str, lines: list[str], done: threading.Event) -> None:
    try:
        with httpx.stream("GET", f"{api.url}/api/alerts/stream", headers={"authorization": f"Bearer {token}"},
                          timeout=httpx.Timeout(30.0, read=30.0)) as response:
            lines.append(f"status {response.status_code}")
            for line in response.iter_lines():
                lines.append(line)
    finally:
        done.set()


@pytest.mark.parametrize("revoke", ["logout", "store"])
def test_an_open_alert_stream_closes_when_its_session_ends(api: HubApi, revoke: str) -> None:
    token = _login(api, api.username, api.password).json()["token"]
    lines: list[str] = []
    done = threading.Event()
    reader = threading.Thread(target=_read_stream, args=(api, token, lines, done), daemon=True)
    reader.start()
    while ": connected" not in lines and not done.is_set():
        done.wait(0.05)
    assert lines[0] == "status 200"
    if revoke == "logout":  # this replica notices at once
        assert httpx.post(f"{api.url}/api/logout", headers={"authorization": f"Bearer {token}"}).status_code == 200
    else:  # as another replica's log-out looks from here: only the store knows; the keep-alive re-check finds it
        api.running.hub.store.delete_operator_sessions(api.username)
    assert done.wait(20), "the stream stayed open after its session ended"
    assert "event: session_ended" in lines and 'data: {"detail": "not logged in"}' in lines
