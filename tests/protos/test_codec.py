"""protos.codec: round trips, and a table of bad input with the error each must raise."""

from __future__ import annotations

import re
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet
from protos import codec
from protos.crossview.v1 import common_pb2

FP = "osnet_x0_25:sha256:0123abcd"


def _vectors(n: int = 3, d: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _image(h: int = 128, w: int = 64) -> np.ndarray:
    """A smooth BGR test image (compresses well, survives JPEG almost unchanged)."""
    y, x = np.indices((h, w))
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=-1).astype(np.uint8)


def _jpeg(h: int = 128, w: int = 64) -> bytes:
    return codec.crop_to_jpeg(_image(h, w))


def _vector_msg(**changes: object) -> common_pb2.Vector:
    msg = codec.vector_to_proto(_vectors(2, 4), FP)
    for name, value in changes.items():
        if name == "shape":
            del msg.shape[:]
            msg.shape.extend(value)  # type: ignore[arg-type]
        else:
            setattr(msg, name, value)
    return msg


def _crop(**changes: object) -> Crop:
    fields: dict[str, object] = dict(
        image=_image(), camera_id="cam-1", timestamp_s=1_700_000_000.25, xyxy=(10.0, 20.0, 74.0, 148.0),
        confidence=0.9, quality=0.5,
    )
    fields.update(changes)
    return Crop(**fields)  # type: ignore[arg-type]


def _tracklet(embedding: Embeddings | None = None) -> Tracklet:
    return Tracklet(
        tracklet_id="edge-a/cam-1/42", camera_id="cam-1", track_id=42, start_s=1_700_000_000.0,
        end_s=1_700_000_003.5, crops=(_crop(), _crop(quality=0.4)),
        embedding=embedding if embedding is not None else Embeddings(_vectors(1, 8), FP),
    )


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("shape", [(8,), (1, 8), (5, 8), (0, 8)])
def test_vector_round_trip_float32(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    msg = codec.vector_to_proto(array, FP)
    assert (msg.dtype, list(msg.shape), msg.model_fingerprint) == ("float32", list(shape), FP)
    out = codec.vector_from_proto(msg, expected_dim=8, expected_fingerprint=FP)
    assert out.dtype == np.float32 and out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(out, array)


def test_vector_float16_on_the_wire_decodes_to_float32() -> None:
    array = _vectors()
    msg = codec.vector_to_proto(array, FP, dtype="float16")
    assert msg.dtype == "float16" and len(msg.data) == array.size * 2
    out = codec.vector_from_proto(msg)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, array, atol=1e-3)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a.astype(">f4"), id="big-endian"),
        pytest.param(lambda a: np.asfortranarray(a), id="fortran-order"),
        pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided-view"),
        pytest.param(lambda a: a.astype(np.float64), id="float64-cast"),
    ],
)
def test_vector_wire_bytes_are_little_endian_row_major(make: Callable[[np.ndarray], np.ndarray]) -> None:
    array = _vectors()
    msg = codec.vector_to_proto(make(array), FP)
    assert msg.data == array.astype("<f4").tobytes(order="C")
    np.testing.assert_array_equal(codec.vector_from_proto(msg), array)


def test_embeddings_round_trip() -> None:
    emb = Embeddings(_vectors(4, 16), FP)
    out = codec.embeddings_from_proto(codec.embeddings_to_proto(emb), expected_dim=16, expected_fingerprint=FP)
    assert out.model_fingerprint == FP
    np.testing.assert_array_equal(out.vectors, emb.vectors)


def test_single_vector_becomes_a_batch_of_one() -> None:
    out = codec.embeddings_from_proto(codec.vector_to_proto(_vectors(1, 8)[0], FP))
    assert out.vectors.shape == (1, 8)


def test_allowed_dtypes_are_configurable() -> None:
    msg = codec.vector_to_proto(_vectors(), FP, dtype="float64")
    assert codec.vector_from_proto(msg, allowed_dtypes={"float64"}).dtype == np.float32
    with pytest.raises(InvalidInputError, match="expected dtype one of"):
        codec.vector_from_proto(msg)


