"""TensorRT embedder: an engine built from the zoo's ONNX model, cached on disk, run with pycuda.

Written against the TensorRT 10 Python API (named IO tensors, `execute_async_v3`) and UNTESTED:
the TensorRT and pycuda libraries cannot be installed on the machines this project is developed
on. The pure logic — engine cache key, optimisation-profile shapes, IO shape resolution — is kept
in plain functions below and is tested without the library.

An engine is specific to the ONNX file, the TensorRT version, the precision, the batch profile and
the GPU model, so the cache key covers all five; a change to any of them builds a new engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.embed.base import Embedder, EmbedderConfigError
from models.errors import require
from models.zoo import cache_root, get_spec, resolve_model, sha256_of

# -- pure logic (no TensorRT needed) -------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes an engine accepts (`min`..`max`) and the one it is tuned for (`opt`)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) for v in (self.min, self.opt, self.max)):
            raise EmbedderConfigError(f"batch profile: expected ints, got {self}")
        if not 1 <= self.min <= self.opt <= self.max:
            raise EmbedderConfigError(
                f"batch profile: expected 1 <= min <= opt <= max, got min={self.min}, opt={self.opt}, "
                f"max={self.max}"
            )

    def check(self, batch: int) -> None:
        if not self.min <= batch <= self.max:
            raise EmbedderConfigError(
                f"batch of {batch} is outside the engine's profile [{self.min}, {self.max}]; "
                f"rebuild the engine with a wider profile or lower batch_size"
            )


def engine_cache_key(*, onnx_sha256: str, trt_version: str, fp16: bool, profile: BatchProfile,
                     gpu_name: str) -> str:
    """Hex SHA-256 over everything an engine depends on; any change gives a different key."""
    payload = json.dumps({
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "fp16": bool(fp16),
        "profile": [profile.min, profile.opt, profile.max],
        "gpu": gpu_name.strip(),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def engine_cache_path(cache_dir: Path, model_name: str, key: str) -> Path:
    """`<cache_dir>/<model name made file-safe>-<first 16 hex of key>.engine`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_")
    return Path(cache_dir) / f"{safe}-{key[:16]}.engine"


def default_engine_dir() -> Path:
    return cache_root() / "tensorrt"


