"""Operators of the REST API: passwords and log-in sessions, kept in the hub store as hashes only.

    >>> auth = OperatorAuth(store)                                   # doctest: +SKIP
    >>> auth.create_operator("admin", "a long secret")              # doctest: +SKIP
    >>> session = auth.login("admin", "a long secret")              # doctest: +SKIP
    >>> auth.check(session.token).username                          # doctest: +SKIP
    'admin'

A password is stored as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` (hashlib.scrypt, 16 random
bytes of salt). A session token (``cvs_<256 random bits>``) is shown once to the client; the store
keeps its SHA-256, so a leaked database opens no session. Sessions last `session_ttl_s` (12 h).

Roles (issue 12): a viewer reads (search, sightings, identities, crops); an operator also enrols,
watches, renames and deletes; an admin also manages operators and reads the audit trail. A new
operator is an admin when no enabled admin exists yet (the hub's first), else an operator. A new
password, a disabled account or a deleted one ends the operator's sessions in the store (so on every
replica and across restarts). Log-ins pass `cloud.login_limits` first; the password hash runs on a
small pool of its own (`login_async`), so guessing never occupies the threads other requests use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cloud.audit import AuditLog
from cloud.auth import secret_hash
from cloud.login_limits import LoginLimiter, LoginLimits, LoginThrottled
from cloud.store import HubStore, OperatorRecord, OperatorSessionRecord, StoreError
from models.errors import CrossviewError, InvalidInputError

DEFAULT_SESSION_TTL_S = 12 * 3600.0
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MAX_PASSWORD = 1024
ROLES = ("viewer", "operator", "admin")  # each may do what the ones before it may
HASH_WORKERS = 2  # concurrent password hashes per replica
MAX_PENDING_HASHES = 16  # log-ins waiting for a hash beyond this are refused (429)


class OperatorAuthError(CrossviewError):
    """A log-in or session that does not admit the caller (HTTP 401)."""


class ForbiddenError(CrossviewError):
    """A logged-in operator whose role does not allow the action (HTTP 403)."""


@dataclass(frozen=True)
class OperatorSession:
    """A logged-in operator. `token` is the secret the client sends back (empty when not known here)."""

    username: str
    expires_s: float
    token: str = ""
    role: str = "operator"

    def may(self, role: str) -> bool:
        """Whether this session's role includes `role`'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class ScryptParams:
    n: int = 1 << 14
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise InvalidInputError(f"scrypt: expected n a power of two > 1, r >= 1, p >= 1, got {self}")


def hash_password(password: str, params: ScryptParams = ScryptParams()) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, params.n, params.r, params.p)
    return f"scrypt${params.n}${params.r}${params.p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise InvalidInputError(f"operator name: expected 1-64 letters, digits or . _ @ -, got {username!r}")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or not 1 <= len(password) <= _MAX_PASSWORD:
        raise InvalidInputError(f"password: expected 1-{_MAX_PASSWORD} characters")
    return password


