"""Re-ID embedding runtimes: one base class, one module per runtime, chosen by name.

    >>> from models.embed import create_embedder
    >>> embedder = create_embedder("reid/osnet-x0.25-msmt17", runtime="onnxruntime")  # doctest: +SKIP
    >>> embeddings = embedder.embed(crops)      # BGR uint8 crops -> Embeddings (N, 512)  # doctest: +SKIP

A runtime module (and its library: onnxruntime, openvino, torch, tensorrt) is imported only when
that runtime is asked for.
"""

from __future__ import annotations

from typing import Any

from models.embed.base import Embedder, l2_normalise
from models.embed.preprocess import preprocess, preprocess_crops, validate_crops
from models.embed.registry import (
    DEFAULT_RUNTIME,
    RUNTIMES,
    EmbedderConfigError,
    runtime_class,
    runtimes_for_format,
)
from models.zoo import get_spec


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
