"""ONNX Runtime embedder: CPU execution provider, or CUDA when asked for and installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.embed.base import Embedder, EmbedderConfigError
from models.errors import require

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntimeEmbedder(Embedder):
    name = "onnxruntime"
    formats = ("onnx",)

    def _import_runtime(self) -> None:
        self._ort = require("onnxruntime")

    def _load(self, path: Path, *, device: str = "cpu", num_threads: int | None = None,
              device_id: int = 0) -> None:
        """`device`: "cpu" or "cuda" (needs onnxruntime-gpu; refused, not silently CPU, when missing);
        `num_threads`: intra-op threads (default: ONNX Runtime's choice)."""
        ort = self._ort
        if device not in _PROVIDERS:
            raise EmbedderConfigError(f"device: expected one of {sorted(_PROVIDERS)}, got {device!r}")
        available = ort.get_available_providers()
        if _PROVIDERS[device] not in available:
            raise EmbedderConfigError(
                f"onnxruntime has no {_PROVIDERS[device]} here (available: {', '.join(available)}); "
                "install onnxruntime-gpu for device='cuda'"
            )
        providers: list[Any] = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        if device == "cuda" and "CUDAExecutionProvider" not in self._session.get_providers():
            raise EmbedderConfigError("onnxruntime could not start the CUDA execution provider "
                                      "(check the CUDA and cuDNN libraries)")

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise EmbedderConfigError(f"{self.spec.name}: expected a model with one input, got {len(inputs)}")
        self._input_name = inputs[0].name
        outputs = [o.name for o in self._session.get_outputs()]
        if self.spec.output_name is not None and self.spec.output_name not in outputs:
            raise EmbedderConfigError(f"{self.spec.name}: expected an output {self.spec.output_name!r}, got {outputs}")
        self._output_name = self.spec.output_name or outputs[0]
        batch_dim = inputs[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.device = device
        self.precision = "fp32"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self._input_name: batch})[0]
