"""How the edge reaches its hub: one frozen `HubLinkSettings`, checked once, for `HubLink` and `EdgeNode`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edge.uplink.replicas import split_targets
from models.errors import InvalidInputError

PemSource = bytes | str | Path | None


def check_tls_pair(certificate_chain: object, private_key: object) -> None:
    """The client certificate and its key go together (mutual TLS) or not at all."""
    if (certificate_chain is None) != (private_key is None):
        raise InvalidInputError("certificate_chain and private_key: expected both (mutual TLS) or neither")


@dataclass(frozen=True)
class HubLinkSettings:
    """Where the hub is, how to prove who this edge is, and the link's timings and limits.

    Args:
        target: the hub's ``host:port``; or several replicas' (``host1:port,host2:port``, dialled in turn
            when one fails: `edge.uplink.replicas`), or one gRPC target such as ``dns:///hub:7443``.
        token: sent as ``authorization: Bearer <token>`` on every stream.
        site: announced in Hello.
        root_certificates, certificate_chain, private_key: PEM bytes or file paths; any of them turns
            TLS on (chain + key, always together: mutual TLS).
        blur_faces: True (a default `FaceBlurrer`) or a configured one: every crop is blurred as it is
            sent, whoever put it in the outbox, and re-encoded at `blur_jpeg_quality` (None: the
            uplink's JPEG quality where the edge node knows it, else 75).
        state_path: the `LinkState` file; default ``<outbox file stem>.link.db`` beside the outbox.
        keepalive_s: HTTP/2 keepalive pings to notice a dead connection (the hub must permit them).
        heartbeat_s, initial_backoff_s, max_backoff_s, hello_timeout_s: seconds, each > 0.
        max_message_bytes, max_receive_bytes: gRPC message limits; max_inflight: unacknowledged
            outbox entries at most; search_top_k: hits of a search job that names no top_k.
    """

    target: str
    token: str
    site: str = ""
    root_certificates: PemSource = None
    certificate_chain: PemSource = None
    private_key: PemSource = None
    heartbeat_s: float = 10.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    hello_timeout_s: float = 10.0
    blur_faces: object = False  # bool or an `edge.privacy.FaceBlurrer`
    blur_jpeg_quality: int | None = None
    max_message_bytes: int = 4 * 1024 * 1024
    max_receive_bytes: int = 64 * 1024 * 1024
    max_inflight: int = 32
    search_top_k: int = 50
    keepalive_s: float | None = None
    state_path: Path | None = None

    def __post_init__(self) -> None:
        for name in ("target", "token"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                raise InvalidInputError(f"{name}: expected a non-empty one-line string, got {value!r}")
        for name in ("heartbeat_s", "initial_backoff_s", "max_backoff_s", "hello_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{name}: expected a positive number of seconds, got {value!r}")
        split_targets(self.target)
        check_tls_pair(self.certificate_chain, self.private_key)
        if self.blur_jpeg_quality is not None and not 1 <= self.blur_jpeg_quality <= 100:
            raise InvalidInputError(f"blur_jpeg_quality: expected 1..100, got {self.blur_jpeg_quality}")

    @property
    def targets(self) -> tuple[str, ...]:
        """The addresses of `target`, in the order they are tried."""
        return split_targets(self.target)

    @property
    def tls(self) -> bool:
        return any(x is not None for x in (self.root_certificates, self.certificate_chain, self.private_key))
