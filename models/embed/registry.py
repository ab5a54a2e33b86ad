"""The runtime registry: runtime name → embedder class, imported on first use.

It imports no runtime and not ``base`` (only for type checking), so ``base`` can ask it which
runtimes open a model format without an import loop.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from models.errors import CrossviewError

if TYPE_CHECKING:
    from models.embed.base import Embedder


class EmbedderConfigError(CrossviewError, ValueError):
    """A runtime that does not exist, cannot open this model's format, or lacks the asked device."""


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
