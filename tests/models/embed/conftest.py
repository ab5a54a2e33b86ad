"""Fixtures for the embedder tests: real crops and the real models from ../shared, or a skip."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(scope="session")
def models_root() -> Path:
    root = _env_dir("CROSSVIEW_MODELS")
    if root is None:
        pytest.skip("CROSSVIEW_MODELS is not set to a folder (e.g. ../shared/models): real models absent")
    needed = ("onnx/osnet_x0_25_msmt17.onnx",
              "openvino/intel/person-reidentification-retail-0288/FP16/person-reidentification-retail-0288.xml")
    missing = [rel for rel in needed if not (root / rel).is_file()]
    if missing:
        pytest.skip(f"real models missing under {root}: {', '.join(missing)}")
    return root


@pytest.fixture(scope="session")
def real_crops() -> list[np.ndarray]:
    """40 real BGR person crops of mixed sizes: 24 CUHK03 (val) and 16 Market-1501 query crops."""
    root = _env_dir("CROSSVIEW_DATA")
    if root is None:
        pytest.skip("CROSSVIEW_DATA is not set to a folder (e.g. ../shared/data): real crops absent")
    files = (sorted((root / "cuhk03_labeled" / "val").glob("*.jpg"))[::37][:24]
             + sorted((root / "market1501_mini" / "query").glob("*.jpg"))[:16])
    crops = [image for image in (cv2.imread(str(f)) for f in files) if image is not None]
    if len(crops) < 32:
        pytest.skip(f"need at least 32 real crops under {root}, found {len(crops)}")
    return crops
