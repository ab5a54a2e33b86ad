"""The one place that converts numpy arrays and crossview dataclasses to and from crossview.v1 messages.

Decoders are the wire's gatekeepers: anything malformed (wrong dtype, shape or size, a vector from
another model, an empty, non-JPEG or oversized crop) raises `InvalidInputError` with one line that
says "expected ..., got ...", which servicers map to INVALID_ARGUMENT.

Wire layout of a vector: `data` holds prod(shape) elements of `dtype` in row-major (C) order,
little-endian, whatever the sender's byte order. Decoded vectors are always native float32 arrays
that own their memory.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from models.attributes.types import AttributeProfile, ColourReading, Constraint, TextQuery
from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2

# wire dtype name -> little-endian numpy dtype
_WIRE_NUMPY_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
WIRE_DTYPES: frozenset[str] = frozenset({"float32", "float16"})
"""Dtypes a decoder accepts unless told otherwise."""

DEFAULT_MAX_CROP_BYTES = 512 * 1024
"""Largest JPEG crop accepted or produced; a 256x128 person crop at quality 90 is about 15 KB."""
DEFAULT_MAX_CROP_PIXELS = 4096 * 4096
"""Largest decoded crop (height x width), checked from the JPEG header before decoding."""

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8) and DAC (CC)
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}


# ----------------------------------------------------------------------------------------- vectors
def vector_to_proto(array: np.ndarray, fingerprint: str, *, dtype: str = "float32") -> common_pb2.Vector:
    """Encode one vector (D,) or a batch (N, D) made by the model `fingerprint`, cast to wire `dtype`."""
    if not isinstance(array, np.ndarray):
        raise InvalidInputError(f"vector: expected a numpy array, got {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidInputError(f"vector: expected a floating-point array, got dtype {array.dtype}")
    if dtype not in _WIRE_NUMPY_DTYPES:
        known = sorted(_WIRE_NUMPY_DTYPES)
        raise InvalidInputError(f"vector: expected wire dtype one of {known}, got {dtype!r}")
    _check_shape(array.shape)
    _check_fingerprint_present(fingerprint)
    with np.errstate(over="ignore"):
        wire = np.ascontiguousarray(array, dtype=_WIRE_NUMPY_DTYPES[dtype])
    _check_finite(wire)  # after the cast: float16 overflows to inf above 65504
    return common_pb2.Vector(
        data=wire.tobytes(order="C"), dtype=dtype, shape=list(wire.shape), model_fingerprint=fingerprint
    )


def vector_from_proto(
    msg: common_pb2.Vector,
    expected_dim: int | None = None,
    expected_fingerprint: str | None = None,
    *,
    allowed_dtypes: Collection[str] = WIRE_DTYPES,
) -> np.ndarray:
    """Decode a Vector into a float32 array of its shape, (D,) or (N, D), after checking everything."""
    if not isinstance(msg, common_pb2.Vector):
        raise InvalidInputError(f"vector: expected a crossview.v1.Vector, got {type(msg).__name__}")
    _check_fingerprint_present(msg.model_fingerprint)
    if expected_fingerprint is not None and msg.model_fingerprint != expected_fingerprint:
        raise InvalidInputError(
            f"vector: expected model fingerprint {expected_fingerprint!r}, got {msg.model_fingerprint!r}"
        )
    if msg.dtype not in allowed_dtypes or msg.dtype not in _WIRE_NUMPY_DTYPES:
        raise InvalidInputError(f"vector: expected dtype one of {sorted(allowed_dtypes)}, got {msg.dtype!r}")
    shape = tuple(int(d) for d in msg.shape)
    _check_shape(shape)
    wire_dtype = _WIRE_NUMPY_DTYPES[msg.dtype]
    n_bytes = math.prod(shape) * wire_dtype.itemsize
    if len(msg.data) != n_bytes:
        raise InvalidInputError(
            f"vector: expected {n_bytes} bytes for {msg.dtype} shape {list(shape)}, got {len(msg.data)}"
        )
    if expected_dim is not None and shape[-1] != expected_dim:
        raise InvalidInputError(f"vector: expected dimension {expected_dim}, got shape {list(shape)}")
    array = np.frombuffer(msg.data, dtype=wire_dtype).reshape(shape).astype(np.float32)  # copies
    _check_finite(array)
    return array


def embeddings_to_proto(embeddings: Embeddings, *, dtype: str = "float32") -> common_pb2.Vector:
    """Encode Embeddings as one (N, D) Vector carrying their model fingerprint."""
    return vector_to_proto(embeddings.vectors, embeddings.model_fingerprint, dtype=dtype)


def embeddings_from_proto(
    msg: common_pb2.Vector,
    expected_dim: int | None = None,
    expected_fingerprint: str | None = None,
    *,
    allowed_dtypes: Collection[str] = WIRE_DTYPES,
) -> Embeddings:
    """Decode a Vector into Embeddings; a single (D,) vector becomes a batch of one, (1, D)."""
    array = vector_from_proto(msg, expected_dim, expected_fingerprint, allowed_dtypes=allowed_dtypes)
    return Embeddings(array.reshape(-1, array.shape[-1]), msg.model_fingerprint)


def _check_shape(shape: Sequence[int]) -> None:
    if len(shape) not in (1, 2) or any(d < 0 for d in shape) or shape[-1] == 0:
        raise InvalidInputError(f"vector: expected shape [D] or [N, D] with D > 0, got {list(shape)}")


def _check_fingerprint_present(fingerprint: object) -> None:
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise InvalidInputError(f"vector: expected a non-empty model fingerprint, got {fingerprint!r}")


def _check_finite(array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise InvalidInputError("vector: expected finite values, got NaN or inf")


# ------------------------------------------------------------------------------------------- crops
def crop_to_jpeg(image: np.ndarray, quality: int = 90, max_bytes: int = DEFAULT_MAX_CROP_BYTES) -> bytes:
    """Encode a BGR uint8 (H, W, 3) image as JPEG of at most `max_bytes`.

    When the result at `quality` is too large, quality is lowered in steps of 15 (not below 30)
    before giving up with InvalidInputError.
    """
    _check_image(image)
    if not 1 <= quality <= 100:
        raise InvalidInputError(f"quality: expected 1..100, got {quality}")
    image = np.ascontiguousarray(image)
    size = 0
    for q in [quality, *range(quality - 15, 29, -15)]:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise InvalidInputError(f"crop: expected an encodable image, got shape {image.shape}")
        size = len(buf)
        if size <= max_bytes:
            return buf.tobytes()
    raise InvalidInputError(
        f"crop: expected a JPEG of at most {max_bytes} bytes, got {size} even at quality {q}"
    )


def jpeg_to_image(
    data: bytes, max_bytes: int = DEFAULT_MAX_CROP_BYTES, *, max_pixels: int = DEFAULT_MAX_CROP_PIXELS
) -> np.ndarray:
    """Decode JPEG bytes into a BGR uint8 (H, W, 3) image, refusing empty, non-JPEG, truncated,
    oversized (in bytes or, read from the header before decoding, in pixels) and corrupt data."""
    data = bytes(data) if isinstance(data, bytearray | memoryview) else data
    check_jpeg(data, max_bytes, max_pixels=max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError("crop: expected a decodable JPEG, got corrupt data")
    return image


def check_jpeg(
    data: bytes, max_bytes: int = DEFAULT_MAX_CROP_BYTES, *, max_pixels: int = DEFAULT_MAX_CROP_PIXELS
) -> tuple[int, int]:
    """(height, width) of JPEG bytes, after every check of `jpeg_to_image` short of decoding the image
    (so corrupt entropy-coded data passes): for crops that are kept but not looked at."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"crop: expected JPEG bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidInputError("crop: expected JPEG bytes, got an empty crop")
    if len(data) > max_bytes:
        raise InvalidInputError(f"crop: expected at most {max_bytes} bytes, got {len(data)}")
    if not data.startswith(_JPEG_SOI):
        head = data[:4].hex(" ")
        raise InvalidInputError(f"crop: expected a JPEG (starting FF D8), got bytes starting {head}")
    if not data.rstrip(b"\x00").endswith(_JPEG_EOI):
        raise InvalidInputError("crop: expected a complete JPEG ending FF D9, got truncated data")
    height, width = _jpeg_size(data)
    if height * width > max_pixels:
        raise InvalidInputError(f"crop: expected at most {max_pixels} pixels, got {width}x{height}")
    return height, width


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the JPEG's start-of-frame header, without decoding the image."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF_MARKERS and pos + 9 <= len(data):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return height, width
        if marker == 0xDA or length < 2:  # start of scan before any frame header, or a bad length
            break
        pos += 2 + length
    raise InvalidInputError("crop: expected a JPEG frame header, got none")


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"crop: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"crop: expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"crop: expected a non-empty image, got an empty crop of shape {image.shape}")


