"""Edge tokens: issued once in clear, stored as a hash, checked at the start of every session.

A token reads ``cvt_<token id>_<secret>``: the id (public, 16 hex digits) finds the row, and the
SHA-256 of the secret (256 random bits, so no slow password hash is needed) is compared in constant
time. Tokens may expire and may be revoked one by one or all of an edge's at once. The check runs
when a session opens; a session already open outlives its token's expiry (the edge reconnects with
a fresh token when it next drops).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from cloud.store import HubStore, StoreError, TokenRecord
from models.errors import CrossviewError

_TOKEN = re.compile(r"cvt_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})")
_EDGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


class AuthError(CrossviewError):
    """Credentials that do not admit this edge; `code` says which gRPC status it maps to."""

    def __init__(self, message: str, code: Literal["unauthenticated", "permission_denied"] = "unauthenticated"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IssuedToken:
    """A new token. `token` is shown once: the hub keeps only its hash."""

    token: str
    token_id: str
    edge_id: str
    expires_s: float | None


def secret_hash(secret: str) -> str:
    """How the hub stores a bearer secret (edge tokens, operator sessions): its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None when absent."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class EdgeAuth:
    """Creates, revokes and checks edge tokens kept in `store`."""

    def __init__(self, store: HubStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def create_token(self, edge_id: str, *, ttl_s: float | None = None, site: str = "") -> IssuedToken:
        """Register the edge if it is new and issue it a token valid for `ttl_s` (None: no expiry)."""
        if not _EDGE_ID.fullmatch(edge_id):
            raise CrossviewError(f"edge id: expected 1-128 letters, digits or . _ - : @, got {edge_id!r}")
        if ttl_s is not None and ttl_s <= 0:
            raise CrossviewError(f"ttl_s: expected a positive number of seconds or None, got {ttl_s}")
        now = self._clock()
        self._store.register_edge(edge_id, site=site, now=now)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        expires = None if ttl_s is None else now + ttl_s
        self._store.add_token(TokenRecord(token_id, edge_id, secret_hash(secret), now, expires, revoked=False))
        return IssuedToken(f"cvt_{token_id}_{secret}", token_id, edge_id, expires)

    def revoke_token(self, token_id: str) -> bool:
        return self._store.revoke_token(token_id)

    def revoke_edge(self, edge_id: str) -> int:
        """Revoke every token of the edge; how many were still valid."""
        return self._store.revoke_edge_tokens(edge_id)

    def authenticate(self, token: str | None) -> str:
        """The edge id `token` belongs to, or AuthError (missing, malformed, wrong, revoked, expired)."""
        if not token:
            raise AuthError("no edge token: send metadata 'authorization: Bearer <token>'")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise AuthError("malformed edge token: expected 'cvt_<id>_<secret>'")
        record = self._store.get_token(match.group(1))
        if record is None or not hmac.compare_digest(record.secret_hash, secret_hash(match.group(2))):
            raise AuthError("unknown or wrong edge token")
        if record.revoked:
            raise AuthError(f"edge token {record.token_id} has been revoked")
        if record.expires_s is not None and self._clock() >= record.expires_s:
            raise AuthError(f"edge token {record.token_id} has expired")
        if self._store.get_edge(record.edge_id) is None:
            raise AuthError(f"edge {record.edge_id!r} is not registered")
        return record.edge_id

    def check_hello(self, token_edge_id: str, hello_edge_id: str) -> None:
        """Hello must name the edge the token was issued to."""
        if hello_edge_id == token_edge_id:
            return
        if not _EDGE_ID.fullmatch(hello_edge_id) or self._store.get_edge(hello_edge_id) is None:
            raise AuthError(f"unknown edge {hello_edge_id!r}")
        raise AuthError(f"this token belongs to edge {token_edge_id!r}, not {hello_edge_id!r}", "permission_denied")


__all__ = ["AuthError", "EdgeAuth", "IssuedToken", "StoreError", "bearer_token"]
