"""Operators of the REST API: passwords and log-in sessions, kept in the hub store as hashes only.

    >>> auth = OperatorAuth(store)                                   # doctest: +SKIP
    >>> auth.create_operator("admin", "a long secret")              # doctest: +SKIP
    >>> session = auth.login("admin", "a long secret")              # doctest: +SKIP
    >>> auth.check(session.token).username                          # doctest: +SKIP
    'admin'

A password is stored as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` (hashlib.scrypt, 16 random
bytes of salt). A session token (``cvs_<256 random bits>``) is shown once to the client; the store
keeps its SHA-256, so a leaked database opens no session. Sessions last `session_ttl_s` (12 h).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud.auth import secret_hash
from cloud.store import HubStore, OperatorSessionRecord
from models.errors import CrossviewError, InvalidInputError

DEFAULT_SESSION_TTL_S = 12 * 3600.0
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MAX_PASSWORD = 1024


class OperatorAuthError(CrossviewError):
    """A log-in or session that does not admit the caller (HTTP 401)."""


@dataclass(frozen=True)
class OperatorSession:
    """A logged-in operator. `token` is the secret the client sends back (empty when not known here)."""

    username: str
    expires_s: float
    token: str = ""


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


def check_password(password: str) -> str:
    if not isinstance(password, str) or not 1 <= len(password) <= _MAX_PASSWORD:
        raise InvalidInputError(f"password: expected 1-{_MAX_PASSWORD} characters")
    return password


class OperatorAuth:
    """Creates operators, logs them in and checks their session tokens (thread-safe: the store is)."""

    def __init__(self, store: HubStore, *, clock: Callable[[], float] = time.time,
                 session_ttl_s: float = DEFAULT_SESSION_TTL_S, scrypt: ScryptParams = ScryptParams()) -> None:
        if session_ttl_s <= 0:
            raise InvalidInputError(f"session_ttl_s: expected > 0, got {session_ttl_s}")
        self._store = store
        self._clock = clock
        self.session_ttl_s = session_ttl_s
        self._scrypt = scrypt
        self._dummy_hash = hash_password(secrets.token_hex(8), scrypt)  # same work for unknown users

    def create_operator(self, username: str, password: str) -> bool:
        """Create the operator, or set a new password for an existing one; True when created."""
        check_username(username)
        check_password(password)
        return self._store.save_operator(username, hash_password(password, self._scrypt), now=self._clock())

    def delete_operator(self, username: str) -> bool:
        return self._store.delete_operator(username)

    def login(self, username: str, password: str) -> OperatorSession:
        """A new session for the operator, or OperatorAuthError "wrong username or password"."""
        record = self._store.get_operator(username) if _USERNAME.fullmatch(username or "") else None
        ok = verify_password(password or "", record.password_hash if record else self._dummy_hash)
        if record is None or not ok:
            raise OperatorAuthError("wrong username or password")
        now = self._clock()
        self._store.delete_expired_operator_sessions(now)
        token = f"cvs_{secrets.token_urlsafe(32)}"
        expires = now + self.session_ttl_s
        self._store.add_operator_session(OperatorSessionRecord(secret_hash(token), record.username, now, expires))
        return OperatorSession(record.username, expires, token)

    def check(self, token: str | None) -> OperatorSession:
        """The session of `token`; OperatorAuthError "not logged in" (missing or unknown token) or
        "session expired; log in again"."""
        if not token:
            raise OperatorAuthError("not logged in")
        record = self._store.get_operator_session(secret_hash(token))
        if record is None:
            raise OperatorAuthError("not logged in")
        if self._clock() >= record.expires_s:
            self._store.delete_operator_session(record.token_hash)
            raise OperatorAuthError("session expired; log in again")
        return OperatorSession(record.username, record.expires_s, token)

    def logout(self, token: str | None) -> bool:
        """End the session; False when there was none."""
        return bool(token) and self._store.delete_operator_session(secret_hash(str(token)))


__all__ = ["DEFAULT_SESSION_TTL_S", "OperatorAuth", "OperatorAuthError", "OperatorSession", "ScryptParams",
           "check_password", "check_username", "hash_password", "verify_password"]
