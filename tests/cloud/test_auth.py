"""Edge tokens and transport security: every unauthenticated session is refused."""

from __future__ import annotations

import asyncio
import datetime
import types
from collections.abc import Callable

import grpc
import pytest

from cloud.auth import AuthError, EdgeAuth, bearer_token
from cloud.hub import Hub
from cloud.server import TlsConfig
from cloud.store import HubStore


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("metadata", "expected"), [
    ((("authorization", "Bearer abc"),), "abc"),
    ((("Authorization", b"bearer  abc "),), "abc"),
    ((("authorization", "Basic abc"),), ""),
    ((("x-other", "1"),), None),
    ((), None),
    (None, None),
])
def test_bearer_token(metadata: tuple | None, expected: str | None) -> None:
    assert bearer_token(metadata) == expected


def test_tokens_are_hashed_expire_and_revoke(store: HubStore) -> None:
    clock = Clock()
    auth = EdgeAuth(store, clock=clock)
    issued = auth.create_token("edge-a", ttl_s=60)
    assert auth.authenticate(issued.token) == "edge-a"
    record = store.get_token(issued.token_id)
    assert record is not None and issued.token.split("_")[-1] not in record.secret_hash  # only the hash is kept

    forged = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")
    for token, match in [(None, "no edge token"), ("", "no edge token"), ("nonsense", "malformed"),
                         (forged, "wrong"), ("cvt_0123456789abcdef_" + "x" * 43, "wrong")]:
        with pytest.raises(AuthError, match=match):
            auth.authenticate(token)

    clock.now += 61
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(issued.token)

    second = auth.create_token("edge-a")  # no expiry
    assert auth.authenticate(second.token) == "edge-a"
    assert auth.revoke_edge("edge-a") == 2
    with pytest.raises(AuthError, match="revoked"):
        auth.authenticate(second.token)
    with pytest.raises(AuthError) as refused:
        auth.check_hello("edge-a", "edge-b")
    assert refused.value.code == "unauthenticated"  # edge-b is not registered
    auth.create_token("edge-b")
    with pytest.raises(AuthError) as refused:
        auth.check_hello("edge-a", "edge-b")
    assert refused.value.code == "permission_denied"


def _session_status(port: int, kit: types.SimpleNamespace, token: str | None, hello_edge: str = "edge-a",
                    **hello_kwargs: str) -> tuple[grpc.StatusCode, str]:
    async def run() -> tuple[grpc.StatusCode, str]:
        edge = kit.EdgeClient(port, token)
        try:
            await edge.send(kit.hello(hello_edge, **hello_kwargs))
            while True:
                await edge.recv()
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        finally:
            await edge.close()
    return asyncio.run(run())


def test_sessions_refuse_bad_credentials(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    clock = Clock()
    hub = make_hub(clock=clock)
    good = hub.auth.create_token("edge-a").token
    expiring = hub.auth.create_token("edge-a", ttl_s=10).token
    revoked = hub.auth.create_token("edge-a")
    hub.auth.revoke_token(revoked.token_id)
    other = hub.auth.create_token("edge-b").token
    orphan = hub.auth.create_token("edge-gone").token
    hub.store.delete_edge("edge-gone")
    clock.now += 11

    async def serve() -> None:
        port = await hub.start()
        cases = [
            (None, "edge-a", {}, grpc.StatusCode.UNAUTHENTICATED, "no edge token"),
            ("wrong", "edge-a", {}, grpc.StatusCode.UNAUTHENTICATED, "malformed"),
            (good[:-3] + "zzz", "edge-a", {}, grpc.StatusCode.UNAUTHENTICATED, "wrong"),
            (expiring, "edge-a", {}, grpc.StatusCode.UNAUTHENTICATED, "expired"),
            (revoked.token, "edge-a", {}, grpc.StatusCode.UNAUTHENTICATED, "revoked"),
            (orphan, "edge-gone", {}, grpc.StatusCode.UNAUTHENTICATED, "wrong"),  # the edge was deleted
            (good, "edge-unknown", {}, grpc.StatusCode.UNAUTHENTICATED, "unknown edge"),
            (other, "edge-a", {}, grpc.StatusCode.PERMISSION_DENIED, "belongs to edge 'edge-b'"),
            (None, "edge-a", {"auth_token": "bad"}, grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        ]
        for token, edge_id, extra, _code, _detail in cases:  # the reason is only logged (issue 12, finding 10)
            got = await asyncio.to_thread(_session_status, port, kit, token, edge_id, **extra)
            assert got == (grpc.StatusCode.UNAUTHENTICATED, "edge credentials refused"), (token, edge_id, got)
        # the right token in metadata, or (for clients without metadata) in Hello, opens a session
        for token, extra in [(good, {}), (None, {"auth_token": good})]:
            edge = kit.EdgeClient(port, token)
            await edge.send(kit.hello(**extra))
            assert (await edge.recv()).WhichOneof("body") == "welcome"
            await edge.close()
        await hub.stop()

    asyncio.run(serve())


# ------------------------------------------------------------------------------------------ mTLS
def _certificates() -> dict[str, bytes]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made here."""
    x509 = pytest.importorskip("cryptography.x509", reason="mTLS test needs the cryptography package")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple | None, *, ca: bool = False,
             usage: object = None, san: list | None = None) -> object:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        issuer_name, issuer_key = issuer if issuer else (name, key)
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    import ipaddress

    ca_key, server_key, client_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = cert("crossview test CA", ca_key, None, ca=True)
    server = cert("hub", server_key, (ca.subject, ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH,  # type: ignore[attr-defined]
                  san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = cert("edge-a", client_key, (ca.subject, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)  # type: ignore[attr-defined]
    rogue = cert("edge-a", rogue_key, None, usage=ExtendedKeyUsageOID.CLIENT_AUTH)  # self-signed, not by the CA

    def pem(c: object) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]

    return {"ca": pem(ca), "server": pem(server), "server_key": key_pem(server_key), "client": pem(client),
            "client_key": key_pem(client_key), "rogue": pem(rogue), "rogue_key": key_pem(rogue_key)}


def test_mutual_tls(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    pem = _certificates()
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token
    tls = TlsConfig(cert=pem["server"], key=pem["server_key"], client_ca=pem["ca"], require_client_cert=True)

    async def attempt(port: int, cert: bytes | None, key: bytes | None) -> str:
        credentials = grpc.ssl_channel_credentials(root_certificates=pem["ca"], private_key=key,
                                                   certificate_chain=cert)
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)
        edge = kit.EdgeClient(port, token, channel=channel)
        try:
            await edge.send(kit.hello())
            return (await edge.recv(timeout=20)).WhichOneof("body")
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        finally:
            await edge.close()

    async def serve() -> None:
        port = await hub.start(tls=tls)
        assert await attempt(port, pem["client"], pem["client_key"]) == "welcome"
        assert await attempt(port, None, None) == "UNAVAILABLE"  # no client certificate: handshake refused
        assert await attempt(port, pem["rogue"], pem["rogue_key"]) == "UNAVAILABLE"  # not signed by the CA
        plain = kit.EdgeClient(port, token)  # plaintext to a TLS port
        with pytest.raises(grpc.aio.AioRpcError):
            await plain.send(kit.hello())
            await plain.recv(timeout=20)
        await plain.close()
        await hub.stop()

    asyncio.run(serve())


def test_tls_config_needs_a_ca_for_client_certificates() -> None:
    with pytest.raises(ValueError, match="client_ca"):
        TlsConfig(cert=b"x", key=b"y", require_client_cert=True).credentials()
