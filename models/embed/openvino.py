"""OpenVINO embedder: Intel IR (.xml + .bin) or ONNX models, compiled for the CPU by default.

The Intel Open Model Zoo IRs are saved with a fixed batch of 1; the model is reshaped to a dynamic
batch `[?, 3, H, W]` so a whole batch runs in one request. Should a model refuse the reshape, it
keeps its fixed batch and the base class pads the last batch.

Inference precision defaults to f32. OpenVINO's own CPU default is bf16 on CPUs with AVX-512 BF16
or AMX (most current Xeons), which moves vectors away from the other runtimes (cosine ≈ 0.99
instead of > 0.999); pass `inference_precision="bf16"` to trade that for speed deliberately.

One embedder may be called from several threads at once: an OpenVINO infer request serves one
inference at a time ("Infer Request is busy" otherwise), so each call borrows an idle request from
a pool and returns it; the pool grows to the number of threads that ever ran at once. The compiled
model itself is safe to share.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np

from models.embed.base import Embedder, EmbedderConfigError
from models.errors import require

_PRECISIONS = ("f32", "bf16", "f16")


class OpenVinoEmbedder(Embedder):
    name = "openvino"
    formats = ("openvino", "onnx")

    def _import_runtime(self) -> None:
        self._ov = require("openvino")

    def _load(self, path: Path, *, device: str = "CPU", num_threads: int | None = None,
              inference_precision: str = "f32", performance_hint: str = "LATENCY",
              config: dict[str, Any] | None = None) -> None:
        """`device`: an OpenVINO device name ("CPU", "GPU", "AUTO"); `num_threads`: inference threads;
        `inference_precision`: "f32" (default, matches other runtimes), "bf16" or "f16";
        `performance_hint`: "LATENCY" or "THROUGHPUT"; `config`: extra compile properties."""
        ov = self._ov
        if inference_precision not in _PRECISIONS:
            raise EmbedderConfigError(
                f"inference_precision: expected one of {_PRECISIONS}, got {inference_precision!r}"
            )
        core = ov.Core()
        model = core.read_model(str(path))
        if len(model.inputs) != 1:
            raise EmbedderConfigError(f"{self.spec.name}: expected a model with one input, "
                                      f"got {len(model.inputs)}")
        input_port = model.inputs[0]
        static_shape = input_port.get_partial_shape()
        height, width = self.spec.input_hw
        try:
            model.reshape({input_port: ov.PartialShape([-1, 3, height, width])})
        except RuntimeError:
            model = core.read_model(str(path))  # a failed reshape may leave the graph half-changed
            first = static_shape[0]
            self.fixed_batch = first.get_length() if first.is_static else None

        properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": inference_precision,
            "PERFORMANCE_HINT": performance_hint,
        }
        if num_threads is not None:
            properties["INFERENCE_NUM_THREADS"] = int(num_threads)
        properties.update(config or {})
        self._compiled = core.compile_model(model, device, properties)
        self._idle_requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._output = self._compiled.outputs[0]
        self.device = device
        self.precision = inference_precision

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            request = self._idle_requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            result = request.infer({0: batch})
            return np.array(result[self._output], copy=True)
        finally:
            self._idle_requests.put(request)
