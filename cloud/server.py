"""The hub's gRPC server: the EdgeHub session stream, the standard health service, TLS.

The servicer is thin: it reads the bearer token from call metadata, hands raw request bytes to
`SessionManager.serve` (which decodes them itself, so that a malformed message is answered rather
than killing the stream as a deserialisation failure would) and maps `SessionAbort` to a status.
A wrong, expired, revoked or unknown token ends the call with UNAUTHENTICATED before anything is
read, with the same detail whatever the reason (`cloud.handshake.refuse`: no edge-id enumeration);
a call without the metadata entry may still authenticate with Hello.auth_token.

Clients use the generated stub (`session_pb2_grpc.EdgeHubStub`); the wire format is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from cloud.auth import AuthError, EdgeAuth, bearer_token
from cloud.handshake import refuse
from cloud.sessions import SessionAbort, SessionManager
from cloud.waits import within
from protos.crossview.v1 import session_pb2

SERVICE_NAME = "crossview.v1.EdgeHub"
RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing metadata key of the retry hint sent with RESOURCE_EXHAUSTED and UNAVAILABLE."""
_DRAIN_S = 1.0


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS: PEM certificate chain and key; with `client_ca`, client certificates signed by it
    are verified, and `require_client_cert` makes them mandatory (mTLS)."""

    cert: bytes | str | Path
    key: bytes | str | Path
    client_ca: bytes | str | Path | None = None
    require_client_cert: bool = False

    def credentials(self) -> grpc.ServerCredentials:
        if self.require_client_cert and self.client_ca is None:
            raise ValueError("require_client_cert: expected client_ca to verify client certificates with")
        return grpc.ssl_server_credentials([(_pem(self.key), _pem(self.cert))],
                                           root_certificates=_pem(self.client_ca) if self.client_ca else None,
                                           require_client_auth=self.require_client_cert)


def _pem(value: bytes | str | Path) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()


class HubServices(Protocol):
    """What `create_server` serves (`cloud.hub.Hub` is one)."""

    sessions: SessionManager
    auth: EdgeAuth
    health: health_aio.HealthServicer


class EdgeHubServicer:
    def __init__(self, sessions: SessionManager, auth: EdgeAuth) -> None:
        self.sessions, self.auth = sessions, auth

    async def session(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        token = bearer_token(context.invocation_metadata())
        edge_id = None
        if token is not None:
            try:
                edge_id = await asyncio.to_thread(self.auth.authenticate, token)
            except AuthError as exc:
                refused = refuse(exc, context.peer())
                # a client that is writing its Hello while the status arrives sees its write fail as
                # INTERNAL instead of reading UNAUTHENTICATED: let that one write land first (discarded)
                with contextlib.suppress(Exception):
                    await within(anext(aiter(requests)), _DRAIN_S)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused.message)
        try:
            await self.sessions.serve(edge_id, requests, context.write, context.peer())
        except SessionAbort as exc:
            if exc.status == "cancelled":
                return
            if exc.retry_after_ms is not None:
                context.set_trailing_metadata(((RETRY_AFTER_KEY, str(exc.retry_after_ms)),))
            await context.abort(grpc.StatusCode[exc.status.upper()], exc.message)


def edge_hub_handler(servicer: EdgeHubServicer) -> grpc.GenericRpcHandler:
    """The EdgeHub service with raw request bytes (the session parses them)."""
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.session, request_deserializer=None,
            response_serializer=session_pb2.HubMessage.SerializeToString),
    })


def create_server(services: HubServices, port: int = 0, *, host: str = "127.0.0.1", tls: TlsConfig | None = None,
                  max_receive_message_bytes: int | None = None, max_send_message_bytes: int = 64 * 1024 * 1024,
                  options: Sequence[tuple[str, Any]] = ()) -> tuple[grpc.aio.Server, int]:
    """A not yet started grpc.aio server for `services`, bound to `host:port` (0: a free port).

    Call inside the event loop that will run it; `await server.start()` to serve.
    """
    max_receive = max_receive_message_bytes or services.sessions.limits.max_message_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_send_message_length", max_send_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        *options,
    ])
    server.add_generic_rpc_handlers((edge_hub_handler(EdgeHubServicer(services.sessions, services.auth)),))
    health_pb2_grpc.add_HealthServicer_to_server(services.health, server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the hub to {address}")
    return server, bound


async def set_serving(health: health_aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await health.set(name, status)