def crop_to_proto(
    crop: Crop, *, jpeg_quality: int = 90, max_bytes: int = DEFAULT_MAX_CROP_BYTES
) -> common_pb2.CropImage:
    """Encode a Crop (image as JPEG, plus camera, time, box, confidence and quality)."""
    x1, y1, x2, y2 = crop.xyxy
    return common_pb2.CropImage(
        jpeg=crop_to_jpeg(crop.image, jpeg_quality, max_bytes),
        width=crop.image.shape[1],
        height=crop.image.shape[0],
        camera_id=crop.camera_id,
        captured_at=seconds_to_timestamp(crop.timestamp_s),
        box=common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
        confidence=crop.confidence,
        quality=crop.quality,
    )


def crop_from_proto(
    msg: common_pb2.CropImage,
    *,
    default_camera_id: str = "",
    max_bytes: int = DEFAULT_MAX_CROP_BYTES,
    max_pixels: int = DEFAULT_MAX_CROP_PIXELS,
) -> Crop:
    """Decode a CropImage into a Crop; a crop without a camera id gets `default_camera_id`."""
    image = jpeg_to_image(msg.jpeg, max_bytes, max_pixels=max_pixels)
    declared = (msg.height, msg.width)
    if declared != (0, 0) and declared != image.shape[:2]:
        got = f"{image.shape[1]}x{image.shape[0]}"
        raise InvalidInputError(f"crop: expected {msg.width}x{msg.height} pixels as declared, got {got}")
    box = msg.box
    return Crop(
        image=image,
        camera_id=msg.camera_id or default_camera_id,
        timestamp_s=timestamp_to_seconds(msg.captured_at),
        xyxy=(box.x1, box.y1, box.x2, box.y2),
        confidence=msg.confidence,
        quality=msg.quality,
    )


