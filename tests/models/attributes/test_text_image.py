"""Text-image (CLIP-style) models (issue 15, item 4), with a tiny randomly initialised CLIP built from a
`transformers` config and exported to ONNX here (`models.attributes.random_clip`): registration with every
file's checksum, the zoo and CLI seeing it, both towers through ONNX Runtime agreeing with torch, and
bad input refused with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from models.attributes.random_clip import DIM, IMAGE_SIDE, MAX_LENGTH
from models.attributes.text_image import MAX_TEXT_CHARS, TextImageEncoder
from models.embed import preprocess
from models.errors import ChecksumMismatchError, InvalidInputError, ModelNotFoundError
from models.zoo import TEXT_IMAGE_TASK, get_spec, resolve_model, spec_for_fingerprint, user_model_names
from models.zoo.text_image import add_text_image_model, load_text_image_model, load_tokenizer
from models.zoo.user import UserModelError

ROOT = Path(__file__).resolve().parents[3]


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(40, 130)), int(rng.integers(20, 64)), 3), np.uint8)
            for _ in range(n)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


def test_registered_model_is_in_the_zoo_with_a_fingerprint_over_both_towers(tiny_clip_model: str) -> None:
    model = load_text_image_model(tiny_clip_model)
    spec = get_spec(tiny_clip_model)
    assert spec.task == TEXT_IMAGE_TASK and spec.input_hw == (IMAGE_SIDE, IMAGE_SIDE) and spec.output_dim == DIM
    assert spec.fingerprint == model.fingerprint and model.fingerprint.startswith("text/tiny@")
    assert model.fingerprint.split("@")[1] != spec.weights.sha256[:12]  # both towers, not the image's alone
    assert spec_for_fingerprint(model.fingerprint, TEXT_IMAGE_TASK) == spec
    assert user_model_names() == ["text/tiny"]  # the tokenizer's JSON files are no models
    assert resolve_model(tiny_clip_model).path == Path(model.image_spec.primary)
    assert model.max_length == MAX_LENGTH


def test_towers_through_onnx_runtime_agree_with_torch(tiny_clip, tiny_clip_model: str) -> None:
    encoder = TextImageEncoder(tiny_clip_model, weight=0.3)
    assert encoder.fingerprint == encoder.image.fingerprint and encoder.weight == 0.3
    crops = _crops(5)
    vectors = encoder.image.embed(crops).vectors
    expected = tiny_clip.image_features(preprocess(crops, encoder.image.spec))
    assert vectors.shape == (5, DIM) and _cosines(vectors, expected).min() > 0.9999
    texts = ["a man in red jacket", "woman with backpack and long hair", "the person"]
    tokens = load_tokenizer(encoder.model.tokenizer_dir)(texts, padding=True, return_tensors="np")
    expected = tiny_clip.text_features(tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64))
    together = encoder.encode_text(texts)
    assert _cosines(together, expected).min() > 0.9999
    alone = np.concatenate([encoder.encode_text([t]) for t in texts])  # padding changes nothing
    assert _cosines(together, alone).min() > 0.9999
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_encoder_refuses_bad_text_and_cuts_long_text(tiny_clip_model: str) -> None:
    encoder = TextImageEncoder(tiny_clip_model)
    for bad in ([""], ["   "], [None], "a man", ["x" * (MAX_TEXT_CHARS + 1)]):
        with pytest.raises(InvalidInputError):
            encoder.encode_text(bad)  # type: ignore[arg-type]
    long = encoder.encode_text(["red " * 2000])  # 8 kB: cut at the model's max length, not refused
    assert long.shape == (1, DIM) and np.isfinite(long).all()
    assert encoder.encode_text([]).shape == (0, DIM)
    with pytest.raises(InvalidInputError, match="weight"):
        TextImageEncoder(tiny_clip_model, weight=1.5)


def test_a_changed_file_is_refused_when_opened(tiny_clip_model: str) -> None:
    model = load_text_image_model(tiny_clip_model)
    tokenizer_json = model.tokenizer_dir / "tokenizer.json"
    tokenizer_json.write_text(tokenizer_json.read_text().replace('"woman"', '"women"'))
    with pytest.raises(ChecksumMismatchError, match="changed since it was added"):
        TextImageEncoder(tiny_clip_model)
    Path(model.text.relpath).unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        model.verify()


def test_registration_refuses_what_cannot_work(tiny_clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSVIEW_USER_MODELS", str(tmp_path / "um"))
    args = (tiny_clip.image_onnx, tiny_clip.text_onnx, tiny_clip.tokenizer)
    side = (IMAGE_SIDE, IMAGE_SIDE)
    with pytest.raises(UserModelError, match="image input"):  # towers swapped
        add_text_image_model("text/x", tiny_clip.text_onnx, tiny_clip.image_onnx, tiny_clip.tokenizer, input_hw=side)
    with pytest.raises(UserModelError, match="not a tokenizer folder"):
        add_text_image_model("text/x", *args[:2], tmp_path, input_hw=side)
    with pytest.raises(UserModelError, match="not a folder"):
        add_text_image_model("text/x", *args[:2], tmp_path / "none", input_hw=side)
    with pytest.raises(UserModelError, match="built-in"):
        add_text_image_model("reid/intel-0288", *args, input_hw=side)
    with pytest.raises(UserModelError, match="max-length"):
        add_text_image_model("text/x", *args, input_hw=side, max_length=1)
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(UserModelError, match="not a readable ONNX"):
        add_text_image_model("text/x", not_onnx, tiny_clip.text_onnx, tiny_clip.tokenizer, input_hw=side)
    import onnx  # a tower whose weights sit in a separate file: only the .onnx would be copied and checksummed
    external = tmp_path / "external" / "text.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(str(tiny_clip.text_onnx)), str(external), save_as_external_data=True, size_threshold=0,
              location="text.onnx_data")
    with pytest.raises(UserModelError, match="external data"):
        add_text_image_model("text/x", tiny_clip.image_onnx, external, tiny_clip.tokenizer, input_hw=side)
    add_text_image_model("text/x", *args, input_hw=side)
    with pytest.raises(UserModelError, match="already exists"):
        add_text_image_model("text/x", *args, input_hw=side)
    add_text_image_model("text/x", *args, input_hw=side, force=True)
    assert user_model_names() == ["text/x"]
    assert not [p for p in (tmp_path / "um" / "text").iterdir() if p.name.startswith(".")]  # no staging left


def test_a_reid_embedder_does_not_take_an_attribute_model_but_takes_an_image_tower(tiny_clip_model: str) -> None:
    from models.embed import create_embedder
    from models.embed.registry import EmbedderConfigError

    assert create_embedder(tiny_clip_model).fingerprint == load_text_image_model(tiny_clip_model).fingerprint
    with pytest.raises(EmbedderConfigError, match="not a Re-ID model"):
        create_embedder("attributes/intel-0230")


def test_cli_adds_lists_and_removes(tiny_clip, tmp_path: Path) -> None:
    env = {**os.environ, "CROSSVIEW_USER_MODELS": str(tmp_path / "um"), "PYTHONWARNINGS": "ignore"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "crossview.cli", "models", *args], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=300)

    added = run("add-text-image", "text/cli", "--image-onnx", str(tiny_clip.image_onnx), "--text-onnx",
                str(tiny_clip.text_onnx), "--tokenizer", str(tiny_clip.tokenizer), "--input-size", str(IMAGE_SIDE),
                "--max-length", str(MAX_LENGTH))
    assert added.returncode == 0, added.stderr
    assert "added text/cli@" in added.stdout
    manifest = json.loads((tmp_path / "um" / "text" / "cli.json").read_text())
    assert manifest["task"] == TEXT_IMAGE_TASK and manifest["tokenizer"]
    listed = run("list")
    assert "text/cli" in listed.stdout and "text-image" in listed.stdout
    removed = run("remove", "text/cli")
    assert removed.returncode == 0 and "removed text/cli@" in removed.stdout, removed.stderr
    folder = tmp_path / "um" / "text"
    assert not (folder / "cli.json").exists() and not (folder / "cli.files").exists()
    bad_range = run("add-text-image", "text/cli", "--image-onnx", str(tiny_clip.image_onnx), "--text-onnx",
                    str(tiny_clip.text_onnx), "--tokenizer", str(tiny_clip.tokenizer), "--input-size",
                    str(IMAGE_SIDE), "--max-length", str(MAX_LENGTH), "--cosine-range", "0.4,0.2")
    assert bad_range.returncode != 0 and "--cosine-range" in bad_range.stderr and "low < high" in bad_range.stderr
    assert not (folder / "cli.json").exists()
    # a manifest that can no longer be read is removed all the same, with the files beside it
    (folder / "cli.json").write_text("{not json")
    (folder / "cli.files").mkdir()
    removed = run("remove", "text/cli")
    assert removed.returncode == 0 and "removed text/cli (" in removed.stdout, removed.stderr
    assert not (folder / "cli.json").exists() and not (folder / "cli.files").exists()


def test_fixed_shape_text_towers(tiny_clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text tower exported with a fixed length gets texts padded to it; one with a fixed batch is refused."""
    from models.attributes.random_clip import export_text_tower

    monkeypatch.setenv("CROSSVIEW_USER_MODELS", str(tmp_path / "um"))
    side = (IMAGE_SIDE, IMAGE_SIDE)
    fixed_length = export_text_tower(tiny_clip.model, tmp_path / "fixed_length.onnx", dynamic=("batch",), tokens=12)
    with pytest.raises(UserModelError, match="exactly 12 tokens"):
        add_text_image_model("text/f", tiny_clip.image_onnx, fixed_length, tiny_clip.tokenizer, input_hw=side)
    add_text_image_model("text/f", tiny_clip.image_onnx, fixed_length, tiny_clip.tokenizer, input_hw=side,
                         max_length=12)
    encoder = TextImageEncoder("text/f")
    texts = ["a man in red jacket", "woman"]
    tokens = load_tokenizer(encoder.model.tokenizer_dir)(texts, padding=True, return_tensors="np")
    expected = tiny_clip.text_features(tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64))
    assert _cosines(encoder.encode_text(texts), expected).min() > 0.9999
    fixed_batch = export_text_tower(tiny_clip.model, tmp_path / "fixed_batch.onnx", dynamic=("tokens",))
    with pytest.raises(UserModelError, match="N dynamic"):
        add_text_image_model("text/b", tiny_clip.image_onnx, fixed_batch, tiny_clip.tokenizer, input_hw=side)


