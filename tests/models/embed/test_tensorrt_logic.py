"""The TensorRT backend's pure logic, and its error where TensorRT is not installed.

TensorRT cannot be installed on these machines; the engine build and execution are untested.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
from crossview_testing.tools import load_tool

from models.embed import EmbedderConfigError, create_embedder
from models.embed.tensorrt import (
    BatchProfile,
    TensorRTEmbedder,
    engine_cache_key,
    engine_cache_path,
    profile_shapes,
    resolve_io_shape,
)
from models.errors import MissingDependencyError

BASE_KEY_INPUTS = {
    "onnx_sha256": "61b2604171ef9d58d21758626f83b35a253c3d7123976523a6e03068c3c95d7b",
    "trt_version": "10.3.0",
    "fp16": False,
    "profile": BatchProfile(1, 32, 128),
    "gpu_name": "NVIDIA H100 80GB HBM3",
}


def test_cache_key_is_stable_hex():
    key = engine_cache_key(**BASE_KEY_INPUTS)
    assert key == engine_cache_key(**dict(BASE_KEY_INPUTS))
    assert len(key) == 64
    int(key, 16)


@pytest.mark.parametrize(("field", "value"), [
    ("onnx_sha256", "0" * 64),
    ("trt_version", "10.4.0"),
    ("fp16", True),
    ("profile", BatchProfile(1, 32, 64)),
    ("profile", BatchProfile(1, 16, 128)),
    ("profile", BatchProfile(2, 32, 128)),
    ("gpu_name", "NVIDIA H200"),
])
def test_cache_key_changes_with_each_input(field, value):
    assert engine_cache_key(**{**BASE_KEY_INPUTS, field: value}) != engine_cache_key(**BASE_KEY_INPUTS)


def test_cache_path_is_file_safe_and_keyed():
    key = engine_cache_key(**BASE_KEY_INPUTS)
    path = engine_cache_path(Path("/cache"), "reid/osnet-x0.25-msmt17", key)
    assert path == Path(f"/cache/reid_osnet-x0.25-msmt17-{key[:16]}.engine")


@pytest.mark.parametrize(("values", "ok"), [
    ((1, 32, 128), True),
    ((8, 8, 8), True),
    ((0, 32, 128), False),
    ((1, 64, 32), False),
    ((4, 2, 8), False),
    ((1, 32.0, 128), False),
])
def test_batch_profile_validation(values, ok):
    if ok:
        assert dataclasses.astuple(BatchProfile(*values)) == values
    else:
        with pytest.raises(EmbedderConfigError, match="batch profile"):
            BatchProfile(*values)


def test_batch_profile_check():
    profile = BatchProfile(1, 8, 16)
    profile.check(1)
    profile.check(16)
    with pytest.raises(EmbedderConfigError, match="outside the engine's profile"):
        profile.check(17)


PROFILE_TABLE = [
    # network input shape, profile, expected (min, opt, max) shapes or error fragment
    pytest.param((-1, 3, 256, 128), BatchProfile(1, 32, 128),
                 ((1, 3, 256, 128), (32, 3, 256, 128), (128, 3, 256, 128)), id="dynamic-batch"),
    pytest.param((-1, 3, -1, -1), BatchProfile(2, 4, 8),
                 ((2, 3, 256, 128), (4, 3, 256, 128), (8, 3, 256, 128)), id="dynamic-hw-from-spec"),
    pytest.param((4, 3, 256, 128), BatchProfile(4, 4, 4),
                 ((4, 3, 256, 128),) * 3, id="static-batch-exact-profile"),
    pytest.param((4, 3, 256, 128), BatchProfile(1, 4, 8), "static batch of 4", id="static-batch-wide-profile"),
    pytest.param((-1, 3, 160, 80), BatchProfile(1, 1, 1), "dimension 2 is 160", id="spec-mismatch"),
    pytest.param((-1, 256), BatchProfile(1, 1, 1), "NCHW", id="not-4d"),
]


@pytest.mark.parametrize(("input_shape", "profile", "expected"), PROFILE_TABLE)
def test_profile_shapes(input_shape, profile, expected):
    if isinstance(expected, str):
        with pytest.raises(EmbedderConfigError, match=expected):
            profile_shapes(input_shape, profile, (3, 256, 128))
    else:
        assert profile_shapes(input_shape, profile, (3, 256, 128)) == expected


IO_SHAPE_TABLE = [
    # engine shape, batch, expected shape or error fragment
    pytest.param((-1, 512), 7, (7, 512), id="dynamic-output"),
    pytest.param((-1, 3, 256, 128), 1, (1, 3, 256, 128), id="dynamic-input"),
    pytest.param((4, 512), 4, (4, 512), id="static-match"),
    pytest.param((4, 512), 5, "static batch of 4", id="static-mismatch"),
    pytest.param((-1, -1), 2, "only the batch dimension", id="dynamic-feature"),
    pytest.param((), 2, "scalar", id="scalar"),
]


@pytest.mark.parametrize(("engine_shape", "batch", "expected"), IO_SHAPE_TABLE)
def test_resolve_io_shape(engine_shape, batch, expected):
    if isinstance(expected, str):
        with pytest.raises(EmbedderConfigError, match=expected):
            resolve_io_shape(engine_shape, batch)
    else:
        assert resolve_io_shape(engine_shape, batch) == expected


tensorrt_missing = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                                      reason="TensorRT is installed here; this checks the error without it")


@tensorrt_missing
@pytest.mark.parametrize("construct", [
    pytest.param(lambda: TensorRTEmbedder("reid/osnet-x0.25-msmt17"), id="class"),
    pytest.param(lambda: create_embedder("reid/osnet-x0.25-msmt17", "tensorrt", fp16=True), id="registry"),
])
def test_without_tensorrt_the_error_names_the_extra(construct):
    with pytest.raises(MissingDependencyError, match=r"crossview\[tensorrt\]"):
        construct()


@tensorrt_missing
def test_build_tool_fails_with_the_install_message(capsys):
    tool = load_tool("build_trt_engine")
    assert tool.main(["reid/osnet-x0.25-msmt17", "--fp16"]) == 2
    assert "crossview[tensorrt]" in capsys.readouterr().err
