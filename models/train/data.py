"""Training sets on disk → a validated `TrainingSet` (paths, dense identity labels, cameras).

Three layouts:

- **market1501**: `bounding_box_train/` when the folder has one, else the folder's own images,
  named like Market-1501 (`PPPP_cCsS_FFFFFF_NN.jpg`). Junk (pid -1) and distractors (pid 0) are
  skipped. A hub export (`crossview hub export-training`) is in this layout.
- **cuhk03**: `IIII_KK.jpg` crops (the folder itself, or its `train/`). Camera = 0 for KK 00–04
  and 1 for 05–09. That split is exact only for identities with all ten images; for the others it
  is an approximation (the camera of each view index is not recorded).
- **crops**: every image under the folder, recursively, without labels (all -1) and camera 0:
  material for distillation without labels (an edge's crop store, or a hub export read unlabelled).

Every file is decoded once while loading, so a bad image stops the run before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.evaluation.datasets import DatasetError, cuhk03_name, image_files, market_name
from models.images import read_bgr

FORMATS = ("market1501", "cuhk03", "crops")
_CUHK03_FIRST_CAMERA_VIEWS = 5  # views 00–04: camera A
_MAX_NAMED_BAD = 3


class TrainingDataError(DatasetError):
    """A training folder that is missing, unreadable, or cannot form the batches training needs."""


def _frozen(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.int64, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class TrainingSet:
    """Images with a dense identity label (0..n_ids-1, or -1 when unlabelled) and a 0-based camera."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int64
    cameras: np.ndarray  # (N,) int64
    identity_names: tuple[str, ...]  # the original pid of each dense label
    fmt: str = ""
    root: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.paths, tuple) or not all(isinstance(p, Path) for p in self.paths):
            raise TrainingDataError("paths: expected a tuple of pathlib.Path")
        n = len(self.paths)
        for name in ("labels", "cameras"):
            array = np.asarray(getattr(self, name))
            if array.shape != (n,) or (n and not np.issubdtype(array.dtype, np.integer)):
                raise TrainingDataError(
                    f"{name}: expected {n} integers (one per path), got shape {array.shape} of {array.dtype}")
            object.__setattr__(self, name, _frozen(array))
        n_ids = len(self.identity_names)
        if n and (self.labels.min() < -1 or self.labels.max() >= n_ids):
            raise TrainingDataError(
                f"labels: expected -1 or 0..{n_ids - 1} (one per identity name), "
                f"got {self.labels.min()}..{self.labels.max()}")
        used = np.unique(self.labels[self.labels >= 0])
        if used.size != n_ids:
            raise TrainingDataError(f"labels: expected dense labels using all {n_ids} identities, got {used.size}")
        if n and self.cameras.min() < 0:
            raise TrainingDataError(f"cameras: expected 0-based camera ids, got {self.cameras.min()}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        """Whether any image has an identity (samplers and the identity loss skip the -1 ones)."""
        return bool((self.labels >= 0).any())

    @property
    def n_ids(self) -> int:
        return len(self.identity_names)

    @property
    def n_cameras(self) -> int:
        return int(np.unique(self.cameras).size)


def read_crop_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file; TrainingDataError naming the file if unreadable."""
    return cv2.cvtColor(read_bgr(path, TrainingDataError), cv2.COLOR_BGR2RGB)


def _readable(path: Path) -> bool:
    try:
        read_bgr(path, TrainingDataError)
    except TrainingDataError:
        return False
    return True


def _check_readable(paths: list[Path], folder: Path, progress: bool) -> None:
    bad = [p for p in tqdm(paths, desc="check images", unit="img", disable=not progress, leave=False)
           if not _readable(p)]
    if bad:
        names = ", ".join(p.relative_to(folder).as_posix() if p.is_relative_to(folder) else str(p)
                          for p in bad[:_MAX_NAMED_BAD])
        more = f" and {len(bad) - _MAX_NAMED_BAD} more" if len(bad) > _MAX_NAMED_BAD else ""
        raise TrainingDataError(f"{len(bad)} of {len(paths)} images in {folder} cannot be read: {names}{more}")


def _existing_folder(root: Path) -> Path:
    if not root.exists():
        raise TrainingDataError(f"training data: folder {root} does not exist")
    if not root.is_dir():
        raise TrainingDataError(f"training data: {root} is not a folder")
    return root


def _market(root: Path) -> tuple[Path, list[tuple[Path, str, int]]]:
    folder = root / "bounding_box_train" if (root / "bounding_box_train").is_dir() else root
    items = []
    for path in image_files(folder):
        pid, cam = market_name(path)
        if pid > 0:  # -1 junk, 0 distractor: no identity to learn
            items.append((path, path.stem.split("_")[0], cam - 1))
    return folder, items


def _cuhk03(root: Path) -> tuple[Path, list[tuple[Path, str, int]]]:
    folder = root if image_files(root) or not (root / "train").is_dir() else root / "train"
    items = []
    for path in image_files(folder):
        _, view = cuhk03_name(path)
        items.append((path, path.stem.split("_")[0], 0 if view < _CUHK03_FIRST_CAMERA_VIEWS else 1))
    return folder, items


def _crops(root: Path) -> tuple[Path, list[tuple[Path, str, int]]]:
    return root, [(path, "", 0) for path in image_files(root, recursive=True)]


_READERS = {"market1501": _market, "cuhk03": _cuhk03, "crops": _crops}
_ALIASES = {"market": "market1501", "market-1501": "market1501", "cuhk03_labeled": "cuhk03",
            "cuhk03-labeled": "cuhk03"}


def load_training_set(root: Path, fmt: str, *, progress: bool = False) -> TrainingSet:
    """Read `root` as `fmt` (one of FORMATS) and check that every image decodes."""
    key = _ALIASES.get(fmt.lower(), fmt.lower())
    if key not in _READERS:
        raise TrainingDataError(f"unknown training data format {fmt!r}; expected one of {', '.join(FORMATS)}")
    root = _existing_folder(Path(root))
    try:
        folder, items = _READERS[key](root)
    except TrainingDataError:
        raise
    except DatasetError as exc:
        raise TrainingDataError(str(exc)) from exc
    if not items:
        what = "images" if key == "crops" else f"{key} images with an identity"
        raise TrainingDataError(f"training data: no {what} in {folder}")
    paths = [path for path, _, _ in items]
    _check_readable(paths, folder, progress)
    if key == "crops":
        labels = np.full(len(items), -1, dtype=np.int64)
        names: tuple[str, ...] = ()
    else:
        names = tuple(sorted({name for _, name, _ in items}, key=lambda n: (int(n), n)))
        dense = {name: i for i, name in enumerate(names)}
        labels = np.asarray([dense[name] for _, name, _ in items], dtype=np.int64)
    cameras = np.asarray([cam for _, _, cam in items], dtype=np.int64)
    return TrainingSet(tuple(paths), labels, cameras, names, fmt=key, root=folder)


def check_training_set(ts: TrainingSet, *, p: int, k: int) -> None:
    """Raise TrainingDataError unless `ts` can give P×K batches with cross-camera positives."""
    if p < 2:
        raise TrainingDataError(f"p: expected at least 2 identities per batch, got {p}")
    if k < 1:
        raise TrainingDataError(f"k: expected at least 1 image per identity, got {k}")
    where = f" in {ts.root}" if ts.root is not None else ""
    if not len(ts):
        raise TrainingDataError(f"training data: expected images, got none{where}")
    if not ts.labelled:
        if len(ts) < 2:
            raise TrainingDataError(f"unlabelled training data needs at least 2 images{where}, got {len(ts)}")
        return
    if ts.n_ids < 2:
        raise TrainingDataError(f"labelled training data needs at least 2 identities{where}, got {ts.n_ids}")
    labelled = ts.labels >= 0
    if np.unique(ts.cameras[labelled]).size < 2:
        raise TrainingDataError(f"labelled training data{where} has images of one camera only: "
                                "cross-camera positives cannot be formed")
    pairs = np.unique(np.stack([ts.labels[labelled], ts.cameras[labelled]]), axis=1)
    if np.unique(pairs[0]).size == pairs.shape[1]:
        raise TrainingDataError(f"labelled training data{where}: no identity has images on two cameras, "
                                "so cross-camera positives cannot be formed")
    if ts.n_ids < p:
        raise TrainingDataError(
            f"training data{where} has {ts.n_ids} identities, fewer than P={p} per batch: "
            f"expected at least {p}, got {ts.n_ids} (lower P or add identities)")