# ------------------------------------------------------------------------------------------ time
def seconds_to_timestamp(seconds: float) -> Timestamp:
    """Seconds since the Unix epoch -> Timestamp (nanosecond resolution)."""
    if not math.isfinite(seconds):
        raise InvalidInputError(f"time: expected finite seconds, got {seconds}")
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def timestamp_to_seconds(ts: Timestamp) -> float:
    """Timestamp -> seconds since the Unix epoch; an unset Timestamp is 0.0."""
    return ts.seconds + ts.nanos * 1e-9


def time_range_to_proto(start_s: float, end_s: float) -> common_pb2.TimeRange:
    if end_s < start_s:
        raise InvalidInputError(f"time range: expected end >= start ({start_s}), got {end_s}")
    return common_pb2.TimeRange(start=seconds_to_timestamp(start_s), end=seconds_to_timestamp(end_s))


def time_range_from_proto(msg: common_pb2.TimeRange) -> tuple[float, float]:
    start_s, end_s = timestamp_to_seconds(msg.start), timestamp_to_seconds(msg.end)
    if end_s < start_s:
        raise InvalidInputError(f"time range: expected end >= start ({start_s}), got {end_s}")
    return start_s, end_s


# -------------------------------------------------------------------------------------- short list
def short_list_to_proto(
    tracklet: Tracklet,
    candidates: Sequence[tuple[str, float] | tuple[str, float, float]],
    *,
    idempotency_key: str,
    edge_id: str,
    created_s: float,
    gallery_version: int = 0,
    jpeg_quality: int = 90,
    max_crop_bytes: int = DEFAULT_MAX_CROP_BYTES,
) -> edge_to_hub_pb2.ShortList:
    """Encode a tracklet and its ranked candidates, (identity id, stage-1 distance[, cosine distance]) best first."""
    if not idempotency_key:
        raise InvalidInputError("short list: expected a non-empty idempotency key")
    if tracklet.embedding is None:
        raise InvalidInputError(f"short list: expected tracklet {tracklet.tracklet_id} to have an embedding")
    return edge_to_hub_pb2.ShortList(
        idempotency_key=idempotency_key,
        edge_id=edge_id,
        camera_id=tracklet.camera_id,
        tracklet_id=tracklet.tracklet_id,
        track_id=tracklet.track_id,
        span=time_range_to_proto(tracklet.start_s, tracklet.end_s),
        query_crops=[
            crop_to_proto(c, jpeg_quality=jpeg_quality, max_bytes=max_crop_bytes) for c in tracklet.crops
        ],
        query_vector=embeddings_to_proto(tracklet.embedding),
        candidates=[
            edge_to_hub_pb2.Candidate(identity_id=c[0], stage1_distance=c[1], rank=rank,
                                      cosine_distance=c[2] if len(c) > 2 else None)
            for rank, c in enumerate(candidates)
        ],
        created_at=seconds_to_timestamp(created_s),
        gallery_version=gallery_version,
    )


