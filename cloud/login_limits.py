"""Log-in rate limits: a lockout per account after repeated failures, a token bucket per client address.

    >>> limiter = LoginLimiter(LoginLimits(max_failures=5, lockout_s=900))   # doctest: +SKIP
    >>> limiter.admit("alice", "10.0.0.7")      # LoginThrottled when locked or out of tokens
    >>> limiter.failed("alice")                 # True when this failure locked the account

Both are checked before the password is hashed, so a guessing client costs the hub a dictionary look-up,
not an scrypt. An account name that does not exist is tracked like one that does (no enumeration). The
state is this replica's memory: a restart forgets it, and each replica counts on its own (at most
`replicas × max_failures` guesses per lockout). Both tables are bounded (`max_tracked`, least recently
used forgotten first) so a flood of made-up names or addresses cannot grow them without limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from models.errors import CrossviewError, InvalidInputError


class LoginThrottled(CrossviewError):
    """A log-in refused before the password was looked at (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginLimits:
    """`max_failures` failed log-ins of one account within `failure_window_s` lock it for `lockout_s`;
    each client address may try `per_address_per_minute` log-ins a minute, `address_burst` at once."""

    max_failures: int = 5
    failure_window_s: float = 900.0
    lockout_s: float = 900.0
    per_address_per_minute: float = 20.0
    address_burst: int = 20
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.address_burst < 1 or self.max_tracked < 1:
            raise InvalidInputError(f"login limits: expected max_failures, address_burst, max_tracked >= 1, got {self}")
        if not (self.failure_window_s > 0 and self.lockout_s > 0 and self.per_address_per_minute > 0):
            raise InvalidInputError(f"login limits: expected positive windows and rate, got {self}")


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class LoginLimiter:
    """Thread-safe; `clock` is injectable for tests."""

    def __init__(self, limits: LoginLimits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or LoginLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: OrderedDict[str, float] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def admit(self, username: str, address: str) -> None:
        """Let one attempt through, or raise LoginThrottled (locked account, or the address out of tokens).
        An admitted attempt spends one of the address's tokens."""
        now = self._clock()
        with self._lock:
            until = self._locked_until.get(username)
            if until is not None:
                if now < until:
                    raise LoginThrottled(f"too many log-in attempts for {username!r}; try again in "
                                         f"{_seconds(until - now)} s", _seconds(until - now))
                del self._locked_until[username]
            rate = self.limits.per_address_per_minute / 60.0
            bucket = self._buckets.pop(address, None) or _Bucket(float(self.limits.address_burst), now)
            bucket.tokens = min(float(self.limits.address_burst), bucket.tokens + (now - bucket.at_s) * rate)
            bucket.at_s = now
            self._buckets[address] = bucket
            _bound(self._buckets, self.limits.max_tracked)
            if bucket.tokens < 1.0:
                wait = _seconds((1.0 - bucket.tokens) / rate)
                raise LoginThrottled(f"too many log-in attempts from {address or 'this address'}; try again in "
                                     f"{wait} s", wait)
            bucket.tokens -= 1.0

    def failed(self, username: str) -> bool:
        """Count a wrong password for `username`; True when this failure locked the account."""
        now = self._clock()
        limits = self.limits
        with self._lock:
            times = self._failures.pop(username, None) or deque(maxlen=limits.max_failures)
            times.append(now)
            while times and times[0] <= now - limits.failure_window_s:
                times.popleft()
            if len(times) >= limits.max_failures:
                self._locked_until[username] = now + limits.lockout_s
                _bound(self._locked_until, limits.max_tracked)
                return True
            self._failures[username] = times
            _bound(self._failures, limits.max_tracked)
            return False

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)

    def unlock(self, username: str) -> None:
        """Forget the account's failures and lockout (an admin reset its password)."""
        with self._lock:
            self._failures.pop(username, None)
            self._locked_until.pop(username, None)

    def locked_for(self, username: str) -> float:
        """Seconds the account stays locked (0: not locked)."""
        with self._lock:
            until = self._locked_until.get(username)
        return max(0.0, until - self._clock()) if until is not None else 0.0


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _bound(table: OrderedDict, size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)


__all__ = ["LoginLimiter", "LoginLimits", "LoginThrottled"]
