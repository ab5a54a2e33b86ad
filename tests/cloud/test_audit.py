"""The audit trail (cloud.audit, cloud.store.sql_audit), operator roles in the store, the schema step that adds
them, and the log-in limiter (cloud.login_limits) against brute-force references. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.audit import ACTIONS, AuditLog, check_filter
from cloud.login_limits import LoginLimiter, LoginLimits, LoginThrottled
from cloud.operators import OperatorAuth, OperatorAuthError, ScryptParams
from cloud.store import AuditFilter, AuditRecord, HubStore, StoreError
from cloud.store.sqlite import SqliteHubStore
from models.errors import InvalidInputError

FAST = ScryptParams(n=2)  # the tests are about the rules, not the hash's cost


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _lines(n: int, seed: int = 0) -> list[AuditRecord]:
    rng = random.Random(seed)
    users, actions, targets = ["ann", "bob", "cy"], sorted(ACTIONS)[:5], ["id-1", "id-2", "sighting 3", ""]
    return [AuditRecord(at_s=1000.0 + i * 10, username=rng.choice(users), role="operator", client="10.0.0.1",
                        action=rng.choice(actions), target=rng.choice(targets), detail=f"line {i}") for i in range(n)]


def test_filters_and_paging_match_a_brute_force_reference(store: HubStore) -> None:
    lines = _lines(60)
    ids = [store.append_audit(line) for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == 60
    kept = [AuditRecord(**{**vars(line), "audit_id": i}) for line, i in zip(lines, ids, strict=True)]
    rng = random.Random(1)
    for _ in range(25):
        where = AuditFilter(username=rng.choice([None, "ann", "bob"]), action=rng.choice([None, kept[0].action]),
                            target=rng.choice([None, "id-1", ""]) or None,
                            since_s=rng.choice([None, 1100.0]), until_s=rng.choice([None, 1400.0]))
        expected = [r for r in kept if (where.username is None or r.username == where.username)
                    and (where.action is None or r.action == where.action)
                    and (where.target is None or r.target == where.target)
                    and (where.since_s is None or r.at_s >= where.since_s)
                    and (where.until_s is None or r.at_s < where.until_s)]
        pages, before = [], None
        while True:  # newest first, 7 a page
            page = store.audit_entries(where, before_id=before, limit=7)
            pages += page
            if len(page) < 7:
                break
            before = page[-1].audit_id
        assert pages == expected[::-1]
        assert store.audit_entries(where, after_id=0, limit=1000) == expected  # oldest first


def test_the_audit_table_is_append_only(store: HubStore, backend: str) -> None:
    store.append_audit(AuditRecord(1.0, "ann", "admin", "10.0.0.1", "search", "job-1", "by photo"))
    try:
        with store._transaction() as tx:  # type: ignore[attr-defined]
            tx.execute("UPDATE audit_log SET username = 'mallory'")
    except Exception as exc:  # SQLite: the trigger aborts; PostgreSQL: the rule makes it a no-op
        assert backend == "sqlite" and "append-only" in str(exc)
    assert [e.username for e in store.audit_entries()] == ["ann"]
    with pytest.raises(StoreError, match="expected a user name and an action"):
        store.append_audit(AuditRecord(1.0, "", "admin", "", "search"))


def test_export_formats_and_spreadsheet_safety(store: HubStore) -> None:
    clock = Clock(1_800_000_000.0)
    audit = AuditLog(store, clock=clock)
    audit.record(username="ann", role="admin", client="10.0.0.1", action="rename", target="id-1",
                 detail="name '=HYPERLINK(\"http://x\")'\nforged line")
    clock.now += 1
    audit.record(username="bob", role="viewer", client="10.0.0.2", action="view_crop", target="-sighting 4")
    rows = list(csv.DictReader(io.StringIO("".join(audit.export(None, "csv")))))
    assert [r["username"] for r in rows] == ["ann", "bob"]  # oldest first
    assert rows[0]["time_utc"] == "2027-01-15T08:00:00Z" and rows[0]["client"] == "10.0.0.1"
    assert rows[0]["detail"] == "name '=HYPERLINK(\"http://x\")' forged line"  # one line: no forged second entry
    assert rows[1]["target"] == "'-sighting 4"  # a cell a spreadsheet would run is quoted
    lines = "".join(audit.export(check_filter(action="view_crop"), "jsonl")).splitlines()
    assert [json.loads(line)["target"] for line in lines] == ["-sighting 4"]  # JSON keeps the value as it is
    assert set(json.loads(lines[0])) == {"audit_id", "time_utc", "at_s", "username", "role", "client", "action",
                                         "target", "detail"}
    with pytest.raises(InvalidInputError, match="format: expected one of csv, jsonl"):
        list(audit.export(None, "xml"))
    with pytest.raises(InvalidInputError, match="audit action: expected one of"):
        audit.record(username="ann", role="admin", client="", action="dance")
    with pytest.raises(InvalidInputError, match="action: expected one of"):
        check_filter(action="dance")
    with pytest.raises(InvalidInputError, match="since_s < until_s"):
        check_filter(since_s=5.0, until_s=5.0)


def test_retention_sweeps_old_lines_once_an_hour(store: HubStore) -> None:
    clock = Clock()
    audit = AuditLog(store, clock=clock, retention_days=30)
    for age_days in (40, 31, 29, 1):
        store.append_audit(AuditRecord(clock.now - age_days * 86400.0, "ann", "admin", "", "login"))
    assert audit.sweep_if_due() == 2
    assert sorted(round((clock.now - e.at_s) / 86400) for e in audit.entries()) == [1, 29]
    store.append_audit(AuditRecord(clock.now - 50 * 86400.0, "ann", "admin", "", "login"))
    clock.now += 3599  # not an hour since the last sweep: nothing is done
    assert audit.sweep_if_due() == 0
    clock.now += 2 * 86400  # the 29-day line is now 31 days old too
    assert audit.sweep_if_due() == 2
    assert AuditLog(store, retention_days=None).sweep() == 0
    with pytest.raises(InvalidInputError, match="audit_retention_days: expected > 0"):
        AuditLog(store, retention_days=0)


def test_the_hubs_housekeeping_runs_the_sweep(make_hub: Callable[..., object]) -> None:
    hub = make_hub()
    clock = Clock()
    audit = AuditLog(hub.store, clock=clock, retention_days=1)  # type: ignore[attr-defined]
    store: HubStore = hub.store  # type: ignore[attr-defined]
    store.append_audit(AuditRecord(clock.now - 3 * 86400, "ann", "admin", "", "login"))
    hub.sessions.add_housekeeping(audit.sweep_if_due)  # type: ignore[attr-defined]
    hub.sessions.add_housekeeping(lambda: 1 / 0)  # a failing task is logged, the others still run
    hub.sessions.housekeep()  # type: ignore[attr-defined]
    assert audit.entries() == []


def test_roles_last_admin_and_revocation_in_the_store(store: HubStore) -> None:
    auth = OperatorAuth(store, scrypt=FAST, clock=Clock())
    assert auth.create_operator("root", "pw-root")  # the first operator of a hub is its admin
    assert auth.create_operator("ops", "pw-ops")
    assert store.get_operator("ops") == store.list_operators()[0] and store.list_operators()[0].role == "operator"
    with pytest.raises(StoreError, match="cannot demote 'root': it is the last enabled admin"):
        auth.set_role("root", "viewer")
    with pytest.raises(StoreError, match="cannot disable 'root': it is the last enabled admin"):
        auth.set_disabled("root", True)
    auth.set_role("ops", "admin")
    assert auth.set_disabled("root", True).disabled  # another admin is left
    with pytest.raises(StoreError, match="cannot demote 'ops'"):
        auth.set_role("ops", "operator")
    with pytest.raises(StoreError, match="unknown operator 'nobody'"):
        auth.set_role("nobody", "admin")
    with pytest.raises(InvalidInputError, match="role: expected one of viewer, operator, admin"):
        auth.set_role("ops", "root")
    session = auth.login("ops", "pw-ops")
    assert auth.check(session.token).role == "admin"
    assert not auth.create_operator("ops", "pw-ops")  # the same password again keeps the sessions
    assert auth.check(session.token).username == "ops"
    auth.reset_password("ops", "pw-new")
    with pytest.raises(OperatorAuthError, match="not logged in"):
        auth.check(session.token)
    with pytest.raises(OperatorAuthError, match="'root' is disabled"):
        auth.login("root", "pw-root")
    with pytest.raises(StoreError, match="already exists"):
        auth.add_operator("ops", "x", "viewer")


def test_schema_step_5_makes_the_oldest_operator_admin(tmp_path: Path) -> None:
    from cloud.store import schema

    statements = [schema.SCHEMA_VERSION_DDL]
    for steps in schema.MIGRATIONS[:4]:
        statements += [schema.SQLITE.render(ddl) for ddl in steps if isinstance(ddl, str)]
    statements += ["INSERT INTO operators VALUES ('zed', 'h', 100.0)",
                   "INSERT INTO operators VALUES ('amy', 'h', 200.0)",
                   "INSERT INTO schema_version (component, version) VALUES ('hub', 4)"]
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        for sql in statements:
            conn.execute(sql)
    with SqliteHubStore(tmp_path / "hub.db") as store:
        assert [(o.username, o.role, o.disabled) for o in store.list_operators()] == [
            ("amy", "operator", False), ("zed", "admin", False)]
        assert store.audit_entries() == []


# ---------------------------------------------------------------------------------------------- log-in limiter
def _reference(events: list[tuple[str, float, str, str]], limits: LoginLimits) -> list[str]:
    """Replays ("try", t, user, address) / ("fail", t, user, "") from the whole history each time."""
    out: list[str] = []
    locks: dict[str, float] = {}
    fails: dict[str, list[float]] = {}
    spent: dict[str, list[float]] = {}
    rate = limits.per_address_per_minute / 60.0
    for kind, t, user, address in events:
        if kind == "fail":
            recent = [x for x in fails.get(user, []) if x > t - limits.failure_window_s] + [t]
            if len(recent) >= limits.max_failures:
                locks[user], fails[user] = t + limits.lockout_s, []
                out.append("locked")
            else:
                fails[user] = recent
                out.append("counted")
            continue
        if locks.get(user, -1.0) > t:
            out.append("account")
            continue
        tokens, last = float(limits.address_burst), None
        for s in spent.get(address, []):  # refill between spends, capped at the burst
            tokens = tokens if last is None else min(limits.address_burst, tokens + (s - last) * rate)
            tokens, last = tokens - 1.0, s
        if last is not None:
            tokens = min(limits.address_burst, tokens + (t - last) * rate)
        if tokens < 1.0:
            out.append("address")
            continue
        spent.setdefault(address, []).append(t)
        out.append("ok")
    return out


def test_limiter_matches_a_brute_force_reference() -> None:
    # 7.5 a minute = 1/8 a second and steps of 1/2..32 s: every token count is exact in binary floating point
    limits = LoginLimits(max_failures=3, failure_window_s=60.0, lockout_s=120.0, per_address_per_minute=7.5,
                         address_burst=4)
    for seed in range(20):
        rng = random.Random(seed)
        clock = Clock(0.0)
        limiter = LoginLimiter(limits, clock=clock)
        events, got = [], []
        for _ in range(150):
            clock.now += rng.choice([0.5, 2.0, 8.0, 32.0])
            user, address = rng.choice(["ann", "bob"]), rng.choice(["10.0.0.1", "10.0.0.2"])
            events.append(("try", clock.now, user, address))
            try:
                limiter.admit(user, address)
                got.append("ok")
            except LoginThrottled as exc:
                got.append("account" if "for '" in str(exc) else "address")
                assert exc.retry_after_s >= 1
            if got[-1] == "ok" and rng.random() < 0.6:
                events.append(("fail", clock.now, user, ""))
                got.append("locked" if limiter.failed(user) else "counted")
            elif got[-1] == "ok":
                limiter.succeeded(user)
                events.append(("fail_reset", clock.now, user, ""))
                got.append("reset")
        assert got == _reference_with_resets(events, limits), seed


def _reference_with_resets(events: list[tuple[str, float, str, str]], limits: LoginLimits) -> list[str]:
    """`_reference`, where a success ("fail_reset") forgets the account's failures."""
    out: list[str] = []
    history: list[tuple[str, float, str, str]] = []
    for event in events:
        if event[0] == "fail_reset":
            history = [e for e in history if not (e[0] == "fail" and e[2] == event[2])]
            out.append("reset")
            continue
        history.append(event)
        out.append(_reference(history, limits)[-1])
    return out