def profile_shapes(input_shape: Sequence[int], profile: BatchProfile,
                   input_chw: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) NCHW shapes for an optimisation profile.

    `input_shape` is the network input's shape as parsed (-1 for a dynamic dimension). Dimension 0
    is the batch and takes the profile's sizes; a dynamic C/H/W takes `input_chw` (from the spec);
    a static C/H/W must equal it, and a static batch must lie inside the profile.
    """
    if len(input_shape) != 4:
        raise EmbedderConfigError(f"expected an NCHW network input, got shape {tuple(input_shape)}")
    chw: list[int] = []
    for axis, (dim, expected) in enumerate(zip(input_shape[1:], input_chw, strict=True), start=1):
        if dim not in (-1, expected):
            raise EmbedderConfigError(
                f"network input dimension {axis} is {dim}, but the model spec expects {expected}"
            )
        chw.append(expected)
    batch = input_shape[0]
    if batch != -1 and not profile.min == profile.max == batch:
        raise EmbedderConfigError(
            f"the ONNX model has a static batch of {batch}; use a profile of exactly {batch}"
        )
    return tuple((size, *chw) for size in (profile.min, profile.opt, profile.max))


def resolve_io_shape(engine_shape: Sequence[int], batch: int) -> tuple[int, ...]:
    """The concrete shape of an IO tensor for `batch` crops: a dynamic (-1) batch becomes `batch`.

    Only dimension 0 may be dynamic; a static dimension 0 must equal `batch`.
    """
    shape = [int(v) for v in engine_shape]
    if not shape:
        raise EmbedderConfigError("expected an IO tensor with a batch dimension, got a scalar")
    if any(v < 0 for v in shape[1:]):
        raise EmbedderConfigError(f"only the batch dimension may be dynamic, got shape {tuple(shape)}")
    if shape[0] == -1:
        shape[0] = batch
    elif shape[0] != batch:
        raise EmbedderConfigError(f"engine tensor has a static batch of {shape[0]}, got {batch} crops")
    return tuple(shape)


# -- TensorRT (imported only when used) ----------------------------------------------------------


def _gpu_name(cuda: Any, device_id: int) -> str:
    cuda.init()
    return str(cuda.Device(device_id).name())


def build_engine(onnx_path: Path, *, fp16: bool, profile: BatchProfile, input_chw: tuple[int, int, int],
                 workspace_gb: float = 1.0) -> bytes:
    """Parse the ONNX file and build a serialized engine with one dynamic-batch profile."""
    trt = require("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EmbedderConfigError(f"TensorRT could not parse {onnx_path}: {errors}")
    if network.num_inputs != 1:
        raise EmbedderConfigError(f"expected an ONNX model with one input, got {network.num_inputs}")
    network_input = network.get_input(0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(network_input.name, *profile_shapes(tuple(network_input.shape), profile, input_chw))
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EmbedderConfigError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(serialized)


def build_cached_engine(model: str, *, fp16: bool = False, profile: BatchProfile, cache_dir: Path | None = None,
                        device_id: int = 0, workspace_gb: float = 1.0, rebuild: bool = False) -> Path:
    """The cached engine file for zoo ONNX model `model`, built first if it is not cached yet."""
    spec = get_spec(model)
    if spec.format != "onnx":
        raise EmbedderConfigError(f"TensorRT builds engines from ONNX; {model!r} has format {spec.format!r}")
    trt = require("tensorrt")
    cuda = require("pycuda.driver")
    onnx_path = resolve_model(model).path
    key = engine_cache_key(onnx_sha256=sha256_of(onnx_path), trt_version=trt.__version__, fp16=fp16,
                           profile=profile, gpu_name=_gpu_name(cuda, device_id))
    path = engine_cache_path(cache_dir or default_engine_dir(), model, key)
    if path.is_file() and not rebuild:
        return path
    context = cuda.Device(device_id).make_context()  # the builder needs a current CUDA context
    try:
        engine = build_engine(onnx_path, fp16=fp16, profile=profile, input_chw=(3, *spec.input_hw),
                              workspace_gb=workspace_gb)
    finally:
        context.pop()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(engine)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


class TensorRTEmbedder(Embedder):
    """Runs a cached TensorRT engine (see the module docstring: untested here)."""

    name = "tensorrt"
    formats = ("onnx",)

    def _import_runtime(self) -> None:
        self._trt = require("tensorrt")
        self._cuda = require("pycuda.driver")

    def _resolve_path(self) -> Path:
        return Path()  # build_cached_engine resolves the ONNX file itself

    def _load(self, path: Path, *, fp16: bool = False, device_id: int = 0, min_batch: int = 1,
              opt_batch: int | None = None, max_batch: int | None = None, cache_dir: Path | None = None,
              workspace_gb: float = 1.0, rebuild: bool = False) -> None:
        """`fp16`: build with FP16 kernels; `min_batch`/`opt_batch`/`max_batch`: the profile
        (default 1 / batch_size / batch_size); `cache_dir`: where engines are kept."""
        trt, cuda = self._trt, self._cuda
        opt = opt_batch or self.batch_size
        self.profile = BatchProfile(min_batch, opt, max_batch or max(opt, self.batch_size))
        if self.batch_size > self.profile.max:
            raise EmbedderConfigError(f"batch_size {self.batch_size} exceeds the profile's max {self.profile.max}")
        self.model_path = self.engine_path = build_cached_engine(
            self.spec.name, fp16=fp16, profile=self.profile, cache_dir=cache_dir, device_id=device_id,
            workspace_gb=workspace_gb, rebuild=rebuild)

        cuda.init()
        self._context_cuda = cuda.Device(device_id).make_context()
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise EmbedderConfigError(f"TensorRT could not load {self.engine_path}; rebuild it")
            self._context = self._engine.create_execution_context()
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if n not in inputs]
            if len(inputs) != 1 or not outputs:
                raise EmbedderConfigError(f"expected one input and an output, got {inputs} / {outputs}")
            self._input, self._output = inputs[0], outputs[0]
            self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n)))
                            for n in (self._input, self._output)}
            max_in = resolve_io_shape(self._engine.get_tensor_shape(self._input), self.profile.max)
            self._context.set_input_shape(self._input, max_in)
            max_out = resolve_io_shape(self._context.get_tensor_shape(self._output), self.profile.max)
            self._buffers = {
                self._input: cuda.mem_alloc(int(np.prod(max_in)) * self._dtypes[self._input].itemsize),
                self._output: cuda.mem_alloc(int(np.prod(max_out)) * self._dtypes[self._output].itemsize),
            }
            self._stream = cuda.Stream()
        finally:
            self._context_cuda.pop()
        self._infer_lock = threading.Lock()
        self.device = f"cuda:{device_id}"
        self.precision = "fp16" if fp16 else "fp32"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # One execution context, one set of device buffers and one stream: calls take turns.
        with self._infer_lock:
            return self._infer_locked(batch)

    def _infer_locked(self, batch: np.ndarray) -> np.ndarray:
        cuda = self._cuda
        self.profile.check(len(batch))
        self._context_cuda.push()
        try:
            in_shape = resolve_io_shape(self._engine.get_tensor_shape(self._input), len(batch))
            self._context.set_input_shape(self._input, in_shape)
            out_shape = resolve_io_shape(self._context.get_tensor_shape(self._output), len(batch))
            host_in = np.ascontiguousarray(batch, dtype=self._dtypes[self._input])
            host_out = np.empty(out_shape, dtype=self._dtypes[self._output])
            cuda.memcpy_htod_async(self._buffers[self._input], host_in, self._stream)
            for name, buffer in self._buffers.items():
                self._context.set_tensor_address(name, int(buffer))
            if not self._context.execute_async_v3(self._stream.handle):
                raise EmbedderConfigError("TensorRT execution failed")
            cuda.memcpy_dtoh_async(host_out, self._buffers[self._output], self._stream)
            self._stream.synchronize()
        finally:
            self._context_cuda.pop()
        return host_out.astype(np.float32, copy=False)

    def __del__(self) -> None:
        context = getattr(self, "_context_cuda", None)
        if context is not None:
            with contextlib.suppress(Exception):  # at interpreter shutdown nothing useful is left to do
                context.detach()
