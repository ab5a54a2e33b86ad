"""The zoo: manifest sanity, resolution order, checksums, and downloads from a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.errors import ChecksumMismatchError, ModelNotFoundError
from models.zoo import (
    MODELS,
    RemoteFile,
    get_spec,
    model_names,
    resolve_file,
    resolve_model,
    resolve_sample,
    sha256_of,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/good.bin":
            self._send(PAYLOAD, len(PAYLOAD))
        elif self.path == "/dropped.bin":
            # announce the full length, send half, then close the connection
            self._send(PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD))
            self.close_connection = True
        else:
            self.send_error(404, "no such file")

    def _send(self, body: bytes, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_manifest_names_are_unique_and_complete() -> None:
    names = [spec.name for spec in MODELS]
    assert len(names) == len(set(names))
    for required in ("reid/intel-0288", "reid/intel-0287", "reid/intel-0286", "reid/intel-0277",
                     "reid/osnet-x0.25-msmt17", "detect/yolov8n-int8-openvino", "attributes/intel-0230",
                     "detect/pedestrian-adas-0002"):
        assert required in names
    for spec in MODELS:
        assert all(len(f.sha256) == 64 for f in spec.files), spec.name
        assert spec.fingerprint.startswith(spec.name + "@")


def test_unknown_model_suggests_closest_name() -> None:
    with pytest.raises(ModelNotFoundError, match=r"did you mean 'reid/intel-0288'"):
        get_spec("reid/intel-288")


def test_every_model_resolves_from_models_folder_with_verified_checksum(models_dir: Path,
                                                                         isolated_cache: Path) -> None:
    for name in model_names():
        resolved = resolve_model(name, allow_download=False)
        assert resolved.path.exists(), name
        assert resolved.source == "env"
        for f in resolved.spec.files:
            assert sha256_of(models_dir / f.relpath) == f.sha256


def test_sample_video_resolves_from_data_folder(data_dir: Path) -> None:
    path = resolve_sample("one-by-one-person-detection.mp4", allow_download=False)
    assert path == data_dir / "video" / "one-by-one-person-detection.mp4"


def test_corrupt_model_file_is_a_checksum_error(models_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    spec = get_spec("reid/intel-0288")
    copy = tmp_path / "models"
    for f in spec.files:
        (copy / f.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models_dir / f.relpath, copy / f.relpath)
    weights = copy / spec.weights.relpath
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("CROSSVIEW_MODELS", str(copy))
    with pytest.raises(ChecksumMismatchError, match="checksum mismatch") as info:
        resolve_model("reid/intel-0288", allow_download=False)
    assert "\n" not in str(info.value)


def test_offline_and_missing_names_file_url_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         isolated_cache: Path) -> None:
    monkeypatch.setenv("CROSSVIEW_MODELS", str(tmp_path / "empty"))
    remote = RemoteFile("x/model.bin", PAYLOAD_SHA, len(PAYLOAD), "http://127.0.0.1:9/model.bin")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_file(remote, "CROSSVIEW_MODELS", "models")
    message = str(info.value)
    assert "x/model.bin" in message and "http://127.0.0.1:9/model.bin" in message
    assert "CROSSVIEW_MODELS" in message
    assert not list(isolated_cache.rglob("*")) or all(p.is_dir() for p in isolated_cache.rglob("*"))


def test_download_into_cache_then_reuse(http_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        isolated_cache: Path) -> None:
    monkeypatch.delenv("CROSSVIEW_MODELS", raising=False)
    remote = RemoteFile("dl/good.bin", PAYLOAD_SHA, len(PAYLOAD), f"{http_server}/good.bin")
    first = resolve_file(remote, "CROSSVIEW_MODELS", "models", progress=False)
    assert first.source == "download"
    assert first.path.read_bytes() == PAYLOAD
    second = resolve_file(remote, "CROSSVIEW_MODELS", "models", progress=False)
    assert second.source == "cache" and second.path == first.path


@pytest.mark.parametrize(
    ("path", "sha", "error", "match"),
    [
        ("/good.bin", "0" * 64, ChecksumMismatchError, "checksum mismatch"),
        ("/dropped.bin", PAYLOAD_SHA, ModelNotFoundError, "download of"),
        ("/missing.bin", PAYLOAD_SHA, ModelNotFoundError, "404"),
    ],
)
def test_failed_download_leaves_nothing_behind(http_server: str, monkeypatch: pytest.MonkeyPatch,
                                               isolated_cache: Path, path: str, sha: str,
                                               error: type[Exception], match: str) -> None:
    monkeypatch.delenv("CROSSVIEW_MODELS", raising=False)
    remote = RemoteFile("dl/file.bin", sha, len(PAYLOAD), f"{http_server}{path}")
    with pytest.raises(error, match=match):
        resolve_file(remote, "CROSSVIEW_MODELS", "models", progress=False)
    leftovers = [p for p in isolated_cache.rglob("*") if p.is_file()]
    assert leftovers == []
