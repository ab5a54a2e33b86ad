"""Export the trained backbone to ONNX (dynamic batch) and check it against torch before anyone uses it.

The exported file keeps the starting model's input name, output name, layout and preprocessing, so
every runtime feeds it like the model it was trained from. `FileEmbedder` embeds crops with such a
file and a zoo spec's preprocessing (for evaluating a trained model that is not in the zoo).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.embed.base import l2_normalise
from models.embed.preprocess import preprocess
from models.errors import CrossviewError, require
from models.types import Embeddings
from models.zoo import ModelSpec, sha256_of

PARITY_MIN_COSINE = 0.999
OPSET = 17


class ExportError(CrossviewError, RuntimeError):
    """The exported ONNX model does not give the trained torch module's vectors."""


def _point_onnx2torch_at_the_exporter() -> None:
    """onnx2torch reads the export's opset from whatever ``torch.onnx.symbolic_helper`` was when it was
    imported. Imported after transformers or peft, that is torch's backward-compatibility module, which
    lacks ``GLOBALS``, and every export fails with an AttributeError; give it the exporter's own module."""
    import onnx2torch.utils.common as onnx2torch_common

    if not hasattr(onnx2torch_common.symbolic_helper, "GLOBALS"):
        try:  # a private torch module: another torch release may move it
            from torch.onnx._internal.torchscript_exporter import symbolic_helper
        except ImportError as exc:
            import torch

            raise ExportError(f"onnx2torch cannot read the ONNX exporter's opset under torch {torch.__version__} "
                              f"(torch.onnx.symbolic_helper lacks GLOBALS and {exc.name} is gone); import onnx2torch "
                              "before transformers or peft, or use a torch release it supports") from exc
        onnx2torch_common.symbolic_helper = symbolic_helper


def export_onnx(backbone: Any, spec: ModelSpec, path: Path, *, input_name: str, output_name: str,
                check_crops: Sequence[np.ndarray]) -> float:
    """Write `backbone` (eval mode) to `path` with a dynamic batch and return the smallest cosine
    between ONNX Runtime's and torch's vectors on `check_crops` (BGR uint8); ExportError below 0.999."""
    torch = require("torch")
    if len(check_crops) == 0:
        raise ExportError("export: expected at least one crop to check parity on, got none")
    backbone.eval()
    height, width = spec.input_hw
    dummy = torch.zeros(2, 3, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    _point_onnx2torch_at_the_exporter()
    with torch.no_grad(), warnings.catch_warnings():
        # onnx2torch's Shape/Reshape modules warn while traced; the dynamic batch is checked below instead
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the TorchScript exporter is chosen on purpose: it converts onnx2torch's modules as they trace
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            backbone, (dummy,), str(tmp), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, opset_version=OPSET,
            dynamo=False,
        )
    batch = preprocess(list(check_crops), spec)
    with torch.no_grad():
        expected = _first(backbone(torch.from_numpy(batch))).numpy()
    actual = FileEmbedder(tmp, spec).run(batch)
    cosine = float(_row_cosines(expected, actual).min())
    if not cosine >= PARITY_MIN_COSINE:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"export: ONNX Runtime and torch disagree on the exported model "
                          f"(cosine {cosine:.6f}, expected >= {PARITY_MIN_COSINE})")
    tmp.replace(path)
    return cosine


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) else output


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = l2_normalise(np.asarray(a, np.float32).reshape(len(a), -1))
    b = l2_normalise(np.asarray(b, np.float32).reshape(len(b), -1))
    return (a * b).sum(axis=1)


class FileEmbedder:
    """Embeds BGR crops with an .onnx file (ONNX Runtime, CPU) fed as `spec` says; L2-normalised."""

    def __init__(self, path: Path, spec: ModelSpec, *, batch_size: int = 32, name: str | None = None) -> None:
        ort = require("onnxruntime")
        self.path = Path(path)
        self.spec = spec
        self.batch_size = batch_size
        self.fingerprint = f"{name or self.path.stem}@{sha256_of(self.path)[:12]}"
        self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, D) outputs of a preprocessed float32 (N, 3, H, W) batch."""
        out = self._session.run([self._output], {self._input: batch})[0]
        return np.asarray(out, np.float32).reshape(len(batch), -1)

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        if len(images) == 0:
            return Embeddings(np.zeros((0, self.spec.output_dim), np.float32), self.fingerprint)
        parts = [self.run(preprocess(list(images[i:i + self.batch_size]), self.spec))
                 for i in range(0, len(images), self.batch_size)]
        return Embeddings(l2_normalise(np.concatenate(parts)), self.fingerprint)
