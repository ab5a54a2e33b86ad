"""The model zoo: model names → files, preprocessing, licence, URL and checksum.

    >>> from models.zoo import get_spec, resolve_model
    >>> spec = get_spec("reid/intel-0288")
    >>> path = resolve_model("reid/intel-0288").path   # the file a runtime opens
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelNotFoundError
from models.zoo.manifest import MODELS, SAMPLES
from models.zoo.resolve import (
    DATA_ENV,
    MODELS_ENV,
    ResolvedFile,
    cache_root,
    download,
    resolve_file,
    sha256_of,
    verify,
)
from models.zoo.spec import ModelSpec, RemoteFile

_BY_NAME = {spec.name: spec for spec in MODELS}
_SAMPLES_BY_NAME = {Path(s.relpath).name: s for s in SAMPLES}


def model_names() -> list[str]:
    return sorted(_BY_NAME)


def get_spec(name: str) -> ModelSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BY_NAME, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known models: {', '.join(model_names())}"
        raise ModelNotFoundError(f"unknown model {name!r}{hint}") from None


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    path: Path  # what a runtime opens: the primary file, or the model folder
    sources: tuple[str, ...]  # where each file came from

    @property
    def source(self) -> str:
        return "+".join(sorted(set(self.sources)))


def resolve_model(name: str, *, allow_download: bool = True, progress: bool = True) -> ResolvedModel:
    """Resolve every file of a model (checksums verified) and return what a runtime opens."""
    spec = get_spec(name)
    resolved = [resolve_file(f, MODELS_ENV, "models", allow_download=allow_download, progress=progress)
                for f in spec.files]
    first = resolved[0].path
    root = Path(str(first)[: -len(spec.files[0].relpath)])
    return ResolvedModel(spec, root / spec.primary, tuple(r.source for r in resolved))


def resolve_sample(name: str, *, allow_download: bool = True, progress: bool = True) -> Path:
    """Resolve a sample file (e.g. "one-by-one-person-detection.mp4") from CROSSVIEW_DATA/cache/URL."""
    try:
        remote = _SAMPLES_BY_NAME[name]
    except KeyError:
        raise ModelNotFoundError(
            f"unknown sample {name!r}; known samples: {', '.join(sorted(_SAMPLES_BY_NAME))}"
        ) from None
    return resolve_file(remote, DATA_ENV, "data", allow_download=allow_download, progress=progress).path


__all__ = [
    "DATA_ENV", "MODELS", "MODELS_ENV", "SAMPLES", "ModelSpec", "RemoteFile", "ResolvedFile",
    "ResolvedModel", "cache_root", "download", "get_spec", "model_names", "resolve_file",
    "resolve_model", "resolve_sample", "sha256_of", "verify",
]