def test_jpeg_round_trip() -> None:
    image = _image()
    data = codec.crop_to_jpeg(image)
    assert data[:2] == b"\xff\xd8"
    out = codec.jpeg_to_image(data)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image.astype(int)).mean() < 3


def test_jpeg_quality_is_lowered_to_fit_max_bytes() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    full = len(codec.crop_to_jpeg(noise, quality=90))
    small = codec.crop_to_jpeg(noise, quality=90, max_bytes=full - 1)
    assert len(small) < full
    assert codec.jpeg_to_image(small).shape == noise.shape


def test_crop_round_trip() -> None:
    crop = _crop()
    msg = codec.crop_to_proto(crop)
    assert (msg.width, msg.height, msg.camera_id) == (64, 128, "cam-1")
    out = codec.crop_from_proto(msg)
    assert out.image.shape == crop.image.shape
    assert (out.camera_id, out.xyxy) == (crop.camera_id, crop.xyxy)
    assert out.timestamp_s == pytest.approx(crop.timestamp_s, abs=1e-6)
    assert (out.confidence, out.quality) == pytest.approx((crop.confidence, crop.quality))


@pytest.mark.parametrize("seconds", [0.0, 1.5, 1_700_000_000.123456, -2.25])
def test_timestamp_round_trip(seconds: float) -> None:
    assert codec.timestamp_to_seconds(codec.seconds_to_timestamp(seconds)) == pytest.approx(seconds, abs=1e-6)


def test_short_list_round_trip() -> None:
    tracklet = _tracklet()
    candidates = [("id-7", 0.21), ("id-3", 0.35), ("id-9", 0.5)]
    msg = codec.short_list_to_proto(
        tracklet, candidates, idempotency_key="k-1", edge_id="edge-a", created_s=1_700_000_004.0,
        gallery_version=12,
    )
    assert [(c.identity_id, c.rank) for c in msg.candidates] == [("id-7", 0), ("id-3", 1), ("id-9", 2)]
    assert msg.query_vector.model_fingerprint == FP and msg.gallery_version == 12

    wire = type(msg).FromString(msg.SerializeToString())
    wire.candidates.reverse()  # decoding orders by rank, not by position
    out, out_candidates = codec.short_list_from_proto(wire, expected_dim=8, expected_fingerprint=FP)
    assert (out.tracklet_id, out.camera_id, out.track_id) == ("edge-a/cam-1/42", "cam-1", 42)
    assert (out.start_s, out.end_s) == pytest.approx((tracklet.start_s, tracklet.end_s))
    assert len(out.crops) == 2 and out.crops[1].quality == pytest.approx(0.4)
    assert out.embedding is not None and tracklet.embedding is not None
    np.testing.assert_array_equal(out.embedding.vectors, tracklet.embedding.vectors)
    assert [c for c, _ in out_candidates] == ["id-7", "id-3", "id-9"]
    assert [d for _, d in out_candidates] == pytest.approx([0.21, 0.35, 0.5])


def test_short_list_carries_each_candidate_s_cosine_distance() -> None:
    """(identity, stage-1 distance, cosine distance) triples set the optional field; pairs leave it unset."""
    candidates = [("id-7", 0.21, 0.125), ("id-3", 0.35), ("id-9", 0.5, 1.75)]
    msg = codec.short_list_to_proto(_tracklet(), candidates, idempotency_key="k-1", edge_id="edge-a",
                                    created_s=1_700_000_004.0)
    wire = type(msg).FromString(msg.SerializeToString())
    assert [c.HasField("cosine_distance") for c in wire.candidates] == [True, False, True]
    assert [c.cosine_distance for c in wire.candidates] == [0.125, 0.0, 1.75]
    assert [(c.identity_id, c.rank) for c in wire.candidates] == [("id-7", 0), ("id-3", 1), ("id-9", 2)]
    _, out_candidates = codec.short_list_from_proto(wire, expected_dim=8, expected_fingerprint=FP)
    assert [c for c, _ in out_candidates] == ["id-7", "id-3", "id-9"]
    assert [d for _, d in out_candidates] == pytest.approx([0.21, 0.35, 0.5])


# ------------------------------------------------------------------------------------- bad input
def _png() -> bytes:
    return cv2.imencode(".png", _image())[1].tobytes()


