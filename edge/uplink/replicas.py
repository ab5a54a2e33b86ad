"""Several hub replicas for one edge: which address to dial next, and when the edge has moved.

An edge may be given several hub addresses (``host1:7443,host2:7443``): replicas sharing one
PostgreSQL database (cloud/store/postgres.py), so any of them can resume the edge's session — the
gallery version and the last hub sequence travel in Hello, the outbox is the edge's own, and the hub
deduplicates short lists by (edge, idempotency key) in the shared store. The link stays on an address
while its sessions last and moves to the next one, in order and round the list, when a session ends or
cannot be opened; the reconnect backoff applies between tries as before.

One gRPC target with a resolver scheme (``dns:///hub.example:7443``, ``ipv4:10.0.0.1:7443,10.0.0.2:7443``)
is kept whole: gRPC resolves it to every address and its ``pick_first`` policy, on the fresh channel each
attempt gets, connects to the first that answers, so a dead replica behind one DNS name is skipped too.
Which replica answered is known from Welcome's ``hub_id``; a session with another replica than the last
one is a move, logged as ``moved to hub replica ID at ADDRESS`` and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.errors import InvalidInputError

GRPC_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock")
"""gRPC name-resolver schemes: a target starting with one of them (then ``:``) is one target, commas and all."""

_SPACE = re.compile(r"\s")


def split_targets(text: str) -> tuple[str, ...]:
    """``"a:1, b:2"`` -> ``("a:1", "b:2")``; a target with a gRPC resolver scheme stays whole.

    Raises InvalidInputError for an empty list, an empty item or an item with blanks inside.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"hub address: expected host:port[,host:port...], got {text!r}")
    stripped = text.strip()
    if stripped.split(":", 1)[0].lower() in GRPC_SCHEMES and ":" in stripped:
        items = [stripped]
    else:
        items = [item.strip() for item in stripped.split(",")]
    for item in items:
        if not item or _SPACE.search(item):
            raise InvalidInputError(f"hub address: expected host:port[,host:port...], got {text!r}")
    if len(set(items)) != len(items):
        raise InvalidInputError(f"hub address: expected distinct addresses, got {text!r}")
    return tuple(items)


@dataclass(frozen=True)
class Move:
    """A session opened with another replica than the previous session's."""

    hub_id: str
    target: str
    previous_hub_id: str
    previous_target: str

    def __str__(self) -> str:
        return (f"moved to hub replica {self.hub_id} at {self.target} "
                f"(was {self.previous_hub_id} at {self.previous_target})")


class ReplicaRotation:
    """The addresses in order, the one to dial now, and the replica of the last session (not thread-safe:
    the link thread alone uses it)."""

    def __init__(self, targets: tuple[str, ...]) -> None:
        if not targets:
            raise InvalidInputError("hub address: expected at least one, got none")
        self.targets = targets
        self._index = 0
        self._last: tuple[str, str] | None = None  # (hub_id, target) of the last welcomed session

    @property
    def current(self) -> str:
        return self.targets[self._index]

    def advance(self) -> str:
        """The next address (the same one when there is only one)."""
        self._index = (self._index + 1) % len(self.targets)
        return self.current

    def welcomed(self, hub_id: str) -> Move | None:
        """Record that `hub_id` answered at the current address; a `Move` when another replica did before."""
        previous, self._last = self._last, (hub_id, self.current)
        if previous is None or previous == self._last:
            return None
        return Move(hub_id, self.current, previous[0], previous[1])
