"""The user's own Re-ID models: ONNX files registered beside the built-in zoo, or opened by path.

A registered model (`add_user_model`, `crossview models add NAME --onnx FILE --like MODEL`) is a copy
of the ONNX file plus a JSON manifest in the user models folder: ``$CROSSVIEW_USER_MODELS``, else
``$XDG_DATA_HOME/crossview/models``, else ``~/.local/share/crossview/models``. The name ``reid/site-v1``
is kept as ``<folder>/reid/site-v1.onnx`` + ``<folder>/reid/site-v1.json``. Its preprocessing, task and
output size are those of the `--like` model; its fingerprint is ``<name>@<sha12>`` like a built-in's,
and a file whose SHA-256 changed since it was added is refused when it is resolved.

A bare path to an ``.onnx`` file is also accepted wherever a Re-ID model is named. It is preprocessed
like `DEFAULT_LIKE` (RGB, ImageNet mean/std, 256x128) unless a sibling ``<stem>.json`` says otherwise
(``{"like": "reid/intel-0288"}`` and/or any of the preprocessing keys of a manifest); its fingerprint is
``file/<stem>@<sha12>``. A hub only knows models by name, so for a fleet register the model under the
same name on the hub and on every edge.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import ChecksumMismatchError, InvalidInputError, ModelNotFoundError, require
from models.zoo.manifest import MODELS
from models.zoo.resolve import sha256_of
from models.zoo.spec import ModelSpec, RemoteFile

USER_MODELS_ENV = "CROSSVIEW_USER_MODELS"
DEFAULT_LIKE = "reid/osnet-x0.25-msmt17"
PATH_PREFIX = "file/"
FILES_SUFFIX = ".files"  # a model of several files keeps them in <name>.files/ (models.zoo.text_image)
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}(/[a-z0-9][a-z0-9._-]{0,63})?")
_MANIFEST_VERSION = 1
_BUILTIN = {spec.name: spec for spec in MODELS}
_PREPROCESSING_KEYS = ("input_hw", "channel_order", "scale", "mean", "std", "output_dim", "input_name",
                       "output_name")
_MANIFEST_KEYS = frozenset({"format_version", "name", "like", "file", "sha256", "size", "task", "licence",
                            "added_at", *_PREPROCESSING_KEYS})


class UserModelError(InvalidInputError):
    """A user model cannot be added, read or used as asked."""


def user_models_root() -> Path:
    """The folder user models are kept in (see the module docstring)."""
    if os.environ.get(USER_MODELS_ENV):
        return Path(os.environ[USER_MODELS_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "crossview" / "models"


def check_name(name: str) -> str:
    """A valid user model name (lower-case letters, digits, ``.``, ``_``, ``-``; at most one ``/``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserModelError(f"model name: expected lower-case letters, digits, '.', '_', '-' and at most one '/' "
                             f"(e.g. reid/site-v1), got {name!r}")
    if name.startswith(PATH_PREFIX):
        raise UserModelError(f"model name: {PATH_PREFIX!r} is kept for models opened by path, got {name!r}")
    if any(part.endswith(FILES_SUFFIX) for part in name.split("/")):
        raise UserModelError(f"model name: {FILES_SUFFIX!r} ends the folders of models' files, got {name!r}")
    return name


def is_onnx_path(name: str) -> bool:
    """Whether a model argument names a file (ends in .onnx) rather than a zoo name."""
    return name.lower().endswith(".onnx")


@dataclass(frozen=True)
class UserModel:
    """A registered model: its manifest file, its ONNX file and the spec runtimes use."""

    name: str
    manifest: Path
    onnx: Path
    like: str
    added_at: str
    spec: ModelSpec

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint


def _paths(name: str, root: Path | None = None) -> tuple[Path, Path]:
    base = (root or user_models_root()) / name
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".onnx")


def _shape_error(what: str, expected: Any, got: Any, file: Path, like: str) -> UserModelError:
    return UserModelError(f"{file}: {what} expected {expected} (like {like}), got {got}")


Dims = list[int | None]