def test_cosine_range_and_fingerprint_follow_the_manifest(tiny_clip, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSVIEW_USER_MODELS", str(tmp_path / "um"))
    args = (tiny_clip.image_onnx, tiny_clip.text_onnx, tiny_clip.tokenizer)
    first = add_text_image_model("text/r", *args, input_hw=(IMAGE_SIDE, IMAGE_SIDE), cosine_range=(0.1, 0.3))
    assert first.cosine_range == (0.1, 0.3) and TextImageEncoder("text/r").cosine_range == (0.1, 0.3)
    with pytest.raises(UserModelError, match="cosine-range"):
        add_text_image_model("text/r2", *args, input_hw=(IMAGE_SIDE, IMAGE_SIDE), cosine_range=(0.3, 0.1))
    # other preprocessing makes other vectors: another fingerprint, though the towers are the same files
    second = add_text_image_model("text/r", *args, input_hw=(IMAGE_SIDE, IMAGE_SIDE), mean=(0.5, 0.5, 0.5),
                                  force=True)
    assert second.fingerprint != first.fingerprint


def test_names_and_kinds_are_not_mixed_up(tiny_clip, tiny_clip_model: str, tmp_path: Path) -> None:
    import torch

    from models.embed import create_embedder
    from models.embed.registry import EmbedderConfigError
    from models.zoo.user import add_user_model, load_user_model

    reid_onnx = tmp_path / "reid.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose
        torch.onnx.export(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                              torch.nn.Linear(3, 512)),
                          (torch.zeros(1, 3, 256, 128),), str(reid_onnx), input_names=["images"], dynamo=False,
                          dynamic_axes={"images": {0: "batch"}})
    add_user_model("reid/site", reid_onnx, "reid/osnet-x0.25-msmt17")
    with pytest.raises(UserModelError, match="'reid/site' is a reid model, not a text-image model"):
        load_text_image_model("reid/site")
    with pytest.raises(UserModelError, match="not a Re-ID model"):
        load_user_model(tiny_clip_model)
    with pytest.raises(UserModelError, match="is a Re-ID model; remove it first"):
        add_text_image_model("reid/site", tiny_clip.image_onnx, tiny_clip.text_onnx, tiny_clip.tokenizer,
                             input_hw=(IMAGE_SIDE, IMAGE_SIDE), force=True)
    with pytest.raises(UserModelError, match="is a text-image model; remove it first"):
        add_user_model(tiny_clip_model, reid_onnx, "reid/osnet-x0.25-msmt17", force=True)
    with pytest.raises(UserModelError, match=r"\.files"):
        add_user_model("site.files/x", reid_onnx, "reid/osnet-x0.25-msmt17")
    with pytest.raises(EmbedderConfigError, match="runs on onnxruntime"):
        create_embedder(tiny_clip_model, "openvino")
    assert sorted(user_model_names()) == ["reid/site", "text/tiny"]


def test_an_edge_refuses_a_text_image_model_without_attributes_before_loading_models(
        tiny_clip_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossview import edge_command
    from crossview.config import load_config
    from crossview.edge_command import ReplayConfig, _open_node
    from models.errors import CrossviewError

    cfg = load_config(ReplayConfig, None, [f"text_image.model={tiny_clip_model}", "attributes.enabled=false"])
    with monkeypatch.context() as patch:
        patch.setattr(edge_command, "text_image_encoder", lambda settings: pytest.fail("the model was loaded"))
        with pytest.raises(CrossviewError, match="reads none"):
            _open_node(cfg, tmp_path, ["cam"])
    cfg = load_config(ReplayConfig, None, [f"embedder={tiny_clip_model}"])
    with pytest.raises(CrossviewError, match="expected a Re-ID model"):
        _open_node(cfg, tmp_path, ["cam"])
