"""Training sets on disk: the three layouts, dense labels and cameras, and one-line errors before training."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.errors import CrossviewError
from models.train.data import TrainingDataError, TrainingSet, check_training_set, load_training_set, read_crop_rgb
from models.train.samplers import pk_batches


def write_crop(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((32, 16, 3), value % 256, dtype=np.uint8)
    pixels[:, :, 0] = 200  # blue channel in OpenCV's BGR order
    assert cv2.imwrite(str(path), pixels)
    return path


def market_folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_crop(root / name, i * 10)
    return root


MARKET_TRAIN = ["0002_c1s1_000451_01.jpg", "0002_c2s1_000551_01.jpg", "0002_c2s1_000651_02.jpg",
                "0010_c3s1_000100_01.jpg", "0010_c1s1_000200_01.jpg",
                "0007_c6s2_000300_01.jpg", "0007_c5s2_000300_02.jpg",
                "-1_c1s1_000001_00.jpg", "0000_c2s1_000002_00.jpg"]


def test_market_train_folder(tmp_path: Path) -> None:
    market_folder(tmp_path / "bounding_box_train", MARKET_TRAIN)
    market_folder(tmp_path / "query", ["0099_c1s1_000001_01.jpg"])  # not read: only the train split
    ts = load_training_set(tmp_path, "market1501")
    assert ts.fmt == "market1501" and ts.root == tmp_path / "bounding_box_train"
    assert len(ts) == 7, "junk (-1) and distractors (0000) are skipped"
    assert ts.identity_names == ("0002", "0007", "0010")
    by_name = {p.name: (ts.identity_names[label], int(cam)) for p, label, cam in zip(ts.paths, ts.labels, ts.cameras,
                                                                                      strict=True)}
    assert by_name["0010_c3s1_000100_01.jpg"] == ("0010", 2)
    assert by_name["0007_c6s2_000300_01.jpg"] == ("0007", 5)
    assert ts.labels.dtype == np.int64 and ts.cameras.dtype == np.int64 and ts.labelled
    assert ts.n_ids == 3 and ts.n_cameras == 5
    check_training_set(ts, p=3, k=2)


def test_a_folder_of_market_named_images_is_read_directly(tmp_path: Path) -> None:
    """A hub export (or any folder of Market-named crops without bounding_box_train/)."""
    ts = load_training_set(market_folder(tmp_path, MARKET_TRAIN), "market")
    assert len(ts) == 7 and ts.root == tmp_path


def test_cuhk03_cameras_from_view_index(tmp_path: Path) -> None:
    for view in range(10):
        write_crop(tmp_path / "train" / f"0003_{view:02d}.jpg", view)
    for view in (0, 1, 7):  # incomplete identity: same rule, an approximation
        write_crop(tmp_path / "train" / f"0001_{view:02d}.jpg", view)
    write_crop(tmp_path / "val" / "0500_00.jpg")
    ts = load_training_set(tmp_path, "cuhk03")
    assert ts.root == tmp_path / "train" and len(ts) == 13
    assert ts.identity_names == ("0001", "0003")
    cams = {p.stem: int(c) for p, c in zip(ts.paths, ts.cameras, strict=True)}
    assert [cams[f"0003_{v:02d}"] for v in range(10)] == [0] * 5 + [1] * 5
    assert (cams["0001_00"], cams["0001_01"], cams["0001_07"]) == (0, 0, 1)
    assert ts.labels[[p.stem.startswith("0003") for p in ts.paths]].tolist() == [1] * 10
    check_training_set(ts, p=2, k=4)


def test_crops_are_read_recursively_without_labels(tmp_path: Path) -> None:
    write_crop(tmp_path / "a.jpg")
    write_crop(tmp_path / "edge1" / "2026" / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ts = load_training_set(tmp_path, "crops")
    assert [p.name for p in ts.paths] == ["a.jpg", "b.png"]
    assert ts.labels.tolist() == [-1, -1] and ts.cameras.tolist() == [0, 0]
    assert not ts.labelled and ts.identity_names == ()
    check_training_set(ts, p=16, k=4)  # no identities needed to distil


def test_a_hub_export_reads_as_crops_too(tmp_path: Path) -> None:
    market_folder(tmp_path / "bounding_box_train", MARKET_TRAIN)
    ts = load_training_set(tmp_path, "crops")
    assert len(ts) == len(MARKET_TRAIN) and not ts.labelled


def test_read_crop_rgb(tmp_path: Path) -> None:
    pixels = read_crop_rgb(write_crop(tmp_path / "x.png", 7))
    assert pixels.shape == (32, 16, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [7, 7, 200], "RGB order: the blue channel is last"
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TrainingDataError, match=r"broken\.jpg: cannot be read as an image"):
        read_crop_rgb(tmp_path / "broken.jpg")


def test_unreadable_images_are_named_before_training(tmp_path: Path) -> None:
    market_folder(tmp_path, MARKET_TRAIN)
    for name in ("0002_c1s1_000999_01.jpg", "0010_c2s1_000999_01.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(TrainingDataError) as info:
        load_training_set(tmp_path, "market1501")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("2 of 9 images in ") and message.endswith(
        "cannot be read: 0002_c1s1_000999_01.jpg, 0010_c2s1_000999_01.jpg")


def _one_identity(root: Path) -> TrainingSet:
    return load_training_set(market_folder(root, MARKET_TRAIN[:3]), "market1501")


def _one_camera(root: Path) -> TrainingSet:
    return load_training_set(market_folder(root, ["0002_c1s1_000451_01.jpg", "0007_c1s1_000551_01.jpg"]),
                             "market1501")


def _no_cross_camera_identity(root: Path) -> TrainingSet:
    return load_training_set(market_folder(root, ["0002_c1s1_000451_01.jpg", "0007_c2s1_000551_01.jpg"]),
                             "market1501")


def _three_identities(root: Path) -> TrainingSet:
    return load_training_set(market_folder(root, MARKET_TRAIN), "market1501")


@pytest.mark.parametrize(("make", "p", "k", "message"), [
    (_one_identity, 4, 4, "labelled training data needs at least 2 identities in {root}, got 1"),
    (_one_camera, 2, 4, "labelled training data in {root} has images of one camera only: "
                        "cross-camera positives cannot be formed"),
    (_no_cross_camera_identity, 2, 4, "labelled training data in {root}: no identity has images on two cameras, "
                                      "so cross-camera positives cannot be formed"),
    (_three_identities, 16, 4, "training data in {root} has 3 identities, fewer than P=16 per batch: "
                               "expected at least 16, got 3 (lower P or add identities)"),
    (_three_identities, 1, 4, "p: expected at least 2 identities per batch, got 1"),
    (_three_identities, 2, 0, "k: expected at least 1 image per identity, got 0"),
])
def test_sets_that_cannot_train(tmp_path: Path, make: Callable[[Path], TrainingSet], p: int, k: int,
                                message: str) -> None:
    ts = make(tmp_path)
    with pytest.raises(TrainingDataError, match=f"^{re.escape(message.format(root=tmp_path))}$"):
        check_training_set(ts, p=p, k=k)


@pytest.mark.parametrize(("layout", "fmt", "message"), [
    ("missing", "market1501", "training data: folder {root}/missing does not exist"),
    ("empty", "market1501", "training data: no market1501 images with an identity in {root}/empty"),
    ("empty", "crops", "training data: no images in {root}/empty"),
    ("only_junk", "market1501", "training data: no market1501 images with an identity in {root}/only_junk"),
    ("badname", "cuhk03", "{root}/badname/person.jpg: not a CUHK03 file name (expected names like 0012_07.jpg)"),
    ("badname", "market1501", "{root}/badname/person.jpg: not a Market-1501 file name "
                              "(expected names like 0004_c2s3_059152_00.jpg)"),
    ("empty", "mars", "unknown training data format 'mars'; expected one of market1501, cuhk03, crops"),
])
def test_bad_folders(tmp_path: Path, layout: str, fmt: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    market_folder(tmp_path / "only_junk", ["-1_c1s1_000001_00.jpg", "0000_c2s1_000002_00.jpg"])
    write_crop(tmp_path / "badname" / "person.jpg")
    with pytest.raises(TrainingDataError, match=f"^{re.escape(message.format(root=tmp_path))}$") as info:
        load_training_set(tmp_path / layout, fmt)
    assert isinstance(info.value, CrossviewError)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"labels": np.array([0, 1])}, "labels: expected 3 integers (one per path), got shape (2,) of int64"),
    ({"cameras": np.array([0.0, 1.0, 0.0])}, "cameras: expected 3 integers (one per path), got shape (3,) of float64"),
    ({"labels": np.array([0, 2, 1]), "identity_names": ("a", "b")}, "labels: expected -1 or 0..1 (one per identity"),
    ({"labels": np.array([0, 0, -1])}, "labels: expected dense labels using all 2 identities, got 1"),
    ({"cameras": np.array([0, -1, 0])}, "cameras: expected 0-based camera ids, got -1"),
    ({"paths": ["a.jpg", "b.jpg", "c.jpg"]}, "paths: expected a tuple of pathlib.Path"),
])
def test_training_set_is_validated(kwargs: dict, message: str) -> None:
    good = {"paths": (Path("a.jpg"), Path("b.jpg"), Path("c.jpg")), "labels": np.array([0, 1, -1]),
            "cameras": np.array([0, 1, 0]), "identity_names": ("0002", "0007")}
    TrainingSet(**good)
    with pytest.raises(TrainingDataError, match=f"^{re.escape(message)}"):
        TrainingSet(**{**good, **kwargs})


def test_training_set_arrays_are_read_only() -> None:
    labels = np.array([0, 1])
    ts = TrainingSet((Path("a.jpg"), Path("b.jpg")), labels, np.array([0, 1]), ("x", "y"))
    labels[0] = 1  # the caller's array is copied
    assert ts.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="read-only"):
        ts.labels[0] = 1


def test_real_cuhk03_train(data_dir: Path) -> None:
    folder = data_dir / "cuhk03_labeled" / "train"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    ts = load_training_set(folder, "cuhk03")
    assert (len(ts), ts.n_ids, ts.n_cameras) == (7239, 743, 2)
    check_training_set(ts, p=16, k=4)
    batches = pk_batches(ts.labels, ts.cameras, p=16, k=4, rng=np.random.default_rng(0))
    assert len(batches) == 47 and all(b.shape == (64,) for b in batches)
    assert read_crop_rgb(ts.paths[batches[0][0]]).ndim == 3


def test_real_market_mini(data_dir: Path) -> None:
    folder = data_dir / "market1501_mini"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    ts = load_training_set(folder, "market1501")
    assert ts.root == folder / "bounding_box_train" and len(ts) == 32 and ts.labelled
    check_training_set(ts, p=8, k=2)
