"""Torch embedder: the ONNX model converted to a torch module (onnx2torch), on CPU or CUDA.

With `device="cuda"` and `fp16=True` the module and its inputs run in half precision (the GPU path
measured on the device machine); the output is cast back to float32 before normalisation. FP16 is
only offered on CUDA: half-precision convolutions on a CPU are slow and gain nothing.

`preprocess` says where crops are resized and normalised: "host" is the shared OpenCV/numpy path
(`models.embed.preprocess`) every runtime uses; "device" uploads the uint8 crops (one pinned copy
per batch on CUDA) and resizes/normalises with torch ops on the model's device
(`models.embed.device_preprocess`), so a GPU is not left waiting on the CPU. The default is "device"
on CUDA and "host" on the CPU; both give the same vectors (cosine > 0.999, the parity tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.embed.base import Embedder, EmbedderConfigError
from models.embed.device_preprocess import pack_crops, resize_normalise
from models.errors import require


def infer_ranks(model: Any) -> Any:
    """Shape-infer `model` (an onnx ModelProto) and fill in the rank of each Reshape output.

    onnx2torch needs the rank of some tensors (a BatchNormalization after a Reshape whose target
    shape is computed from `Shape`, as in torchreid's exports). ONNX shape inference leaves such a
    Reshape's output without a rank when the batch is symbolic, although the rank is simply the
    length of the target-shape vector. That rank is recorded (every dimension left unknown, so no
    batch size is baked in) and inference is run again to carry it downstream.
    """
    onnx = require("onnx")
    inferred = onnx.ModelProto()
    inferred.CopyFrom(model)
    del inferred.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(inferred, data_prop=True)
    for _ in range(len(inferred.graph.node)):
        graph = inferred.graph
        infos = {v.name: v for v in (*graph.value_info, *graph.input, *graph.output)}
        lengths = {i.name: int(i.dims[0]) for i in graph.initializer if len(i.dims) == 1}
        for name, info in infos.items():
            dims = info.type.tensor_type.shape.dim
            if info.type.tensor_type.HasField("shape") and len(dims) == 1 and dims[0].HasField("dim_value"):
                lengths[name] = dims[0].dim_value
        changed = False
        for node in graph.node:
            if node.op_type != "Reshape" or node.input[1] not in lengths:
                continue
            info = infos.get(node.output[0])
            if info is None:
                info = graph.value_info.add()
                info.name = node.output[0]
            if info.type.tensor_type.HasField("shape"):
                continue
            source = infos.get(node.input[0])
            if not info.type.tensor_type.elem_type and source is not None:
                info.type.tensor_type.elem_type = source.type.tensor_type.elem_type
            for index in range(lengths[node.input[1]]):
                info.type.tensor_type.shape.dim.add().dim_param = f"{info.name}_d{index}"
            changed = True
        if not changed:
            break
        inferred = onnx.shape_inference.infer_shapes(inferred, data_prop=True)
    return inferred


#: where the torch embedder may resize and normalise crops
PREPROCESS_PLACES = ("host", "device")


class TorchEmbedder(Embedder):
    name = "torch"
    formats = ("onnx",)

    def _import_runtime(self) -> None:
        self._torch = require("torch")
        self._onnx = require("onnx")
        self._onnx2torch = require("onnx2torch")

    def _load(self, path: Path, *, device: str = "cpu", fp16: bool = False, preprocess: str | None = None) -> None:
        """`device`: "cpu", "cuda" or "cuda:N"; `fp16`: half precision (CUDA only); `preprocess`:
        "host" or "device" (default: "device" on CUDA, "host" on the CPU)."""
        torch = self._torch
        if not (device == "cpu" or device.startswith("cuda")):
            raise EmbedderConfigError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if preprocess is None:
            preprocess = "device" if device.startswith("cuda") else "host"
        if preprocess not in PREPROCESS_PLACES:
            raise EmbedderConfigError(f"preprocess: expected one of {PREPROCESS_PLACES}, got {preprocess!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EmbedderConfigError(f"device={device!r} asked for, but torch sees no CUDA GPU here")
        if fp16 and not device.startswith("cuda"):
            raise EmbedderConfigError("fp16=True needs device='cuda'; on the CPU use fp16=False")
        module = self._onnx2torch.convert(infer_ranks(self._onnx.load(str(path))))
        module = module.eval().to(device)
        if fp16:
            module = module.half()
        self._module = module
        self._dtype = torch.float16 if fp16 else torch.float32
        self.device = device
        self.precision = "fp16" if fp16 else "fp32"
        self.preprocess = preprocess

    def _features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.preprocess == "host":
            return super()._features(images)
        torch = self._torch
        on_cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            packed = pack_crops(torch, images, pin_memory=on_cuda).to(self.device, non_blocking=on_cuda)
            inputs = resize_normalise(torch, packed, len(images), self.spec, dtype=self._dtype)
            return self._run_module(inputs)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self._run_module(torch.from_numpy(batch).to(self.device, dtype=self._dtype, non_blocking=True))

    def _run_module(self, inputs: Any) -> np.ndarray:
        output = self._module(inputs)
        if isinstance(output, (tuple, list)):
            output = output[0]
        return output.float().cpu().numpy()
