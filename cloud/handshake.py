"""The start of an edge's stream: Hello, who the edge is (its token), and whether the hub can take
its model. Independent of gRPC, like `cloud.edge_session`, which runs it before anything else.

Credentials come from call metadata (checked by the server before the session starts) or, failing
that, from Hello.auth_token. Hello must come first, name the token's edge and a model the hub can run
(accepted, and openable by the gallery's embedders), with ids and counters in range; anything else
is a fatal Error and the stream ends with the matching status (`SessionAbort`).

Refused credentials of any kind (no, malformed, wrong, revoked or expired token, an unknown edge, a
token of another edge) end the stream alike: UNAUTHENTICATED "edge credentials refused", so a caller
cannot tell which edge ids exist (issue 12, finding 10); the reason is logged on the hub, at most once
per interval per peer address (`cloud.log_limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from cloud import wire
from cloud.auth import AuthError
from cloud.edge_session_types import Send, SessionAbort, SessionLimits, SessionServices
from cloud.log_limits import RateLimitedLog
from cloud.waits import within
from models.errors import InvalidInputError
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

log = logging.getLogger(__name__)
_refusals = RateLimitedLog(log, interval_s=10.0)

MAX_EMBEDDING_DIM = 65_536
CREDENTIALS_REFUSED = "edge credentials refused"
"""The one status detail of every refused credential (UNAUTHENTICATED)."""


def refuse(exc: AuthError, peer: str) -> SessionAbort:
    """Log why `peer`'s credentials were refused; what it is told (the same whatever the reason)."""
    address = peer.rpartition(":")[0] or peer  # per address, not per connection
    _refusals.warning(f"refused {address}", "edge credentials from %s refused: %s", peer, exc)
    return SessionAbort("unauthenticated", CREDENTIALS_REFUSED)

_FATAL_STATUS = {
    common_pb2.ERROR_CODE_INVALID_ARGUMENT: "invalid_argument",
    common_pb2.ERROR_CODE_FAILED_PRECONDITION: "failed_precondition",
    common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH: "failed_precondition",
    common_pb2.ERROR_CODE_UNAVAILABLE: "unavailable",
    common_pb2.ERROR_CODE_DEADLINE_EXCEEDED: "unavailable",
}


@dataclass(frozen=True)
class HelloInput:
    """An accepted Hello."""

    edge_id: str
    fingerprint: str  # the edge's Re-ID model
    dim: int | None  # its vectors' dimension, when known
    site: str
    cameras: list[dict[str, object]]
    gallery_version: int  # what the edge holds
    last_acked_sequence: int  # the last hub message it acknowledged


async def fatal(send: Send, code: int, message: str) -> SessionAbort:
    """Tell the edge why its stream ends (a fatal Error, best effort); the SessionAbort to raise."""
    with contextlib.suppress(Exception):
        await send(wire.error(code, message, fatal=True))
    return SessionAbort(_FATAL_STATUS.get(code, "failed_precondition"), message)


async def handshake(requests: AsyncIterator[bytes], send: Send, *, services: SessionServices, limits: SessionLimits,
                    token_edge_id: str | None, peer: str = "") -> HelloInput:
    """Read and check Hello; raises SessionAbort when the stream must end."""
    try:
        raw = await within(anext(requests), limits.hello_timeout_s)
    except StopAsyncIteration:
        raise SessionAbort("cancelled", "the edge closed the stream before Hello") from None
    except TimeoutError:
        raise await fatal(send, common_pb2.ERROR_CODE_FAILED_PRECONDITION,
                          f"expected Hello within {limits.hello_timeout_s:g} s") from None
    try:
        msg = session_pb2.EdgeMessage.FromString(raw)
    except DecodeError as exc:
        raise await fatal(send, common_pb2.ERROR_CODE_INVALID_ARGUMENT, f"malformed EdgeMessage: {exc}") from None
    if msg.WhichOneof("body") != "hello":
        raise await fatal(send, common_pb2.ERROR_CODE_FAILED_PRECONDITION,
                          f"expected Hello first, got {msg.WhichOneof('body') or 'an empty message'}")
    hello = msg.hello
    log.debug("Hello from %s (edge %r, model %s, gallery version %d)", peer, hello.edge_id,
              hello.model_fingerprint, hello.gallery_version)
    try:
        edge_id = token_edge_id
        if edge_id is None:
            edge_id = await asyncio.to_thread(services.auth.authenticate, hello.auth_token or None)
        await asyncio.to_thread(services.auth.check_hello, edge_id, hello.edge_id)
    except AuthError as exc:
        raise refuse(exc, peer) from None
    dim = await _check_model(hello, send, services)
    return HelloInput(hello.edge_id, hello.model_fingerprint, dim, hello.site, wire.cameras(hello),
                      int(hello.gallery_version), int(hello.last_acked_hub_sequence))


async def _check_model(hello: edge_to_hub_pb2.Hello, send: Send, services: SessionServices) -> int | None:
    """The dimension of the edge's vectors (None: unknown to both sides)."""
    fp = hello.model_fingerprint
    if not fp:
        raise await fatal(send, common_pb2.ERROR_CODE_INVALID_ARGUMENT, "Hello: expected a model fingerprint, got none")
    try:
        wire.check_id("Hello: model fingerprint", fp)
        wire.check_id("Hello: site", hello.site, required=False)
        wire.check_int64("Hello: gallery version", hello.gallery_version)
        wire.check_int64("Hello: last acked hub sequence", hello.last_acked_hub_sequence)
        if not 0 <= hello.embedding_dim <= MAX_EMBEDDING_DIM:
            raise InvalidInputError(f"Hello: expected an embedding dimension 0..{MAX_EMBEDDING_DIM}, "
                                    f"got {hello.embedding_dim}")
        if len(hello.cameras) > wire.MAX_CAMERAS:
            raise InvalidInputError(f"Hello: expected at most {wire.MAX_CAMERAS} cameras, got {len(hello.cameras)}")
        for camera in hello.cameras:
            wire.check_id("Hello: camera id", camera.camera_id)
            if not 0.0 <= camera.fps <= wire.MAX_FPS:  # also refuses NaN
                raise InvalidInputError(f"Hello: camera {camera.camera_id!r}: expected fps in [0, {wire.MAX_FPS:g}], "
                                        f"got {camera.fps}")
    except InvalidInputError as exc:
        raise await fatal(send, common_pb2.ERROR_CODE_INVALID_ARGUMENT, str(exc)) from None
    accepted = services.accepted_fingerprints
    if (accepted is not None and fp not in accepted) or not await asyncio.to_thread(
            services.gallery.embedders.supports, fp):
        raise await fatal(send, common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH,
                          f"Hello: the hub cannot accept vectors of model {fp!r}")
    dim = await asyncio.to_thread(services.gallery.embedders.dim, fp)
    if hello.embedding_dim and dim and hello.embedding_dim != dim:
        raise await fatal(send, common_pb2.ERROR_CODE_INVALID_ARGUMENT,
                          f"Hello: expected embedding dimension {dim} for {fp}, got {hello.embedding_dim}")
    return dim or (hello.embedding_dim or None)
