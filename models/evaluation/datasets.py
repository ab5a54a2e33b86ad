"""Re-ID evaluation sets on disk → validated query/gallery splits.

Three layouts are read, each by its file names alone (no side files needed):

- **Market-1501** (`query/`, `bounding_box_test/`; `PPPP_cCsS_FFFFFF_NN.jpg`). Following the
  dataset's README and the standard evaluation code, pid ``-1`` marks *junk* boxes (dropped from
  the gallery) and pid ``0000`` marks *distractors* (kept in the gallery, they match no query).
- **CUHK03 labeled** (a folder of `IIII_KK.jpg` crops, e.g. `cuhk03_labeled/val`). Only identities
  with all ten images are used: KK 00–04 are camera A (query, camid 0) and 05–09 camera B
  (gallery, camid 1). With fewer images the camera of each index is ambiguous.
- **MARS tracklets** (`bbox_test/IIII/IIIICcTtttFfff.jpg`, or the frames directly in `bbox_test/`).
  Every frame is one `Sample` whose `tracklet` is ``(pid, camid, tracklet number)``; the evaluation
  averages a tracklet's frame embeddings. Split (MARS-style, since a mini copy has no official
  `query_IDX`): the query is the lowest-numbered tracklet of every (identity, camera) pair; the
  gallery is *every* tracklet, queries included. A query's own tracklet, like every tracklet of its
  identity on its camera, is junk under the cross-camera protocol, so it never counts.

All camids are 0-based.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import CrossviewError, InvalidInputError

FORMATS = ("auto", "market1501", "cuhk03", "mars")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d)s(\d+)_(\d+)_(\d+)$")
_CUHK03_NAME = re.compile(r"^(\d+)_(\d{2})$")
_MARS_NAME = re.compile(r"^(\d{4})C(\d)T(\d{4})F(\d{3,})$")
_CUHK03_VIEWS = 10
_CUHK03_QUERY_VIEWS = 5


class DatasetError(CrossviewError):
    """A dataset folder that is missing, empty, or not in a known layout."""


TrackletKey = tuple[int, int, int]  # (pid, camid, tracklet number)


@dataclass(frozen=True)
class Sample:
    """One image (or one frame of a tracklet) with its identity and 0-based camera."""

    path: Path
    pid: int
    camid: int
    tracklet: TrackletKey | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            raise InvalidInputError(f"path: expected a pathlib.Path, got {type(self.path).__name__}")
        if self.camid < 0:
            raise InvalidInputError(f"camid: expected >= 0, got {self.camid} ({self.path.name})")
        if self.tracklet is not None and (len(self.tracklet) != 3 or self.tracklet[0] != self.pid
                                          or self.tracklet[1] != self.camid):
            raise InvalidInputError(
                f"tracklet: expected (pid={self.pid}, camid={self.camid}, number), got {self.tracklet}"
            )


@dataclass(frozen=True)
class Unit:
    """What is ranked: one image, or one tracklet (several frames, embeddings averaged)."""

    pid: int
    camid: int
    frames: tuple[int, ...]  # indices into the split side's sample list


@dataclass(frozen=True)
class ReIdSplit:
    """Query and gallery samples of one evaluation set. Video sets group frames into tracklets."""

    query: list[Sample]
    gallery: list[Sample]
    name: str = ""
    fmt: str = ""  # the layout it was read from: "market1501" | "cuhk03" | "mars"

    def __post_init__(self) -> None:
        for side in ("query", "gallery"):
            samples = getattr(self, side)
            if not samples:
                raise InvalidInputError(f"{side}: expected at least one sample, got none")
            bad = next((s for s in samples if not isinstance(s, Sample)), None)
            if bad is not None:
                raise InvalidInputError(f"{side}: expected Sample items, got {type(bad).__name__}")
            kinds = {s.tracklet is None for s in samples}
            if len(kinds) != 1:
                raise InvalidInputError(f"{side}: expected all samples with or all without a tracklet")
        if self.query[0].tracklet is None and self.gallery[0].tracklet is not None:
            raise InvalidInputError("expected query and gallery both image-based or both tracklet-based")

    @property
    def is_video(self) -> bool:
        return self.query[0].tracklet is not None

    def units(self, side: str) -> list[Unit]:
        """The ranked items of `side` ("query" | "gallery"), in first-appearance order."""
        samples: list[Sample] = getattr(self, side)
        if not self.is_video:
            return [Unit(s.pid, s.camid, (i,)) for i, s in enumerate(samples)]
        groups: dict[TrackletKey, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            assert s.tracklet is not None
            groups[s.tracklet].append(i)
        return [Unit(key[0], key[1], tuple(idx)) for key, idx in groups.items()]


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what}: folder {path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a folder")
    return path


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files of `folder` (and its subfolders when `recursive`), sorted by path."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _parse(pattern: re.Pattern[str], path: Path, layout: str, example: str) -> re.Match[str]:
    match = pattern.match(path.stem)
    if match is None:
        raise DatasetError(f"{path}: not a {layout} file name (expected names like {example})")
    return match


# --- Market-1501 ------------------------------------------------------------------------------

def market_name(path: Path) -> tuple[int, int]:
    """(pid, 1-based camera) of a Market-1501 file name; pid -1 is junk, 0 a distractor."""
    match = _parse(_MARKET_NAME, path, "Market-1501", "0004_c2s3_059152_00.jpg")
    pid, cam = int(match.group(1)), int(match.group(2))
    if cam < 1:
        raise DatasetError(f"{path}: camera numbers start at 1, got c{cam}")
    return pid, cam


def _market_side(folder: Path, side: str) -> list[Sample]:
    samples = []
    for path in image_files(_require_dir(folder, f"Market-1501 {side}")):
        pid, cam = market_name(path)
        if pid == -1:
            continue  # junk box: ignored by the protocol
        if side == "query" and pid == 0:
            raise DatasetError(f"{path}: a query cannot be a distractor (pid 0000)")
        samples.append(Sample(path, pid, cam - 1))
    if not samples:
        raise DatasetError(f"Market-1501 {side}: no usable images in {folder}")
    return samples


def load_market1501(root: Path) -> ReIdSplit:
    """`root/query` against `root/bounding_box_test`; junk (-1) dropped, distractors (0) kept."""
    root = _require_dir(Path(root), "Market-1501")
    return ReIdSplit(_market_side(root / "query", "query"),
                     _market_side(root / "bounding_box_test", "gallery"), name=root.name,
                    fmt="market1501")


# --- CUHK03 -----------------------------------------------------------------------------------

def cuhk03_folder(root: Path) -> Path:
    """The folder holding the `IIII_KK.jpg` files: `root` itself, or its only train/val subfolder."""
    root = _require_dir(Path(root), "CUHK03")
    if image_files(root):
        return root
    subsets = [name for name in ("train", "val", "test") if (root / name).is_dir()]
    if len(subsets) == 1:
        return root / subsets[0]
    if subsets:
        options = " or ".join(str(root / s) for s in subsets)
        raise DatasetError(f"CUHK03: {root} holds several subsets; pass one of them: {options}")
    raise DatasetError(f"CUHK03: no images in {root} (expected IIII_KK.jpg files or train/, val/)")


def cuhk03_name(path: Path) -> tuple[int, int]:
    """(pid, view index 0–9) of a CUHK03 `IIII_KK.jpg` file name."""
    match = _parse(_CUHK03_NAME, path, "CUHK03", "0012_07.jpg")
    pid, view = int(match.group(1)), int(match.group(2))
    if view >= _CUHK03_VIEWS:
        raise DatasetError(f"{path}: view index {view} is outside 00–09")
    return pid, view


def load_cuhk03(root: Path) -> ReIdSplit:
    """Complete identities only: views 00–04 (camera A) query views 05–09 (camera B)."""
    folder = cuhk03_folder(root)
    by_pid: dict[int, dict[int, Path]] = defaultdict(dict)
    for path in image_files(folder):
        pid, view = cuhk03_name(path)
        by_pid[pid][view] = path
    query, gallery = [], []
    for pid in sorted(by_pid):
        views = by_pid[pid]
        if len(views) != _CUHK03_VIEWS:
            continue  # incomplete: the camera of each view index is unknown
        for view in range(_CUHK03_VIEWS):
            camid = 0 if view < _CUHK03_QUERY_VIEWS else 1
            (query if camid == 0 else gallery).append(Sample(views[view], pid, camid))
    if not query:
        raise DatasetError(f"CUHK03: no identity in {folder} has all {_CUHK03_VIEWS} images")
    return ReIdSplit(query, gallery, name=f"{folder.parent.name}/{folder.name}", fmt="cuhk03")


# --- MARS -------------------------------------------------------------------------------------

def _mars_frames(folder: Path) -> list[Sample]:
    frames = []
    for path in image_files(folder, recursive=True):
        match = _parse(_MARS_NAME, path, "MARS", "0004C1T0001F001.jpg")
        pid, cam, number = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if cam < 1:
            raise DatasetError(f"{path}: camera numbers start at 1, got C{cam}")
        if pid <= 0:
            continue  # MARS 0000 / -1: distractor and junk tracklets are not in the mini copy
        frames.append(Sample(path, pid, cam - 1, (pid, cam - 1, number)))
    return frames


def load_mars(root: Path) -> ReIdSplit:
    """Tracklets of `root/bbox_test` (or `root` itself); see the module docstring for the split."""
    root = _require_dir(Path(root), "MARS")
    folder = root / "bbox_test" if (root / "bbox_test").is_dir() else root
    frames = _mars_frames(folder)
    if not frames:
        raise DatasetError(f"MARS: no frames in {folder} (expected IIII/IIIICcTtttFfff.jpg)")
    first: dict[tuple[int, int], int] = {}
    for s in frames:
        assert s.tracklet is not None
        key = (s.pid, s.camid)
        first[key] = min(first.get(key, s.tracklet[2]), s.tracklet[2])
    query = [s for s in frames if s.tracklet is not None and s.tracklet[2] == first[(s.pid, s.camid)]]
    return ReIdSplit(query, frames, name=root.name, fmt="mars")


# --- dispatch ---------------------------------------------------------------------------------

_LOADERS = {"market1501": load_market1501, "cuhk03": load_cuhk03, "mars": load_mars}
_ALIASES = {"market": "market1501", "market-1501": "market1501", "cuhk03-labeled": "cuhk03",
            "cuhk03_labeled": "cuhk03"}


def _names_in(folder: Path, limit: int = 50) -> Iterable[str]:
    for i, path in enumerate(image_files(folder)):
        if i >= limit:
            return
        yield path.stem


def detect_format(root: Path) -> str:
    """Guess the layout of `root` from its folders and file names."""
    root = _require_dir(Path(root), "dataset")
    if (root / "query").is_dir() and (root / "bounding_box_test").is_dir():
        return "market1501"
    if (root / "bbox_test").is_dir():
        return "mars"
    candidates: Sequence[Path] = [root, *(root / s for s in ("val", "train", "test") if (root / s).is_dir())]
    for folder in candidates:
        names = list(_names_in(folder))
        if names and all(_CUHK03_NAME.match(n) for n in names):
            return "cuhk03"
        if names and all(_MARS_NAME.match(n) for n in names):
            return "mars"
    raise DatasetError(
        f"unknown dataset layout in {root}: expected Market-1501 (query/, bounding_box_test/), "
        "CUHK03 (IIII_KK.jpg files) or MARS (bbox_test/); pass the format explicitly"
    )


def load_dataset(root: Path, fmt: str = "auto") -> ReIdSplit:
    """Load `root` as `fmt` (one of FORMATS; "auto" guesses from the layout)."""
    key = _ALIASES.get(fmt.lower(), fmt.lower())
    if key == "auto":
        key = detect_format(Path(root))
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return _LOADERS[key](Path(root))