def short_list_from_proto(
    msg: edge_to_hub_pb2.ShortList,
    *,
    expected_dim: int | None = None,
    expected_fingerprint: str | None = None,
    max_crop_bytes: int = DEFAULT_MAX_CROP_BYTES,
) -> tuple[Tracklet, list[tuple[str, float]]]:
    """Decode a ShortList into its Tracklet and its candidates, (identity id, distance) by rank.

    Envelope fields (idempotency key, edge id, created time, gallery version) are read off `msg`.
    """
    if not msg.idempotency_key:
        raise InvalidInputError("short list: expected a non-empty idempotency key")
    if not msg.HasField("query_vector"):
        raise InvalidInputError("short list: expected a query vector, got none")
    embedding = embeddings_from_proto(msg.query_vector, expected_dim, expected_fingerprint)
    if len(embedding) != 1:
        raise InvalidInputError(f"short list: expected one query vector, got {len(embedding)}")
    start_s, end_s = time_range_from_proto(msg.span)
    crops = tuple(
        crop_from_proto(c, default_camera_id=msg.camera_id, max_bytes=max_crop_bytes) for c in msg.query_crops
    )
    tracklet = Tracklet(
        tracklet_id=msg.tracklet_id,
        camera_id=msg.camera_id,
        track_id=msg.track_id,
        start_s=start_s,
        end_s=end_s,
        crops=crops,
        embedding=embedding,
    )
    candidates = []
    for c in sorted(msg.candidates, key=lambda c: c.rank):
        if not c.identity_id or not math.isfinite(c.stage1_distance):
            raise InvalidInputError(
                f"short list: expected candidates with an identity id and a finite distance, "
                f"got {c.identity_id!r} at {c.stage1_distance}"
            )
        candidates.append((c.identity_id, float(c.stage1_distance)))
    return tracklet, candidates


# ------------------------------------------------------------------- attributes and text search
def attributes_to_proto(profile: AttributeProfile) -> common_pb2.Attributes:
    """Encode a tracklet's attribute profile (issue 15)."""
    if not isinstance(profile, AttributeProfile):
        raise InvalidInputError(f"attributes: expected an AttributeProfile, got {type(profile).__name__}")
    msg = common_pb2.Attributes(probabilities=dict(profile.probabilities), crops=profile.crops)
    for part in ("upper", "lower"):
        reading = profile.colour(part)
        if reading is not None:
            getattr(msg, part).CopyFrom(common_pb2.ColourReading(name=reading.name, confidence=reading.confidence))
    return msg


def attributes_from_proto(msg: common_pb2.Attributes) -> AttributeProfile:
    """Decode an Attributes message; InvalidInputError for unknown names or probabilities outside [0, 1].

    float32 on the wire: probabilities and confidences come back rounded to float32."""
    colours = {part: ColourReading(getattr(msg, part).name, float(getattr(msg, part).confidence))
               if msg.HasField(part) else None for part in ("upper", "lower")}
    return AttributeProfile({name: float(p) for name, p in msg.probabilities.items()}, colours["upper"],
                            colours["lower"], crops=int(msg.crops) or 1)


def text_search_to_proto(query: TextQuery) -> hub_to_edge_pb2.TextSearch:
    """Encode a parsed description as a text job's TextSearch (the ignored words stay at the hub)."""
    if not isinstance(query, TextQuery):
        raise InvalidInputError(f"text search: expected a TextQuery, got {type(query).__name__}")
    return hub_to_edge_pb2.TextSearch(text=query.text, constraints=[
        hub_to_edge_pb2.TextConstraint(kind=c.kind, name=c.name, part=c.part or "", positive=c.positive,
                                       source=c.source) for c in query.constraints])


def text_search_from_proto(msg: hub_to_edge_pb2.TextSearch, *, max_constraints: int = 64) -> TextQuery:
    """Decode a TextSearch; InvalidInputError for no constraints, too many, or unknown names or parts."""
    if len(msg.constraints) > max_constraints:
        raise InvalidInputError(f"text search: expected at most {max_constraints} constraints, "
                                f"got {len(msg.constraints)}")
    return TextQuery(msg.text, tuple(Constraint(c.kind, c.name, c.part or None, bool(c.positive), c.source)
                                     for c in msg.constraints))