class OperatorAuth:
    """Creates and manages operators, logs them in and checks their session tokens (thread-safe: the store is).

    `limits`: the log-in rate limits (`limiter_clock` drives them in tests); `audit`: where log-ins,
    failures and lockouts are written (a new `AuditLog` on `store` when not given).
    """

    def __init__(self, store: HubStore, *, clock: Callable[[], float] = time.time,
                 session_ttl_s: float = DEFAULT_SESSION_TTL_S, scrypt: ScryptParams = ScryptParams(),
                 limits: LoginLimits | None = None, audit: AuditLog | None = None,
                 limiter_clock: Callable[[], float] = time.monotonic) -> None:
        if session_ttl_s <= 0:
            raise InvalidInputError(f"session_ttl_s: expected > 0, got {session_ttl_s}")
        self._store = store
        self._clock = clock
        self.session_ttl_s = session_ttl_s
        self._scrypt = scrypt
        self._dummy_hash = hash_password(secrets.token_hex(8), scrypt)  # same work for unknown users
        self.limiter = LoginLimiter(limits, clock=limiter_clock)
        self.audit = audit if audit is not None else AuditLog(store, clock=clock)
        self.revocations = 0  # bumped by every revocation on this replica: open alert streams re-check then
        self._pool: ThreadPoolExecutor | None = None
        self._pending = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ accounts
    def create_operator(self, username: str, password: str, *, role: str | None = None) -> bool:
        """Create the operator, or set a new password (and `role`, when given) for an existing one; True when
        created. A new operator without a role is an admin when no enabled admin exists, else an operator. The
        same password again changes nothing (sessions are kept); a new one ends the operator's sessions."""
        check_username(username)
        check_password(password)
        if role is not None:
            check_role(role)
        existing = self._store.get_operator(username)
        if existing is not None and verify_password(password, existing.password_hash):
            password_hash = existing.password_hash
        else:
            password_hash = hash_password(password, self._scrypt)
        if existing is None and role is None:
            role = "operator" if any(o.role == "admin" and not o.disabled for o in self._store.list_operators()) \
                else "admin"
        created = self._store.save_operator(username, password_hash, now=self._clock(), role=role)
        if existing is not None and password_hash != existing.password_hash:
            self._revoked()
            self.limiter.unlock(username)
        return created

    def add_operator(self, username: str, password: str, role: str = "operator") -> OperatorRecord:
        """A new operator; StoreError when the name is taken."""
        if self._store.get_operator(check_username(username)) is not None:
            raise StoreError(f"operator {username!r} already exists")
        self.create_operator(username, password, role=check_role(role))
        return self._get(username)

    def reset_password(self, username: str, password: str) -> OperatorRecord:
        """A new password for an existing operator: its sessions end and its lockout is lifted."""
        record = self._get(username)
        check_password(password)
        self._store.save_operator(username, hash_password(password, self._scrypt), now=record.created_s)
        self._revoked()
        self.limiter.unlock(username)
        return self._get(username)

    def change_password(self, username: str, old_password: str, new_password: str) -> None:
        """The operator's own change: the old password must be right (OperatorAuthError); every session ends."""
        record = self._get(username)
        if not verify_password(old_password or "", record.password_hash):
            raise OperatorAuthError("wrong password")
        self.reset_password(username, new_password)

    def set_role(self, username: str, role: str) -> OperatorRecord:
        """StoreError for an unknown operator or the last enabled admin."""
        return self._store.set_operator_role(check_username(username), check_role(role))

    def set_disabled(self, username: str, disabled: bool) -> OperatorRecord:
        """Disabling ends the operator's sessions; StoreError for the last enabled admin."""
        record = self._store.set_operator_disabled(check_username(username), disabled)
        if disabled:
            self._revoked()
        return record

    def delete_operator(self, username: str) -> bool:
        deleted = self._store.delete_operator(username)
        self._revoked()
        return deleted

    def list_operators(self) -> list[OperatorRecord]:
        return self._store.list_operators()

    def _get(self, username: str) -> OperatorRecord:
        record = self._store.get_operator(check_username(username))
        if record is None:
            raise StoreError(f"unknown operator {username!r}")
        return record

    def _revoked(self) -> None:
        with self._lock:
            self.revocations += 1

    # ------------------------------------------------------------------ log-in
    def login(self, username: str, password: str, address: str = "") -> OperatorSession:
        """A new session; LoginThrottled (locked account, address over its rate) before any hashing, else
        OperatorAuthError "wrong username or password". Hashes on the caller's thread (see `login_async`)."""
        self.limiter.admit(username or "", address)
        return self._verify(username, password, address)

    async def login_async(self, username: str, password: str, address: str = "") -> OperatorSession:
        """`login` for the event loop: the limits are checked here, the hash runs on this object's own pool of
        HASH_WORKERS threads; more than MAX_PENDING_HASHES waiting log-ins are refused (LoginThrottled)."""
        self.limiter.admit(username or "", address)
        with self._lock:
            if self._pending >= MAX_PENDING_HASHES:
                raise LoginThrottled("too many log-ins being checked right now; try again in 1 s", 1)
            self._pending += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="crossview-login")
            pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._verify, username, password, address)
        finally:
            with self._lock:
                self._pending -= 1

    def _verify(self, username: str, password: str, address: str) -> OperatorSession:
        record = self._store.get_operator(username) if _USERNAME.fullmatch(username or "") else None
        ok = verify_password(password or "", record.password_hash if record else self._dummy_hash)
        role = record.role if record else "-"
        if record is None or not ok:
            self.audit.record(username=username or "-", role=role, client=address, action="login_failed",
                              detail="unknown operator" if record is None else "wrong password")
            if self.limiter.failed(username or ""):
                limits = self.limiter.limits
                self.audit.record(username=username or "-", role=role, client=address, action="lockout",
                                  detail=f"{limits.max_failures} failed log-ins within {limits.failure_window_s:g} s; "
                                         f"locked for {limits.lockout_s:g} s")
            raise OperatorAuthError("wrong username or password")
        if record.disabled:
            self.audit.record(username=username, role=role, client=address, action="login_failed",
                              detail="account disabled")
            raise OperatorAuthError(f"operator {username!r} is disabled; ask an admin")
        self.limiter.succeeded(username)
        now = self._clock()
        self._store.delete_expired_operator_sessions(now)
        token = f"cvs_{secrets.token_urlsafe(32)}"
        expires = now + self.session_ttl_s
        self._store.add_operator_session(OperatorSessionRecord(secret_hash(token), record.username, now, expires))
        self.audit.record(username=username, role=role, client=address, action="login")
        return OperatorSession(record.username, expires, token, record.role)

    def check(self, token: str | None) -> OperatorSession:
        """The session of `token`; OperatorAuthError "not logged in" (missing or unknown token, or a disabled or
        deleted operator) or "session expired; log in again"."""
        if not token:
            raise OperatorAuthError("not logged in")
        record = self._store.get_operator_session(secret_hash(token))
        if record is None:
            raise OperatorAuthError("not logged in")
        if self._clock() >= record.expires_s:
            self._store.delete_operator_session(record.token_hash)
            raise OperatorAuthError("session expired; log in again")
        operator = self._store.get_operator(record.username)
        if operator is None or operator.disabled:
            self._store.delete_operator_session(record.token_hash)
            raise OperatorAuthError("not logged in")
        return OperatorSession(record.username, record.expires_s, token, operator.role)

    def logout(self, token: str | None) -> bool:
        """End the session; False when there was none."""
        ended = bool(token) and self._store.delete_operator_session(secret_hash(str(token)))
        if ended:
            self._revoked()
        return ended

    def close(self) -> None:
        """Stop the hashing pool (a later log-in starts a new one)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


__all__ = ["DEFAULT_SESSION_TTL_S", "ROLES", "ForbiddenError", "LoginLimits", "LoginThrottled", "OperatorAuth",
           "OperatorAuthError", "OperatorSession", "ScryptParams", "check_password", "check_role", "check_username",
           "hash_password", "verify_password"]
