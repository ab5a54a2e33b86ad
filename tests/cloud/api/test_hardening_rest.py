"""Issue 12, the REST side: idle connections, decompression bombs, 500s where a 4xx is due, CSRF, exposure.

Each test here failed on the code before the fix: the connection flood took REST and gRPC health down,
the 48 KB PNG decoded to 1.2 GB, 2^70 ids were OverflowError 500s with ~150 log lines, a foreign Origin
reached the handler with the operator's cookie, the schema needed no log-in and hub.db was 0644.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import grpc
import httpx
import numpy as np
import pytest
from crossview_testing.hub_api import PASSWORD, USERNAME, HubApi, colour_hub_kwargs, colour_jpeg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from cloud.api.deps import SESSION_COOKIE
from cloud.api.uploads import MAX_PHOTO_PIXELS, image_size
from crossview.api_client import http_client

ROOT = Path(__file__).resolve().parents[3]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, zeros: int = 48_000_000) -> bytes:
    """A small valid-looking PNG whose IHDR claims width x height (its IDAT: `zeros` zero bytes, compressed)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(zeros), 9))
            + _chunk(b"IEND", b""))


# --- 2: decompression bombs ------------------------------------------------------------------------

@pytest.mark.parametrize(("hw", "ext"), [((128, 64), ".png"), ((7, 3000), ".png"), ((128, 64), ".jpg"),
                                         ((1, 1), ".jpg"), ((301, 17), ".png")])
def test_image_size_matches_pillow(hw: tuple[int, int], ext: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    with Image.open(io.BytesIO(data)) as reference:  # Pillow reads the header only
        assert image_size(data) == (reference.height, reference.width) == hw


def test_png_bomb_is_refused_before_decoding(api: HubApi) -> None:
    bomb = png_declaring(20000, 20000)
    assert len(bomb) < 64 * 1024  # ~48 KB that would decode to 1.2 GB
    peak_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply = api.client.post("/api/identities", files=[("photos", ("bomb.png", bomb, "image/png"))])
    assert reply.status_code == 413, reply.text
    assert "20000x20000" in reply.json()["detail"] and str(MAX_PHOTO_PIXELS) in reply.json()["detail"]
    four = [("photos", (f"b{i}.png", bomb, "image/png")) for i in range(4)]
    assert api.client.post("/api/search", files=four).status_code == 413
    huge = png_declaring(50000, 50000, zeros=1000)  # cv2 raised on this one: a 500
    assert api.client.post("/api/identities", files=[("photos", ("h.png", huge, "image/png"))]).status_code == 413
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kb) / 1024
    assert grown_mb < 300, f"the process grew by {grown_mb:.0f} MB: was the PNG decoded?"
    assert api.client.get("/api/health").status_code == 200


@pytest.mark.parametrize(("data", "status"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00", 400),                          # no IHDR
    (png_declaring(0, 10, zeros=10), 400),                        # no pixels
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20, 400),    # JPEG without a frame header
    (b"GIF89a" + b"\x00" * 20, 415),
])
def test_unreadable_headers_are_refused(api: HubApi, data: bytes, status: int) -> None:
    reply = api.client.post("/api/identities", files=[("photos", ("x", data, "application/octet-stream"))])
    assert reply.status_code == status and "\n" not in reply.json()["detail"], reply.text


def test_a_real_png_is_still_enrolled(api: HubApi) -> None:
    image = cv2.imdecode(np.frombuffer(colour_jpeg("red"), np.uint8), cv2.IMREAD_COLOR)
    png = cv2.imencode(".png", image)[1].tobytes()
    reply = api.client.post("/api/identities", files=[("photos", ("red.png", png, "image/png"))])
    assert reply.status_code == 201, reply.text


# --- 8: 500s where a 4xx is due --------------------------------------------------------------------

BIG = 2**70


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", f"/api/sightings/{BIG}", {}),
    ("GET", f"/api/sightings/{BIG}/crop", {}),
    ("GET", f"/api/alerts?after_id={BIG}", {}),
    ("GET", f"/api/alerts/stream?after_id={BIG}", {}),
    ("POST", "/api/search", {"data": {"sighting_id": str(BIG)}}),
    ("POST", "/api/identities/from-sighting", {"json": {"sighting_id": BIG}}),
    ("GET", f"/api/identities/x/crops/{BIG}", {}),
])
def test_huge_ids_are_4xx(api: HubApi, method: str, path: str, kwargs: dict) -> None:
    reply = api.client.request(method, path, **kwargs)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    assert "\n" not in reply.json()["detail"]


@pytest.mark.parametrize("last_event_id", [str(BIG), "9" * 5000, b"\xb2", "-1", "1e9"])  # b"\xb2": "²", a digit
def test_a_bad_last_event_id_is_ignored_and_the_stream_lives(api: HubApi, last_event_id: str | bytes) -> None:
    with api.client.stream("GET", "/api/alerts/stream", headers={"last-event-id": last_event_id}) as reply:
        assert reply.status_code == 200
        first = next(reply.iter_text())
        assert first.startswith("retry:"), first


