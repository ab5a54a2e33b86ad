"""The model zoo: model names → files, preprocessing, licence, URL and checksum.

    >>> from models.zoo import get_spec, resolve_model
    >>> spec = get_spec("reid/intel-0288")
    >>> path = resolve_model("reid/intel-0288").path   # the file a runtime opens

Besides the built-in models (`manifest.MODELS`), `get_spec` and `resolve_model` know the user's own
Re-ID models registered with `crossview models add`, a path to an ``.onnx`` file (`models.zoo.user`), and
text-image models registered with `crossview models add-text-image` (`models.zoo.text_image`), whose
spec is their image tower's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from models.errors import CrossviewError, ModelNotFoundError
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
from models.zoo.spec import TEXT_IMAGE_TASK, ModelSpec, RemoteFile
from models.zoo.user import (
    USER_MODELS_ENV,
    UserModelError,
    is_onnx_path,
    load_user_model,
    manifest_task,
    spec_for_path,
    user_model_names,
    user_models_root,
    verify_user_file,
)

_BY_NAME = {spec.name: spec for spec in MODELS}
_SAMPLES_BY_NAME = {Path(s.relpath).name: s for s in SAMPLES}


def model_names() -> list[str]:
    """The built-in models' names (user models: `user_model_names`)."""
    return sorted(_BY_NAME)


builtin_names = model_names


def builtin_spec(name: str) -> ModelSpec:
    """A built-in model's spec (never a user model's)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BY_NAME, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; built-in models: {', '.join(model_names())}"
        raise ModelNotFoundError(f"unknown built-in model {name!r}{hint}") from None


def _user_spec(name: str) -> ModelSpec:
    """A registered model's spec: a Re-ID model's, or a text-image model's image tower's."""
    if manifest_task(name) == TEXT_IMAGE_TASK:
        from models.zoo.text_image import load_text_image_model

        return load_text_image_model(name).image_spec
    return load_user_model(name).spec


def get_spec(name: str) -> ModelSpec:
    """The spec of a built-in model, a registered user model, or an ``.onnx`` file named by path."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if is_onnx_path(name):
        return spec_for_path(name)
    users = user_model_names()
    if name in users:
        return _user_spec(name)
    known = [*_BY_NAME, *users]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known models: {', '.join(sorted(known))}"
    raise ModelNotFoundError(f"unknown model {name!r}{hint} (or give a path to an .onnx file)") from None


def spec_for_fingerprint(fingerprint: str, task: str = "reid") -> ModelSpec | None:
    """The built-in or registered user model of `task` whose fingerprint is `fingerprint`, if any."""
    for spec in MODELS:
        if spec.task == task and spec.fingerprint == fingerprint:
            return spec
    for name in user_model_names():
        try:
            spec = _user_spec(name)
        except CrossviewError:
            continue  # a broken manifest is reported when that model is asked for by name
        if spec.task == task and spec.fingerprint == fingerprint:
            return spec
    return None


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
    if spec.task == TEXT_IMAGE_TASK:  # every file of both towers checked against its recorded checksum
        from models.zoo.text_image import load_text_image_model

        load_text_image_model(name).verify()
        return ResolvedModel(spec, Path(spec.primary), ("user",))
    if name not in _BY_NAME:  # a user model or a file: one ONNX, checked against its recorded checksum
        return ResolvedModel(spec, verify_user_file(spec, spec.alias or name), ("user",))
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
    "DATA_ENV", "MODELS", "MODELS_ENV", "SAMPLES", "TEXT_IMAGE_TASK", "USER_MODELS_ENV", "ModelSpec", "RemoteFile",
    "ResolvedFile",
    "ResolvedModel", "UserModelError", "builtin_names", "builtin_spec", "cache_root", "download", "get_spec",
    "model_names", "resolve_file", "resolve_model", "resolve_sample", "sha256_of", "spec_for_fingerprint",
    "user_model_names", "user_models_root", "verify",
]