def _short_list(**changes: object) -> object:
    msg = codec.short_list_to_proto(
        _tracklet(), [("id-1", 0.2)], idempotency_key="k", edge_id="e", created_s=1_700_000_004.0
    )
    for name, value in changes.items():
        if name == "clear":
            msg.ClearField(value)  # type: ignore[arg-type]
        elif name == "query_vector":
            msg.query_vector.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(msg, name, value)
    return msg


def _declared_size_mismatch() -> object:
    msg = codec.crop_to_proto(_crop())
    msg.width = 65
    return codec.crop_from_proto(msg)


BAD_INPUT: list[tuple[str, Callable[[], object], str]] = [
    # --- vector_from_proto
    ("wrong dtype", lambda: codec.vector_from_proto(_vector_msg(dtype="float64")),
     "vector: expected dtype one of ['float16', 'float32'], got 'float64'"),
    ("unknown dtype", lambda: codec.vector_from_proto(_vector_msg(dtype="int8")),
     "expected dtype one of ['float16', 'float32'], got 'int8'"),
    ("dtype not allowed here", lambda: codec.vector_from_proto(
        codec.vector_to_proto(_vectors(), FP, dtype="float16"), allowed_dtypes={"float32"}),
     "expected dtype one of ['float32'], got 'float16'"),
    ("3-d shape", lambda: codec.vector_from_proto(_vector_msg(shape=[2, 2, 2])),
     "expected shape [D] or [N, D] with D > 0, got [2, 2, 2]"),
    ("no shape", lambda: codec.vector_from_proto(_vector_msg(shape=[])),
     "expected shape [D] or [N, D] with D > 0, got []"),
    ("zero dimension", lambda: codec.vector_from_proto(_vector_msg(shape=[8, 0], data=b"")),
     "with D > 0, got [8, 0]"),
    ("negative dimension", lambda: codec.vector_from_proto(_vector_msg(shape=[-2, -4])),
     "with D > 0, got [-2, -4]"),
    ("shape does not match bytes", lambda: codec.vector_from_proto(_vector_msg(shape=[3, 4])),
     "vector: expected 48 bytes for float32 shape [3, 4], got 32"),
    ("truncated bytes", lambda: codec.vector_from_proto(_vector_msg(data=_vector_msg().data[:-1])),
     "vector: expected 32 bytes for float32 shape [2, 4], got 31"),
    ("wrong dimension", lambda: codec.vector_from_proto(_vector_msg(), expected_dim=512),
     "vector: expected dimension 512, got shape [2, 4]"),
    ("fingerprint mismatch", lambda: codec.vector_from_proto(_vector_msg(), expected_fingerprint="other:1"),
     f"vector: expected model fingerprint 'other:1', got '{FP}'"),
    ("missing fingerprint", lambda: codec.vector_from_proto(_vector_msg(model_fingerprint="")),
     "vector: expected a non-empty model fingerprint, got ''"),
    ("NaN on the wire", lambda: codec.vector_from_proto(
        _vector_msg(data=np.full(8, np.nan, "<f4").tobytes())),
     "vector: expected finite values, got NaN or inf"),
    ("not a Vector", lambda: codec.vector_from_proto(common_pb2.CropImage()),  # type: ignore[arg-type]
     "vector: expected a crossview.v1.Vector, got CropImage"),
    ("embeddings fingerprint mismatch", lambda: codec.embeddings_from_proto(_vector_msg(), None, "other:1"),
     "expected model fingerprint 'other:1'"),
    # --- vector_to_proto
    ("encode ints", lambda: codec.vector_to_proto(np.ones((2, 4), np.int64), FP),
     "vector: expected a floating-point array, got dtype int64"),
    ("encode 3-d", lambda: codec.vector_to_proto(np.ones((2, 2, 2), np.float32), FP),
     "expected shape [D] or [N, D] with D > 0, got [2, 2, 2]"),
    ("encode without fingerprint", lambda: codec.vector_to_proto(_vectors(), " "),
     "expected a non-empty model fingerprint, got ' '"),
    ("encode float16 overflow", lambda: codec.vector_to_proto(np.full(4, 1e6, np.float32), FP, dtype="float16"),
     "expected finite values, got NaN or inf"),
    ("encode to int8", lambda: codec.vector_to_proto(_vectors(), FP, dtype="int8"),
     "vector: expected wire dtype one of ['float16', 'float32', 'float64'], got 'int8'"),
    # --- jpeg_to_image / crop_from_proto
    ("empty crop", lambda: codec.jpeg_to_image(b""), "crop: expected JPEG bytes, got an empty crop"),
    ("non-JPEG (PNG)", lambda: codec.jpeg_to_image(_png()),
     "crop: expected a JPEG (starting FF D8), got bytes starting 89 50 4e 47"),
    ("oversized crop", lambda: codec.jpeg_to_image(_jpeg(), max_bytes=100),
     "crop: expected at most 100 bytes, got"),
    ("truncated JPEG", lambda: codec.jpeg_to_image(_jpeg()[:-200]),
     "crop: expected a complete JPEG ending FF D9, got truncated data"),
    ("JPEG markers around garbage", lambda: codec.jpeg_to_image(b"\xff\xd8garbage\xff\xd9"),
     "crop: expected a JPEG frame header, got none"),
    ("too many pixels", lambda: codec.jpeg_to_image(_jpeg(128, 64), max_pixels=1000),
     "crop: expected at most 1000 pixels, got 64x128"),
    ("not bytes", lambda: codec.jpeg_to_image("abc"),  # type: ignore[arg-type]
     "crop: expected JPEG bytes, got str"),
    ("declared size mismatch", _declared_size_mismatch,
     "crop: expected 65x128 pixels as declared, got 64x128"),
    # --- crop_to_jpeg
    ("encode empty image", lambda: codec.crop_to_jpeg(np.zeros((0, 5, 3), np.uint8)),
     "crop: expected a non-empty image, got an empty crop of shape (0, 5, 3)"),
    ("encode float image", lambda: codec.crop_to_jpeg(_image().astype(np.float32)),
     "crop: expected uint8 (H, W, 3), got float32 (128, 64, 3)"),
    ("encode grey image", lambda: codec.crop_to_jpeg(np.zeros((8, 8), np.uint8)),
     "crop: expected uint8 (H, W, 3), got uint8 (8, 8)"),
    ("encode bad quality", lambda: codec.crop_to_jpeg(_image(), quality=0), "quality: expected 1..100, got 0"),
    ("encode too large", lambda: codec.crop_to_jpeg(_image(), max_bytes=10),
     "crop: expected a JPEG of at most 10 bytes, got"),
    # --- time and short lists
    ("time range backwards", lambda: codec.time_range_to_proto(5.0, 4.0),
     "time range: expected end >= start (5.0), got 4.0"),
    ("non-finite time", lambda: codec.seconds_to_timestamp(float("nan")), "time: expected finite seconds, got nan"),
    ("short list without embedding", lambda: codec.short_list_to_proto(
        Tracklet("t", "cam-1", 1, 0.0, 1.0), [], idempotency_key="k", edge_id="e", created_s=0.0),
     "short list: expected tracklet t to have an embedding"),
    ("short list without key", lambda: codec.short_list_from_proto(_short_list(idempotency_key="")),
     "short list: expected a non-empty idempotency key"),
    ("short list without vector", lambda: codec.short_list_from_proto(_short_list(clear="query_vector")),
     "short list: expected a query vector, got none"),
    ("short list of another model", lambda: codec.short_list_from_proto(
        _short_list(), expected_fingerprint="other:1"),
     f"vector: expected model fingerprint 'other:1', got '{FP}'"),
    ("short list with two query vectors", lambda: codec.short_list_from_proto(
        _short_list(query_vector=codec.vector_to_proto(_vectors(2, 8), FP))),
     "short list: expected one query vector, got 2"),
]


@pytest.mark.parametrize(("case", "call", "expected"), BAD_INPUT, ids=[row[0] for row in BAD_INPUT])
def test_bad_input_is_refused_with_one_clear_line(case: str, call: Callable[[], object], expected: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(expected)) as info:
        call()
    assert "\n" not in str(info.value)
