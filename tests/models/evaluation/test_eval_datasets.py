"""Dataset loaders on tiny synthetic folders: names parsed, protocols applied, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import InvalidInputError
from models.evaluation.datasets import (
    DatasetError,
    ReIdSplit,
    Sample,
    detect_format,
    load_cuhk03,
    load_dataset,
    load_market1501,
    load_mars,
)


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def cuhk03_ids(folder: Path, views: dict[int, int]) -> None:
    """`views[pid]` images 00, 01, ... for each identity."""
    touch(folder, *(f"{pid:04d}_{k:02d}.jpg" for pid, n in views.items() for k in range(n)))


# --- Market-1501 --------------------------------------------------------------------------------

@pytest.fixture
def market(tmp_path: Path) -> Path:
    touch(tmp_path / "query", "0001_c1s1_000151_00.jpg", "0002_c3s2_000201_00.jpg", "notes.txt")
    touch(tmp_path / "bounding_box_test",
          "0001_c2s1_000301_01.jpg",   # true match
          "0001_c1s1_000401_02.jpg",   # same pid, same camera as the query: kept, the metric ignores it
          "0000_c4s1_000500_01.jpg",   # distractor: kept
          "-1_c5s2_000600_03.jpg",     # junk: dropped
          "0002_c6s4_012345_05.jpg")
    (tmp_path / "bounding_box_train").mkdir()
    return tmp_path


def test_market_names_are_parsed(market: Path) -> None:
    split = load_market1501(market)
    assert [(s.path.name, s.pid, s.camid) for s in split.query] == [
        ("0001_c1s1_000151_00.jpg", 1, 0), ("0002_c3s2_000201_00.jpg", 2, 2)]
    gallery = {s.path.name: (s.pid, s.camid) for s in split.gallery}
    assert gallery == {"0001_c2s1_000301_01.jpg": (1, 1), "0001_c1s1_000401_02.jpg": (1, 0),
                       "0000_c4s1_000500_01.jpg": (0, 3), "0002_c6s4_012345_05.jpg": (2, 5)}
    assert not split.is_video
    assert [u.frames for u in split.units("gallery")] == [(0,), (1,), (2,), (3,)]


def test_market_is_detected(market: Path) -> None:
    assert detect_format(market) == "market1501"
    assert len(load_dataset(market).query) == 2
    assert len(load_dataset(market, "market").gallery) == 4


@pytest.mark.parametrize(
    ("query_names", "gallery_names", "error"),
    [
        (["0001_c1s1_000151_00.jpg"], [], "no usable images"),
        ([], ["0001_c2s1_000301_01.jpg"], "no usable images"),
        (["-1_c1s1_000151_00.jpg"], ["0001_c2s1_000301_01.jpg"], "no usable images"),
        (["0000_c1s1_000151_00.jpg"], ["0001_c2s1_000301_01.jpg"], "distractor"),
        (["0001_c0s1_000151_00.jpg"], ["0001_c2s1_000301_01.jpg"], "start at 1"),
        (["person1.jpg"], ["0001_c2s1_000301_01.jpg"], "not a Market-1501 file name"),
    ],
)
def test_market_errors(tmp_path: Path, query_names: list[str], gallery_names: list[str], error: str) -> None:
    touch(tmp_path / "query", *query_names)
    touch(tmp_path / "bounding_box_test", *gallery_names)
    with pytest.raises(DatasetError, match=error):
        load_market1501(tmp_path)


def test_market_missing_folder(tmp_path: Path) -> None:
    touch(tmp_path / "query", "0001_c1s1_000151_00.jpg")
    with pytest.raises(DatasetError, match=r"bounding_box_test.*does not exist"):
        load_market1501(tmp_path)


# --- CUHK03 -----------------------------------------------------------------------------------

def test_cuhk03_complete_identities_only(tmp_path: Path) -> None:
    cuhk03_ids(tmp_path, {3: 10, 7: 9, 12: 10, 15: 4})
    split = load_cuhk03(tmp_path)
    assert sorted({s.pid for s in split.query}) == [3, 12]
    assert [(s.path.name, s.camid) for s in split.query if s.pid == 3] == [
        (f"0003_{k:02d}.jpg", 0) for k in range(5)]
    assert [(s.path.name, s.camid) for s in split.gallery if s.pid == 3] == [
        (f"0003_{k:02d}.jpg", 1) for k in range(5, 10)]
    assert len(split.query) == len(split.gallery) == 10


def test_cuhk03_root_with_subsets(tmp_path: Path) -> None:
    cuhk03_ids(tmp_path / "val", {1: 10})
    assert load_cuhk03(tmp_path).query[0].path.parent.name == "val"  # the only subset is used
    assert detect_format(tmp_path) == "cuhk03"
    cuhk03_ids(tmp_path / "train", {2: 10})
    with pytest.raises(DatasetError, match=r"several subsets.*train.*val"):
        load_cuhk03(tmp_path)
    assert load_dataset(tmp_path / "train", "cuhk03").query[0].pid == 2


@pytest.mark.parametrize(
    ("names", "error"),
    [
        ([f"0001_{k:02d}.jpg" for k in range(9)], "no identity .* has all 10 images"),
        (["0001_10.jpg"], "outside 00–09"),
        (["0001-00.jpg"], "not a CUHK03 file name"),
        ([], "no images"),
    ],
)
def test_cuhk03_errors(tmp_path: Path, names: list[str], error: str) -> None:
    touch(tmp_path / "val", *names)
    with pytest.raises(DatasetError, match=error):
        load_cuhk03(tmp_path / "val")


# --- MARS -------------------------------------------------------------------------------------

def test_mars_tracklets(tmp_path: Path) -> None:
    frames = {
        "0004": ["0004C1T0002F001.jpg", "0004C1T0002F002.jpg",   # cam 1: first tracklet → query
                 "0004C1T0005F001.jpg",                          # cam 1: a later tracklet
                 "0004C2T0003F001.jpg", "0004C2T0003F002.jpg", "0004C2T0003F003.jpg"],
        "0008": ["0008C6T0001F001.jpg"],
    }
    for pid, names in frames.items():
        touch(tmp_path / "bbox_test" / pid, *names)
    assert detect_format(tmp_path) == "mars"
    split = load_mars(tmp_path)
    assert split.is_video
    assert {s.tracklet for s in split.query} == {(4, 0, 2), (4, 1, 3), (8, 5, 1)}
    gallery_units = split.units("gallery")
    assert len(gallery_units) == 4
    sizes = {(u.pid, u.camid, len(u.frames)) for u in gallery_units}
    assert sizes == {(4, 0, 2), (4, 0, 1), (4, 1, 3), (8, 5, 1)}
    query_units = split.units("query")
    assert sorted((u.pid, u.camid) for u in query_units) == [(4, 0), (4, 1), (8, 5)]
    for unit in query_units:  # every frame of a unit belongs to that unit's tracklet
        assert {split.query[i].tracklet for i in unit.frames} == {split.query[unit.frames[0]].tracklet}


def test_mars_errors(tmp_path: Path) -> None:
    (tmp_path / "bbox_test").mkdir()
    with pytest.raises(DatasetError, match="no frames"):
        load_mars(tmp_path)
    touch(tmp_path / "bbox_test" / "0004", "0004_C1_T2.jpg")
    with pytest.raises(DatasetError, match="not a MARS file name"):
        load_mars(tmp_path)


# --- dispatch and validation ------------------------------------------------------------------

def test_unknown_layout_and_format(tmp_path: Path) -> None:
    touch(tmp_path, "holiday.jpg")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset format 'duke'"):
        load_dataset(tmp_path, "duke")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("query", "gallery", "error"),
    [
        ([], [Sample(Path("a.jpg"), 1, 0)], "query: expected at least one sample"),
        ([Sample(Path("a.jpg"), 1, 0)], ["b.jpg"], "gallery: expected Sample items, got str"),
        ([Sample(Path("a.jpg"), 1, 0, (1, 0, 1)), Sample(Path("b.jpg"), 1, 0)], [Sample(Path("c.jpg"), 1, 1)],
         "all samples with or all without"),
    ],
)
def test_split_validation(query: list[Sample], gallery: list[Sample], error: str) -> None:
    with pytest.raises(InvalidInputError, match=error):
        ReIdSplit(query, gallery)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"path": "a.jpg", "pid": 1, "camid": 0}, "expected a pathlib.Path"),
        ({"path": Path("a.jpg"), "pid": 1, "camid": -1}, "camid: expected >= 0"),
        ({"path": Path("a.jpg"), "pid": 1, "camid": 0, "tracklet": (2, 0, 1)}, "tracklet: expected"),
    ],
)
def test_sample_validation(kwargs: dict, error: str) -> None:
    with pytest.raises(InvalidInputError, match=error):
        Sample(**kwargs)