def onnx_io(file: Path) -> tuple[list[tuple[str, Dims]], list[tuple[str, Dims]]]:
    """(inputs, outputs) of an ONNX graph as (name, dims), None for a symbolic dim; initialisers are no inputs."""
    onnx = require("onnx")
    try:
        graph = onnx.load(str(file), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise UserModelError(f"{file}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in graph.initializer):
        raise UserModelError(f"{file}: its weights are in a separate file (ONNX external data), which is not "
                             "copied or checksummed; save it as one file: onnx.save(onnx.load(path), one_file)")
    initialisers = {i.name for i in graph.initializer}

    def dims(value: Any) -> Dims:
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]

    return ([(i.name, dims(i)) for i in graph.input if i.name not in initialisers],
            [(o.name, dims(o)) for o in graph.output])


def check_onnx_against(file: Path, like: ModelSpec) -> None:
    """The ONNX's one input is [N, 3, H, W] at the spec's size and its output [N, D]; symbolic dims pass."""
    inputs, outputs = onnx_io(file)
    if len(inputs) != 1 or len(outputs) < 1:
        raise UserModelError(f"{file}: expected one image input and an output, got {len(inputs)} input(s) "
                             f"and {len(outputs)} output(s)")
    got_in = inputs[0][1]
    want_in = [None, 3, *like.input_hw]
    if len(got_in) != 4 or any(g is not None and w is not None and g != w for g, w in zip(got_in, want_in,
                                                                                        strict=True)):
        raise _shape_error("input shape", f"[N, 3, {like.input_hw[0]}, {like.input_hw[1]}]", got_in, file, like.name)
    got_out = outputs[0][1]
    if len(got_out) < 2 or (got_out[-1] is not None and got_out[-1] != like.output_dim):
        raise _shape_error("output shape", f"[N, {like.output_dim}]", got_out, file, like.name)


def _derived_spec(name: str, like: ModelSpec, onnx: Path, sha256: str, size: int, overrides: dict[str, Any],
                  alias: str = "") -> ModelSpec:
    fields: dict[str, Any] = {"input_name": None, "output_name": None}
    for key in _PREPROCESSING_KEYS:
        if key in overrides:
            value = overrides[key]
            fields[key] = tuple(value) if isinstance(value, list) else value
    spec = replace(like, name=name, format="onnx", files=(RemoteFile(str(onnx), sha256, size, None),),
                   primary=str(onnx), precision="FP32", licence="user model",
                   notes=f"user model, preprocessed like {like.name}", alias=alias, **fields)
    check_spec(spec, onnx)
    return spec


def check_spec(spec: ModelSpec, where: Path) -> None:
    problems = []
    if not (len(spec.input_hw) == 2 and all(isinstance(v, int) and v > 0 for v in spec.input_hw)):
        problems.append(f"input_hw: expected two positive ints, got {spec.input_hw!r}")
    if spec.channel_order not in ("RGB", "BGR"):
        problems.append(f"channel_order: expected 'RGB' or 'BGR', got {spec.channel_order!r}")
    for key in ("mean", "std"):
        value = getattr(spec, key)
        if len(value) != 3 or not all(isinstance(v, int | float) for v in value):
            problems.append(f"{key}: expected three numbers, got {value!r}")
    if not isinstance(spec.output_dim, int) or spec.output_dim < 1:
        problems.append(f"output_dim: expected a positive int, got {spec.output_dim!r}")
    if problems:
        raise UserModelError(f"{where}: {problems[0]}")


def read_manifest(path: Path, keys: frozenset[str] = _MANIFEST_KEYS) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserModelError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(data, dict):
        raise UserModelError(f"{path}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - keys)
    if unknown:
        raise UserModelError(f"{path}: unknown key(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(keys))}")
    return data


def _like_spec(like: str, where: str) -> ModelSpec:
    """A built-in Re-ID spec: a user model is never "like" another user model."""
    spec = _BUILTIN.get(like)
    if spec is None:
        reid = sorted(n for n, s in _BUILTIN.items() if s.task == "reid")
        raise UserModelError(f"{where}: expected a built-in Re-ID model ({', '.join(reid)}), got {like!r}")
    if spec.task != "reid":
        raise UserModelError(f"{where}: --like expected a built-in Re-ID model, got {like!r} ({spec.task})")
    return spec


def load_user_model(name: str, root: Path | None = None) -> UserModel:
    """The registered model `name` (its manifest read and checked; the file is not hashed here)."""
    manifest, _ = _paths(check_name(name), root)
    if not manifest.is_file():
        raise ModelNotFoundError(f"unknown user model {name!r} (no {manifest})")
    if manifest_task(name, root) != "reid":
        raise UserModelError(f"{name!r} is a {manifest_task(name, root)} model, not a Re-ID model")
    data = read_manifest(manifest)
    missing = sorted({"name", "like", "file", "sha256", "size"} - set(data))
    if missing:
        raise UserModelError(f"{manifest}: missing key(s) {', '.join(missing)}")
    if data["name"] != name:
        raise UserModelError(f"{manifest}: expected name {name!r}, got {data['name']!r}")
    if Path(str(data["file"])).name != data["file"]:
        raise UserModelError(f"{manifest}: file: expected a file name beside the manifest, got {data['file']!r}")
    onnx = manifest.parent / str(data["file"])
    like = _like_spec(str(data["like"]), str(manifest))
    spec = _derived_spec(name, like, onnx, str(data["sha256"]), int(data["size"]), data)
    return UserModel(name, manifest, onnx, like.name, str(data.get("added_at", "")), spec)


def manifest_task(name: str, root: Path | None = None) -> str:
    """The task a registered model's manifest names ("reid" when it names none); "" when `name` has none."""
    manifest, _ = _paths(check_name(name), root)
    if not manifest.is_file():
        return ""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return "reid"  # reported as unreadable when the model is loaded
    return str(data.get("task", "reid")) if isinstance(data, dict) else "reid"


def user_model_names(root: Path | None = None) -> list[str]:
    """Names of the registered user models (manifests in the user models folder)."""
    base = root or user_models_root()
    if not base.is_dir():
        return []
    names = []
    for manifest in sorted(base.rglob("*.json")):
        relative = manifest.relative_to(base)
        name = relative.with_suffix("").as_posix()
        if _NAME.fullmatch(name) and not any(part.endswith(FILES_SUFFIX) for part in relative.parts[:-1]):
            names.append(name)
    return names


def verify_registered(file: RemoteFile, owner: str, missing_hint: str, changed_hint: str) -> Path:
    """A registered model's file, refused when it is missing or its SHA-256 changed since it was added."""
    path = Path(file.relpath)
    if not path.is_file():
        raise ModelNotFoundError(f"{owner}: its file {path} is missing; {missing_hint}")
    actual = sha256_of(path)
    if actual != file.sha256:
        raise ChecksumMismatchError(f"{owner}: {path} changed since it was added (sha256 expected "
                                    f"{file.sha256[:12]}…, got {actual[:12]}…); {changed_hint}")
    return path


def verify_user_file(spec: ModelSpec, name: str) -> Path:
    """The spec's ONNX file, refused when it is missing or its SHA-256 changed since it was added."""
    return verify_registered(spec.files[0], f"user model {name!r}", "add it again with `crossview models add`",
                             f"register the new file with `crossview models add {name} --onnx FILE --force`")


def spec_for_path(path: str | Path) -> ModelSpec:
    """A spec for an .onnx file named by path (see the module docstring); the file is hashed."""
    onnx = Path(path).expanduser()
    if not onnx.is_file():
        raise ModelNotFoundError(f"model file {onnx} does not exist")
    onnx = onnx.resolve()
    sibling = onnx.with_suffix(".json")
    overrides = read_manifest(sibling) if sibling.is_file() else {}
    like = _like_spec(str(overrides.get("like", DEFAULT_LIKE)), str(sibling if overrides else onnx))
    alias = PATH_PREFIX + re.sub(r"[^A-Za-z0-9._-]+", "_", onnx.stem)
    return _derived_spec(str(onnx), like, onnx, sha256_of(onnx), onnx.stat().st_size, overrides, alias=alias)


def add_user_model(name: str, onnx: Path, like: str, *, force: bool = False, root: Path | None = None) -> UserModel:
    """Copy `onnx` into the user models folder as `name`, preprocessed like the built-in `like`.

    Refused: a name that is a built-in's or badly formed, a name already registered (unless `force`),
    a missing file, an ONNX whose input/output shapes differ from `like`'s.
    """
    check_name(name)
    if name in _BUILTIN:
        raise UserModelError(f"model name {name!r} is a built-in model's; choose another name")
    onnx = Path(onnx).expanduser()
    if not onnx.is_file():
        raise UserModelError(f"--onnx: expected an ONNX file, got {onnx} (not a file)")
    like_spec = _like_spec(like, "--like")
    manifest, target = _paths(name, root)
    if manifest.exists() and not force:
        raise UserModelError(f"user model {name!r} already exists ({manifest}); pass --force to replace it")
    if manifest.exists() and manifest_task(name, root) != like_spec.task:
        raise UserModelError(f"user model {name!r} is a {manifest_task(name, root)} model; remove it first "
                             f"(`crossview models remove {name}`)")
    check_onnx_against(onnx, like_spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(onnx, tmp_name)
        sha256, size = sha256_of(Path(tmp_name)), Path(tmp_name).stat().st_size
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    data = {"format_version": _MANIFEST_VERSION, "name": name, "like": like_spec.name, "file": target.name,
            "sha256": sha256, "size": size, "task": like_spec.task,
            "added_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{key: getattr(like_spec, key) for key in _PREPROCESSING_KEYS if key not in ("input_name",
                                                                                         "output_name")}}
    tmp_manifest = manifest.with_name(f".{manifest.name}.part")
    tmp_manifest.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp_manifest, manifest)
    return load_user_model(name, root)


def remove_unreadable_model(name: str, root: Path | None = None) -> None:
    """Delete what a registered model whose manifest cannot be read left behind: the manifest, a Re-ID
    model's ONNX file and a text-image model's files folder (its manifest no longer says which it was)."""
    manifest, onnx = _paths(check_name(name), root)
    if not manifest.is_file():
        raise ModelNotFoundError(f"no user model named {name!r}")
    manifest.unlink()
    onnx.unlink(missing_ok=True)
    shutil.rmtree(manifest.with_name(manifest.name[: -len(".json")] + FILES_SUFFIX), ignore_errors=True)


def remove_user_model(name: str, root: Path | None = None) -> UserModel:
    """Delete a registered model's manifest and file; the removed model."""
    model = load_user_model(name, root)
    model.manifest.unlink()
    model.onnx.unlink(missing_ok=True)
    return model
