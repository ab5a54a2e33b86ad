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
