"""Re-ID embedding runtimes: one base class, one module per runtime, chosen by name.

    >>> from models.embed import create_embedder
    >>> embedder = create_embedder("reid/osnet-x0.25-msmt17", runtime="onnxruntime")  # doctest: +SKIP
    >>> embeddings = embedder.embed(crops)      # BGR uint8 crops -> Embeddings (N, 512)  # doctest: +SKIP

A runtime module (and its library: onnxruntime, openvino, torch, tensorrt) is imported only when
that runtime is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from models.embed.base import Embedder, EmbedderConfigError, l2_normalise
from models.embed.preprocess import preprocess, preprocess_crops, validate_crops
from models.zoo import get_spec

#: runtime name -> "module:Class", imported on first use
RUNTIMES: dict[str, str] = {
    "onnxruntime": "models.embed.onnxruntime:OnnxRuntimeEmbedder",
    "openvino": "models.embed.openvino:OpenVinoEmbedder",
    "torch": "models.embed.torch:TorchEmbedder",
    "tensorrt": "models.embed.tensorrt:TensorRTEmbedder",
}

#: the runtime used when none is named, by model format
DEFAULT_RUNTIME: dict[str, str] = {
    "openvino": "openvino",
    "onnx": "onnxruntime",
}


def _unknown_runtime(runtime: str) -> EmbedderConfigError:
    close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return EmbedderConfigError(
        f"unknown embedding runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}{hint}"
    )


def runtime_class(runtime: str) -> type[Embedder]:
    """The Embedder subclass registered as `runtime` (imports its module, not its library)."""
    try:
        target = RUNTIMES[runtime]
    except (KeyError, TypeError):
        raise _unknown_runtime(str(runtime)) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def runtimes_for_format(model_format: str) -> list[str]:
    """Names of the runtimes that can open a model of `model_format` ("onnx", "openvino", ...)."""
    return [name for name in RUNTIMES if model_format in runtime_class(name).formats]


def create_embedder(model: str, runtime: str | None = None, **kwargs: Any) -> Embedder:
    """Open zoo model `model` with `runtime` (default: openvino for IR models, onnxruntime for ONNX).

    Keyword arguments go to the runtime: `batch_size` for all, plus e.g. `device`, `num_threads`,
    `fp16` (see each runtime's `_load`).
    """
    spec = get_spec(model)
    if runtime is None:
        runtime = DEFAULT_RUNTIME.get(spec.format)
        if runtime is None:
            raise EmbedderConfigError(
                f"{model!r} has format {spec.format!r}, which no embedding runtime opens "
                f"(embedders open: {', '.join(sorted(DEFAULT_RUNTIME))})"
            )
    return runtime_class(runtime)(model, **kwargs)


__all__ = [
    "DEFAULT_RUNTIME", "RUNTIMES", "Embedder", "EmbedderConfigError", "create_embedder", "l2_normalise",
    "preprocess", "preprocess_crops", "runtime_class", "runtimes_for_format", "validate_crops",
]