def test_limiter_messages_unlock_and_bounds() -> None:
    clock = Clock(0.0)
    limiter = LoginLimiter(LoginLimits(max_failures=2, lockout_s=900, max_tracked=3), clock=clock)
    limiter.admit("ann", "a")
    assert not limiter.failed("ann") and limiter.failed("ann")
    with pytest.raises(LoginThrottled, match=r"too many log-in attempts for 'ann'; try again in 900 s"):
        limiter.admit("ann", "a")
    clock.now += 899.5
    with pytest.raises(LoginThrottled, match=r"try again in 1 s"):
        limiter.admit("ann", "a")
    limiter.unlock("ann")
    limiter.admit("ann", "a")
    for i in range(10):  # made-up names and addresses do not grow the tables past max_tracked
        limiter.admit(f"user-{i}", f"10.0.0.{i}")
        limiter.failed(f"user-{i}")
    assert len(limiter._buckets) <= 3 and len(limiter._failures) <= 3
    with pytest.raises(InvalidInputError, match="login limits"):
        LoginLimits(max_failures=0)


def test_hub_config_retention_and_the_start_up_admin(make_hub: Callable[..., object]) -> None:
    from crossview.hub_command import HubConfig, _operators

    with pytest.raises(ValueError, match="audit_retention_days: expected > 0"):
        HubConfig(audit_retention_days=0)
    hub = make_hub()
    store: HubStore = hub.store  # type: ignore[attr-defined]
    store.save_operator("old-admin", "h", now=1.0, role="admin")
    store.save_operator("boss", "h", now=2.0)
    with store._transaction() as tx:  # type: ignore[attr-defined]  # e.g. an old database left no enabled admin
        tx.execute("UPDATE operators SET disabled = 1")
    store.append_audit(AuditRecord(1.0, "ann", "admin", "", "login"))  # far older than 7 days
    auth = _operators(hub, HubConfig(admin_user="boss", admin_password="pw", audit_retention_days=7),  # type: ignore[arg-type]
                      io.StringIO())
    boss = store.get_operator("boss")
    assert boss is not None and (boss.role, boss.disabled) == ("admin", False)  # a hub always has an enabled admin
    assert auth.audit.retention_days == 7
    hub.sessions.housekeep()  # type: ignore[attr-defined]  # the start-up registered the audit sweep
    assert store.audit_entries() == []