def test_an_unexpected_exception_is_one_log_line_and_a_500_with_a_request_id(
        api: HubApi, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    api.running._api.app.add_api_route("/api/boom-for-test", boom)  # the running app, one route more
    caplog.set_level(logging.INFO)
    replies = [api.client.get("/api/boom-for-test") for _ in range(3)]
    for reply in replies:
        assert reply.status_code == 500
        request_id = reply.headers["x-request-id"]
        assert reply.json() == {"detail": f"internal error (OverflowError, request {request_id}); see the hub's log"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 1 <= len(errors) <= 3, [r.getMessage() for r in errors]  # one line each at most (10 s apart: one)
    assert replies[0].headers["x-request-id"] in errors[0].getMessage()
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in errors)
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert api.client.get("/api/health").status_code == 200


# --- 9: CSRF ---------------------------------------------------------------------------------------

def _cookie_client(api: HubApi, **headers: str) -> httpx.Client:
    return http_client(api.url, timeout_s=30, cookies={SESSION_COOKIE: api.token}, headers=headers)


@pytest.mark.parametrize(("headers", "refused"), [
    ({"origin": "https://evil.example"}, True),
    ({"origin": "null"}, True),
    ({"referer": "https://evil.example/page"}, True),
    ({"origin": "http://127.0.0.1.evil.example"}, True),
    ({}, True),                                   # a browser always names the origin on a POST
    ({"origin": "SELF"}, False),
    ({"referer": "SELF/#/gallery"}, False),
    ({"origin": "https://evil.example", "authorization": "Bearer TOKEN"}, False),  # not a cookie session
])
def test_state_changing_cookie_requests_need_the_hubs_origin(api: HubApi, headers: dict[str, str],
                                                             refused: bool) -> None:
    headers = {k: v.replace("SELF", api.url).replace("TOKEN", api.token) for k, v in headers.items()}
    with _cookie_client(api, **headers) as browser:
        reply = browser.post("/api/identities", files=[("photos", ("red.jpg", colour_jpeg("red"), "image/jpeg"))])
        assert (reply.status_code == 403) == refused, reply.text
        if refused:
            assert reply.json()["detail"].startswith("cross-site request check")
        assert browser.get("/api/identities").status_code == 200  # reading is not a forgery risk
    names = {i["identity_id"] for i in api.client.get("/api/identities").json()}
    assert (len(names) == 0) == refused


def test_allowed_origins_are_configurable(tmp_path: Path) -> None:
    from crossview_testing.hub_api import start_hub_api

    with start_hub_api(tmp_path, api_options={"allowed_origins": ["https://hub.example:8443"]},
                       **colour_hub_kwargs()) as api:
        for origin, status in [("https://hub.example:8443", 404), ("https://hub.example", 403)]:
            with _cookie_client(api, origin=origin) as browser:
                assert browser.patch("/api/identities/nobody", json={"display_name": "x"}).status_code == status


# --- 10: exposure ----------------------------------------------------------------------------------

def test_schema_and_docs_need_a_log_in(api: HubApi) -> None:
    for path in ["/openapi.json", "/docs", "/redoc"]:
        assert httpx.get(f"{api.url}{path}").status_code == 401, path
        assert api.client.get(path).status_code == 200, path
    assert "/api/identities" in api.client.get("/openapi.json").json()["paths"]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_hub_files_are_private(api: HubApi) -> None:
    reply = api.client.post("/api/identities", files=[("photos", ("r.jpg", colour_jpeg("red"), "image/jpeg"))])
    assert reply.status_code == 201
    data_dir = Path(api.running.hub.crops.root).parent
    for name in ["hub.db", "hub.db-wal", "hub.db-shm"]:
        assert _mode(data_dir / name) == 0o600, name
    crops = Path(api.running.hub.crops.root)
    folders = [crops, *[p for p in crops.rglob("*") if p.is_dir()]]
    files = [p for p in crops.rglob("*") if p.is_file()]
    assert len(folders) >= 3 and files
    assert {_mode(p) for p in folders} == {0o700} and {_mode(p) for p in files} == {0o600}


def test_files_an_older_hub_left_open_are_narrowed(tmp_path: Path) -> None:
    from cloud.crops import CropFiles
    from cloud.store.sqlite import SqliteHubStore

    SqliteHubStore(tmp_path / "hub.db").close()
    os.chmod(tmp_path / "hub.db", 0o644)
    (tmp_path / "crops" / "sighting" / "ab").mkdir(parents=True, mode=0o755)
    for folder in [tmp_path / "crops", tmp_path / "crops" / "sighting", tmp_path / "crops" / "sighting" / "ab"]:
        os.chmod(folder, 0o755)
    SqliteHubStore(tmp_path / "hub.db").close()
    CropFiles(tmp_path / "crops")
    assert _mode(tmp_path / "hub.db") == 0o600
    assert {_mode(p) for p in [tmp_path / "crops", *(tmp_path / "crops").rglob("*")]} == {0o700}


def test_admin_password_from_a_file_and_a_warning_for_the_command_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from crossview.hub_command import HubConfig, _password_from_file, warn_password_on_command_line
    from models.errors import CrossviewError

    secret = tmp_path / "admin-password"
    secret.write_text("s3cret from a file\nignored\n")
    assert _password_from_file(str(secret)) == "s3cret from a file"
    assert HubConfig(admin_password_file=str(secret)).admin_password_file == str(secret)
    (tmp_path / "empty").write_text("\n")
    for path, match in [(tmp_path / "missing", "cannot read"), (tmp_path / "empty", "expected a password")]:
        with pytest.raises(CrossviewError, match=match):
            _password_from_file(str(path))
    with caplog.at_level(logging.WARNING):
        warn_password_on_command_line(["api_port=0", f"admin_password_file={secret}"])
        assert not caplog.records
        warn_password_on_command_line(["admin_password=hunter2"])
    assert len(caplog.records) == 1 and "visible to every user" in caplog.records[0].getMessage()
    assert "hunter2" not in caplog.text


# --- 1: idle connections ---------------------------------------------------------------------------

_CHILD = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (__LIMIT__, __LIMIT__))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from crossview_testing.hub_api import colour_hub_kwargs
from cloud.running import RunningHub
with RunningHub(data_dir=sys.argv[1], operators={"admin": sys.argv[2]}, api_options={"header_timeout_s": 2.0},
                **colour_hub_kwargs()) as running:
    print(running.api_url, running.grpc_port, flush=True)
    sys.stdin.read()
