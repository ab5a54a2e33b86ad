"""Uploaded photos: bounded reads, JPEG/PNG sniffing, and a body-size limit for whole requests.

Starlette spools a multipart body before a route runs, so `BodyLimit` caps the request itself
(by Content-Length, and by counting bytes of a chunked body) and `read_photos` caps each file.

Every photo's size in pixels is read from its header (`image_size`: PNG IHDR, JPEG start-of-frame)
before anything decodes it, and over `MAX_PHOTO_PIXELS` it is a 413: a 48 KB PNG may declare
20000x20000 pixels, 1.2 GB once decoded (issue 12, finding 2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import cv2
import numpy as np
from fastapi import HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api.errors import ApiError
from models.errors import InvalidInputError
from protos import codec

MAX_PHOTO_BYTES = 8 * 1024 * 1024
MAX_PHOTOS = 16
MAX_PHOTO_PIXELS = codec.DEFAULT_MAX_CROP_PIXELS  # 4096 x 4096, as for the edges' crops
MAX_JSON_BYTES = 1024 * 1024
MAX_MULTIPART_BYTES = MAX_PHOTOS * MAX_PHOTO_BYTES + 1024 * 1024
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1024 * 1024


def _name(upload: UploadFile, index: int) -> str:
    return upload.filename or f"#{index}"


def png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk, which the format puts first; InvalidInputError if absent."""
    if len(data) < 24 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
        raise InvalidInputError("expected a PNG starting with its IHDR header, got none")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) a JPEG or PNG declares in its header, without decoding it."""
    if data.startswith(_PNG):
        return png_size(data)
    return codec.check_jpeg(data, len(data), max_pixels=2**62)  # the limit is checked by the caller


def check_pixels(data: bytes, name: str, max_pixels: int = MAX_PHOTO_PIXELS) -> None:
    """400 for a header that cannot be read, 413 for more than `max_pixels` (or an empty image)."""
    try:
        height, width = image_size(data)
    except InvalidInputError as exc:
        kind = "PNG" if data.startswith(_PNG) else "JPEG"
        raise ApiError(400, f"photo {name!r} is not a readable {kind} image ({str(exc).removeprefix('crop: ')})"
                       ) from None
    if height * width > max_pixels or height == 0 or width == 0:
        side = int(max_pixels**0.5)
        raise ApiError(413 if height and width else 400,
                       f"photo {name!r} declares {width}x{height} pixels; expected 1..{max_pixels} "
                       f"(e.g. {side}x{side})")


def _decode_png(data: bytes) -> np.ndarray | None:
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


async def read_photo(upload: UploadFile, index: int, max_bytes: int = MAX_PHOTO_BYTES) -> bytes | np.ndarray:
    """JPEG bytes as uploaded, or a PNG decoded to a BGR image; 400 / 413 / 415 otherwise (413: too many
    bytes or, read from the header before decoding, too many pixels)."""
    name = _name(upload, index)
    parts, size = [], 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"photo {name!r} is larger than {max_bytes // (1024 * 1024)} MiB")
        parts.append(chunk)
    data = b"".join(parts)
    if not data:
        raise ApiError(400, f"photo {name!r} is empty")
    if not data.startswith((_JPEG, _PNG)):
        raise ApiError(415, f"photo {name!r} is not a JPEG or PNG image")
    check_pixels(data, name)
    if data.startswith(_JPEG):
        return data
    if data.startswith(_PNG):  # decoded off the event loop (the hub's gRPC shares it)
        image = await run_in_threadpool(_decode_png, data)
        if image is None:
            raise ApiError(400, f"photo {name!r} is not a readable PNG image")
        return image
    raise ApiError(415, f"photo {name!r} is not a JPEG or PNG image")


async def read_photos(uploads: Sequence[UploadFile] | None, *,
                      max_photos: int = MAX_PHOTOS) -> list[bytes | np.ndarray]:
    if not uploads:
        raise ApiError(400, "photos: expected at least one JPEG or PNG file, got none")
    if len(uploads) > max_photos:
        raise ApiError(400, f"photos: expected at most {max_photos} files, got {len(uploads)}")
    return [await read_photo(upload, i) for i, upload in enumerate(uploads)]


MAX_DRAIN_BYTES = 16 * 1024 * 1024  # an oversized body up to this much over the limit is read before the 413


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes HTTPExceptions from body parsing on unchanged."""


class BodyLimit:
    """ASGI middleware: 413 for a request body over `multipart_bytes` (multipart) or `other_bytes`."""

    def __init__(self, app: ASGIApp, *, multipart_bytes: int = MAX_MULTIPART_BYTES,
                 other_bytes: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.multipart_bytes, self.other_bytes = multipart_bytes, other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = (self.multipart_bytes if headers.get("content-type", "").startswith("multipart/")
                 else self.other_bytes)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # read (and drop) a moderately oversized body before answering: a client still sending it
            # would otherwise see the connection reset instead of the 413 and its message
            if int(declared) <= limit + MAX_DRAIN_BYTES:
                await _drain(receive, int(declared))
            await _reject(send, limit)
            return
        seen = 0
        started = more_body = False

        async def counting_receive() -> Message:
            nonlocal seen, more_body
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                more_body = bool(message.get("more_body", False))
                if seen > limit:
                    raise _TooLarge(413, f"request body is larger than {limit // (1024 * 1024)} MiB")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                if more_body:  # the rest of the body is still coming: read it, or the client sees a reset
                    await _drain(receive)
                await _reject(send, limit)


async def _drain(receive: Receive, max_bytes: int = MAX_DRAIN_BYTES) -> None:
    """Read and drop the rest of a request body, at most `max_bytes` of it."""
    read = 0
    while read <= max_bytes:
        message = await receive()
        read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _reject(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body is larger than {limit // (1024 * 1024)} MiB"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
