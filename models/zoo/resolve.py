"""Find a model's (or sample's) files: a local folder, then the user cache, then a download.

Resolution order for models: `$CROSSVIEW_MODELS/<relpath>`, then `<cache>/models/<relpath>`, then
the public URL (downloaded into the cache, checksum verified, written atomically). Samples use
`$CROSSVIEW_DATA` and `<cache>/data` the same way. The cache folder is `$CROSSVIEW_CACHE`, else
`$XDG_CACHE_HOME/crossview`, else `~/.cache/crossview`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from models.errors import ChecksumMismatchError, ModelNotFoundError
from models.zoo.spec import RemoteFile

MODELS_ENV = "CROSSVIEW_MODELS"
DATA_ENV = "CROSSVIEW_DATA"
CACHE_ENV = "CROSSVIEW_CACHE"
_CHUNK = 1 << 20
_verified: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "crossview"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so repeated resolves cost nothing."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def verify(path: Path, expected_sha256: str) -> None:
    if not expected_sha256:
        return
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch for {path}: expected sha256 {expected_sha256[:16]}…, got {actual[:16]}… "
            "(the file is corrupt or a different version; delete it to fetch it again)"
        )


@dataclass(frozen=True)
class ResolvedFile:
    path: Path
    source: str  # "env" | "cache" | "download"


def download(url: str, dest: Path, expected_sha256: str, expected_size: int | None = None,
             timeout_s: float = 30.0, progress: bool = True) -> Path:
    """Stream `url` to `dest` atomically: a temp file in the same folder, hashed while written,
    renamed into place only when size and checksum match. Nothing is left behind on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            total = int(resp.headers.get("Content-Length") or expected_size or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                      leave=False) as bar:
                while block := resp.read(_CHUNK):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise ModelNotFoundError(f"download of {url} was cut off: got {received} of {total} bytes")
        actual = digest.hexdigest()
        if expected_sha256 and actual != expected_sha256:
            raise ChecksumMismatchError(
                f"checksum mismatch for {url}: expected sha256 {expected_sha256[:16]}…, got {actual[:16]}…"
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        raise ModelNotFoundError(f"download of {url} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def resolve_file(remote: RemoteFile, env_var: str, cache_subdir: str, *, allow_download: bool = True,
                 progress: bool = True) -> ResolvedFile:
    """Find one file by the resolution order above and verify its checksum."""
    local_root = os.environ.get(env_var)
    if local_root:
        candidate = Path(local_root) / remote.relpath
        if candidate.is_file():
            verify(candidate, remote.sha256)
            return ResolvedFile(candidate, "env")
    cached = cache_root() / cache_subdir / remote.relpath
    if cached.is_file():
        verify(cached, remote.sha256)
        return ResolvedFile(cached, "cache")
    where = f"${env_var}={local_root}" if local_root else f"${env_var} (not set)"
    if remote.url is None:
        raise ModelNotFoundError(
            f"{remote.relpath} not found in {where} or {cached.parent} and it has no public download URL; "
            f"place the file there and set {env_var}"
        )
    if not allow_download:
        raise ModelNotFoundError(
            f"{remote.relpath} not found in {where} or {cached.parent}; download it from {remote.url} "
            f"or set {env_var} to a folder that has it"
        )
    try:
        download(remote.url, cached, remote.sha256, remote.size, progress=progress)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"{remote.relpath} not found in {where} or {cached.parent}, and {exc}; "
            f"set {env_var} to a folder that has it"
        ) from exc
    return ResolvedFile(cached, "download")
