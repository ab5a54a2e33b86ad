"""Text-image (CLIP-style) models: an image tower and a text tower in ONNX, and their tokenizer folder.

A deployment that has such a model registers it beside the built-in zoo (issue 15, item 4):

    crossview models add-text-image text/clip-site --image-onnx vision.onnx --text-onnx text.onnx \\
        --tokenizer tokenizer/

It is kept in the user models folder (`models.zoo.user`) as ``<name>.json`` (the manifest: task
``text-image``, each file's SHA-256 and size, the image preprocessing, the text length) and
``<name>.files/`` (``image.onnx``, ``text.onnx``, ``tokenizer/``). Every file is checked against its
recorded checksum when the model is opened.

The image tower takes one (N, 3, H, W) input and gives (N, D) (its ``image_embeds`` output when it has
one); the text tower takes ``input_ids`` (and ``attention_mask`` when it has that input) and gives
(N, D) (``text_embeds`` when present). The tokenizer folder is anything
``transformers.AutoTokenizer.from_pretrained`` reads offline (``tokenizer.json`` or vocab + merges).

The model's fingerprint, ``<name>@<sha12>``, hashes both towers' checksums together: vectors stored by
the image tower are compared only with texts of the text tower trained beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import InvalidInputError, ModelNotFoundError, require
from models.zoo.resolve import sha256_of
from models.zoo.spec import (
    DEFAULT_COSINE_RANGE,
    DEFAULT_TEXT_MAX_LENGTH,
    ModelSpec,
    RemoteFile,
    check_cosine_range,
)
from models.zoo.spec import TEXT_IMAGE_TASK as TASK
from models.zoo.user import (
    FILES_SUFFIX,
    UserModelError,
    check_name,
    check_spec,
    manifest_task,
    onnx_io,
    read_manifest,
    user_models_root,
    verify_registered,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_OUTPUT, TEXT_OUTPUT = "image_embeds", "text_embeds"
_MANIFEST_VERSION = 1
_KEYS = frozenset({"format_version", "name", "task", "image", "text", "tokenizer", "input_hw", "mean", "std",
                   "output_dim", "max_length", "pad_to_max_length", "cosine_range", "image_output", "text_output",
                   "added_at"})


@dataclass(frozen=True)
class TextImageModel:
    """A registered text-image model: `image_spec` is what an `Embedder` opens for the image tower."""

    name: str
    manifest: Path
    image_spec: ModelSpec
    text: RemoteFile
    tokenizer_dir: Path
    tokenizer_files: tuple[RemoteFile, ...]
    max_length: int
    pad_to_max_length: bool  # the text tower takes exactly `max_length` tokens
    cosine_range: tuple[float, float]
    text_output: str
    added_at: str

    @property
    def fingerprint(self) -> str:
        return self.image_spec.fingerprint

    def verify(self) -> None:
        """Every file present and as registered (ModelNotFoundError / ChecksumMismatchError otherwise)."""
        for file in (self.image_spec.files[0], self.text, *self.tokenizer_files):
            verify_registered(file, f"text-image model {self.name!r}",
                              "add it again with `crossview models add-text-image`", "register it again with --force")


def _paths(name: str, root: Path | None) -> tuple[Path, Path]:
    base = (root or user_models_root()) / check_name(name)
    return base.with_name(base.name + ".json"), base.with_name(base.name + FILES_SUFFIX)


def _embedding_output(file: Path, outputs: list[tuple[str, list[int | None]]], preferred: str) -> tuple[str, int]:
    """The output giving (N, D) embeddings: `preferred` when present, else the first 2-D one; its D."""
    chosen = [o for o in outputs if o[0] == preferred] or [o for o in outputs if len(o[1]) == 2]
    if not chosen or len(chosen[0][1]) != 2 or not isinstance(chosen[0][1][1], int):
        raise UserModelError(f"{file}: expected an output {preferred!r} or another of shape [N, D] with D fixed, "
                             f"got {[(n, d) for n, d in outputs]}")
    return chosen[0][0], int(chosen[0][1][1])


def check_towers(image_onnx: Path, text_onnx: Path, input_hw: tuple[int, int]
                 ) -> tuple[str, str, int, int | None]:
    """(image output name, text output name, D, the text tower's fixed token count or None): the towers'
    shapes checked against each other. A text tower of fixed batch size is refused (texts go through
    it several at a time); one of fixed length gets every text padded to that length."""
    inputs, outputs = onnx_io(image_onnx)
    if len(inputs) != 1 or len(inputs[0][1]) != 4 or inputs[0][1][1] not in (3, None):
        raise UserModelError(f"{image_onnx}: expected one image input [N, 3, H, W], got {inputs}")
    for got, want in zip(inputs[0][1][2:], input_hw, strict=True):
        if got is not None and got != want:
            raise UserModelError(f"{image_onnx}: input expected [N, 3, {input_hw[0]}, {input_hw[1]}] "
                                 f"(--input-size), got {inputs[0][1]}")
    image_output, dim = _embedding_output(image_onnx, outputs, IMAGE_OUTPUT)
    inputs, outputs = onnx_io(text_onnx)
    names = {name for name, _ in inputs}
    if "input_ids" not in names or not names <= {"input_ids", "attention_mask"}:
        raise UserModelError(f"{text_onnx}: expected inputs input_ids (and attention_mask), got {sorted(names)}")
    text_output, text_dim = _embedding_output(text_onnx, outputs, TEXT_OUTPUT)
    if text_dim != dim:
        raise UserModelError(f"{text_onnx}: expected {dim}-d text embeddings (as the image tower's), got {text_dim}")
    shapes = {name: shape for name, shape in inputs}
    lengths = set()
    for name, shape in shapes.items():
        if len(shape) != 2 or shape[0] is not None:
            raise UserModelError(f"{text_onnx}: input {name} expected [N, L] with N dynamic (export it with a "
                                 f"dynamic batch axis), got {shape}")
        lengths.add(shape[1])
    fixed = [length for length in lengths if length is not None]
    if len(lengths) > 1:
        raise UserModelError(f"{text_onnx}: expected input_ids and attention_mask of one length, got {shapes}")
    return image_output, text_output, dim, fixed[0] if fixed else None


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer in `folder`, read offline; UserModelError when it cannot be."""
    transformers = require("transformers")
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserModelError(f"{folder}: not a tokenizer folder transformers can read offline ({exc})") from None


_NOT_TOKENIZER = frozenset({".safetensors", ".bin", ".onnx", ".pt", ".pth", ".msgpack", ".h5", ".ckpt", ".gguf"})


def _copy_tokenizer(source: Path, target: Path) -> None:
    """The tokenizer files of `source` (a model snapshot's weights beside them are left behind)."""
    shutil.copytree(source, target, ignore=lambda _folder, names: [n for n in names
                                                                    if Path(n).suffix in _NOT_TOKENIZER])


def _file_entry(path: Path, base: Path) -> dict[str, Any]:
    return {"file": path.relative_to(base).as_posix(), "sha256": sha256_of(path), "size": path.stat().st_size}


def add_text_image_model(name: str, image_onnx: Path, text_onnx: Path, tokenizer: Path, *,
                         input_hw: tuple[int, int] = (224, 224), mean: tuple[float, float, float] = CLIP_MEAN,
                         std: tuple[float, float, float] = CLIP_STD, max_length: int = DEFAULT_TEXT_MAX_LENGTH,
                         cosine_range: tuple[float, float] = DEFAULT_COSINE_RANGE, force: bool = False,
                         root: Path | None = None) -> TextImageModel:
    """Copy both towers and the tokenizer into the user models folder as `name`, checked first: shapes that
    agree, a tokenizer that reads offline, a name not taken (unless `force`, and never by a Re-ID model).
    `cosine_range` is where the model's text-image cosines fall (`models.attributes.scoring.combined_similarity`)."""
    from models.zoo.manifest import MODELS

    manifest, files = _paths(name, root)
    if name in {spec.name for spec in MODELS}:
        raise UserModelError(f"model name {name!r} is a built-in model's; choose another name")
    for what, path in (("--image-onnx", image_onnx), ("--text-onnx", text_onnx)):
        if not Path(path).is_file():
            raise UserModelError(f"{what}: expected an ONNX file, got {path} (not a file)")
    if not Path(tokenizer).is_dir():
        raise UserModelError(f"--tokenizer: expected a tokenizer folder, got {tokenizer} (not a folder)")
    if not (len(input_hw) == 2 and all(isinstance(v, int) and v > 0 for v in input_hw)):
        raise UserModelError(f"--input-size: expected two positive integers, got {input_hw!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise UserModelError(f"--max-length: expected an integer >= 2, got {max_length!r}")
    try:
        cosine_range = check_cosine_range(cosine_range)
    except InvalidInputError as exc:
        raise UserModelError(f"--cosine-range: {exc}") from None
    if manifest.exists() and not force:
        raise UserModelError(f"model {name!r} already exists ({manifest}); pass --force to replace it")
    if manifest.exists() and manifest_task(name, root) != TASK:
        raise UserModelError(f"model {name!r} is a Re-ID model; remove it first (`crossview models remove {name}`)")
    image_output, text_output, dim, length = check_towers(Path(image_onnx), Path(text_onnx), tuple(input_hw))
    if length is not None and length != max_length:
        raise UserModelError(f"--max-length: the text tower takes exactly {length} tokens, got {max_length}")
    load_tokenizer(Path(tokenizer))
    files.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{files.name}.", dir=files.parent))
    try:
        shutil.copyfile(image_onnx, staging / "image.onnx")
        shutil.copyfile(text_onnx, staging / "text.onnx")
        _copy_tokenizer(Path(tokenizer), staging / "tokenizer")
        data = {"format_version": _MANIFEST_VERSION, "name": name, "task": TASK,
                "image": _file_entry(staging / "image.onnx", staging),
                "text": _file_entry(staging / "text.onnx", staging),
                "tokenizer": [_file_entry(p, staging) for p in sorted((staging / "tokenizer").rglob("*"))
                              if p.is_file()],
                "input_hw": list(input_hw), "mean": list(mean), "std": list(std), "output_dim": dim,
                "max_length": max_length, "pad_to_max_length": length is not None,
                "cosine_range": list(cosine_range), "image_output": image_output, "text_output": text_output,
                "added_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if files.exists():
            shutil.rmtree(files)
        os.replace(staging, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    tmp_manifest = manifest.with_name(f".{manifest.name}.part")
    tmp_manifest.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp_manifest, manifest)
    return load_text_image_model(name, root)


def _remote(entry: Any, base: Path, where: Path) -> RemoteFile:
    if not (isinstance(entry, dict) and {"file", "sha256", "size"} <= set(entry)):
        raise UserModelError(f"{where}: expected file entries with file, sha256 and size, got {entry!r}")
    relative = Path(str(entry["file"]))
    if relative.is_absolute() or ".." in relative.parts:
        raise UserModelError(f"{where}: expected a file inside {base}, got {entry['file']!r}")
    return RemoteFile(str(base / relative), str(entry["sha256"]), int(entry["size"]), None)


def load_text_image_model(name: str, root: Path | None = None) -> TextImageModel:
    """The registered text-image model `name` (its manifest read and checked; files are hashed by `verify`)."""
    manifest, files = _paths(name, root)
    if not manifest.is_file():
        raise ModelNotFoundError(f"unknown text-image model {name!r} (no {manifest})")
    task = manifest_task(name, root)
    if task != TASK:
        raise UserModelError(f"{name!r} is a {task} model, not a text-image model (register one with "
                             "`crossview models add-text-image`)")
    data = read_manifest(manifest, _KEYS)
    try:
        return _model_from(name, manifest, files, data)
    except (TypeError, ValueError, KeyError) as exc:  # a hand-edited manifest: a clear error, not a traceback
        raise UserModelError(f"{manifest}: unreadable ({type(exc).__name__}: {exc})") from None


def _model_from(name: str, manifest: Path, files: Path, data: dict[str, Any]) -> TextImageModel:

    missing = sorted({"name", "task", "image", "text", "tokenizer", "input_hw", "mean", "std", "output_dim"}
                     - set(data))
    if missing:
        raise UserModelError(f"{manifest}: missing key(s) {', '.join(missing)}")
    if data["task"] != TASK or data["name"] != name:
        raise UserModelError(f"{manifest}: expected task {TASK!r} and name {name!r}, got {data['task']!r} and "
                             f"{data['name']!r}")
    image = _remote(data["image"], files, manifest)
    text = _remote(data["text"], files, manifest)
    if not isinstance(data["tokenizer"], list) or not data["tokenizer"]:
        raise UserModelError(f"{manifest}: tokenizer: expected a list of file entries, got {data['tokenizer']!r}")
    tokenizer = tuple(_remote(entry, files, manifest) for entry in data["tokenizer"])
    input_hw, mean, std = tuple(int(v) for v in data["input_hw"]), tuple(data["mean"]), tuple(data["std"])
    # the vectors an image tower stores depend on its preprocessing too: the fingerprint names all of it
    pair = f"{image.sha256}:{text.sha256}:{list(input_hw)}:{list(mean)}:{list(std)}"
    spec = _PairSpec(
        name=name, task=TASK, format="onnx", files=(image,), primary=image.relpath, input_hw=input_hw,
        channel_order="RGB", scale=1.0 / 255.0, mean=mean, std=std, output_dim=int(data["output_dim"]),
        licence="user model", output_name=str(data.get("image_output", IMAGE_OUTPUT)),
        notes="text-image model: its image tower", pair_sha256=hashlib.sha256(pair.encode()).hexdigest())
    check_spec(spec, manifest)
    max_length = data.get("max_length", DEFAULT_TEXT_MAX_LENGTH)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise UserModelError(f"{manifest}: max_length: expected an integer >= 2, got {max_length!r}")
    try:
        cosine_range = check_cosine_range(data.get("cosine_range", DEFAULT_COSINE_RANGE))
    except InvalidInputError as exc:
        raise UserModelError(f"{manifest}: {exc}") from None
    return TextImageModel(name, manifest, spec, text, files / "tokenizer", tokenizer, max_length,
                          bool(data.get("pad_to_max_length", False)), cosine_range,
                          str(data.get("text_output", TEXT_OUTPUT)), str(data.get("added_at", "")))


@dataclass(frozen=True)
class _PairSpec(ModelSpec):
    """The image tower's spec, whose fingerprint names both towers (see the module docstring)."""

    pair_sha256: str = ""

    @property
    def fingerprint(self) -> str:
        return f"{self.alias or self.name}@{self.pair_sha256[:12]}"


def remove_text_image_model(name: str, root: Path | None = None) -> TextImageModel:
    """Delete a registered text-image model (its manifest and files); the removed model."""
    model = load_text_image_model(name, root)
    model.manifest.unlink()
    shutil.rmtree(_paths(name, root)[1], ignore_errors=True)
    return model
