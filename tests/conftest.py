"""Shared fixtures: where the real models and data are, and skips with a clear reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")


def _folder(env_var: str) -> Path | None:
    value = os.environ.get(env_var)
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(scope="session")
def models_dir() -> Path:
    folder = _folder("CROSSVIEW_MODELS")
    if folder is None:
        pytest.skip("CROSSVIEW_MODELS is not set to a folder of real models (e.g. ../shared/models)")
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = _folder("CROSSVIEW_DATA")
    if folder is None:
        pytest.skip("CROSSVIEW_DATA is not set to a folder of real data (e.g. ../shared/data)")
    return folder


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty user cache folder for tests that resolve or download files."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROSSVIEW_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random CLIP's towers exported to ONNX, and its tokenizer folder (`models.attributes.random_clip`)."""
    pytest.importorskip("torch", reason="the tiny CLIP is built and exported with torch")
    pytest.importorskip("transformers", reason="the tiny CLIP is built from a transformers config")
    from models.attributes.random_clip import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("tiny_clip"), "tiny")


@pytest.fixture
def tiny_clip_model(tiny_clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny CLIP registered as text-image model ``text/tiny`` in a private user models folder."""
    from models.attributes.random_clip import IMAGE_SIDE, MAX_LENGTH
    from models.zoo.text_image import add_text_image_model

    monkeypatch.setenv("CROSSVIEW_USER_MODELS", str(tmp_path / "user_models"))
    add_text_image_model("text/tiny", tiny_clip.image_onnx, tiny_clip.text_onnx, tiny_clip.tokenizer,
                         input_hw=(IMAGE_SIDE, IMAGE_SIDE), max_length=MAX_LENGTH)
    return "text/tiny"