"""
FILE_LIMIT = 256
IDLE_SOCKETS = 400  # more than the hub's whole file limit


def _grpc_serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the hub closed `sock` (silently, or after a 408/503), reading until it does."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b"" or data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503"))


def test_idle_connections_do_not_take_the_hub_down(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    child = subprocess.Popen([sys.executable, "-c", _CHILD.replace("__LIMIT__", str(FILE_LIMIT)), str(tmp_path / "hub"),
                              PASSWORD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, text=True, cwd=ROOT)
    sockets: list[socket.socket] = []
    try:
        assert child.stdout is not None
        url, grpc_port = child.stdout.readline().split()
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for i in range(IDLE_SOCKETS):  # half send nothing, half half a header
            sock = socket.create_connection((host, int(port)), timeout=30)
            if i % 2:
                sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        time.sleep(0.5)  # let the hub's loop accept what it will
        assert httpx.get(f"{url}/api/health", timeout=20).status_code == 200
        login = httpx.post(f"{url}/api/login", json={"username": USERNAME, "password": PASSWORD}, timeout=20)
        assert login.status_code == 200, login.text
        assert _grpc_serving(int(grpc_port))
        for sock in sockets:  # every idle one is closed: evicted by newer ones or past the 2 s header deadline
            sock.settimeout(30)
            assert _closed_by_peer(sock)
        assert httpx.get(f"{url}/api/health", timeout=20).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        _, stderr = child.communicate("", timeout=60)
    assert child.returncode == 0, stderr[-3000:]
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) < 50, f"{len(lines)} log lines:\n" + "\n".join(lines[:20])
    assert any("at most" in line and "connections" in line for line in lines), lines


def test_open_file_limit_is_raised_to_the_hard_limit() -> None:
    script = ("import resource; from cloud.file_limits import raise_open_file_limit; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300)); print(raise_open_file_limit(), "
              "resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout.split()
    assert out == ["(300,", "300)", "300"], out


def test_rate_limited_log_counts_what_it_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    from cloud.log_limits import RateLimitedLog

    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.limits"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.limits"):
        logged = [limited.error("a", "accept failed: %s", "EMFILE") for _ in range(5)]
        logged.append(limited.error("b", "another key"))
        now[0] = 10.0
        logged.append(limited.error("a", "accept failed: %s", "EMFILE"))
    assert logged == [True, False, False, False, False, True, True]
    assert [r.getMessage() for r in caplog.records] == [
        "accept failed: EMFILE", "another key", "accept failed: EMFILE (suppressed 4 similar)"]
    assert json.dumps([r.levelname for r in caplog.records]) == '["ERROR", "ERROR", "ERROR"]'


def test_accept_out_of_files_is_logged_once_not_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from cloud.api.server import _exception_handler

    seen: list[str] = []
    handler = _exception_handler(lambda _loop, context: seen.append(context["message"]))
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO, logger="cloud.api.server"):
            for _ in range(1000):
                handler(loop, {"message": "socket.accept() out of system resource",
                               "exception": OSError(24, "Too many open files")})
            handler(loop, {"message": "something else"})
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "cloud.api.server"]
    assert len(lines) == 1 and lines[0].exc_info is None and "Too many open files" in lines[0].getMessage()
    assert seen == ["something else"]  # other loop errors still reach the previous handler
