"""Errors shared by every crossview package, and lazy import of heavy optional runtimes."""

from __future__ import annotations

import importlib
from types import ModuleType


class CrossviewError(Exception):
    """Base class: an error whose message is one clear line meant for a user."""


class MissingDependencyError(CrossviewError, ImportError):
    """An optional runtime is not installed; the message names the install command."""


class ModelNotFoundError(CrossviewError, LookupError):
    """A model or data file cannot be found locally and cannot be downloaded."""


class ChecksumMismatchError(CrossviewError, ValueError):
    """A file's SHA-256 differs from the one the zoo manifest records."""


class InvalidInputError(CrossviewError, ValueError):
    """Input of the wrong shape, dtype, size or content."""


# module name -> pip extra that provides it
_EXTRA_FOR_MODULE = {
    "openvino": "openvino",
    "ultralytics": "detect",
    "tensorrt": "tensorrt",
    "pycuda": "tensorrt",
    "transformers": "mllm",
    "accelerate": "mllm",
    "psycopg": "postgres",
    "faiss": "ann",
    "onnx": "torch",
    "onnx2torch": "torch",
    "torch": "torch",
}


def require(module: str) -> ModuleType:
    """Import an optional runtime, or raise an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR_MODULE.get(top)
        hint = f"pip install 'crossview[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"{module} is not installed ({exc}); install it with: {hint}") from exc
