"""The hub's confirmed sightings as a labelled training folder (Market-1501 layout) for `crossview train reid`.

    summary = export_training(store, CropFiles(data_dir / "crops"), Path("site-train"), since_s=None)

Written::

    DIR/bounding_box_train/PPPP_cCs1_FFFFFF_00.jpg  one file per sighting: its stored crop, as the hub has it
    DIR/identities.csv   pid,identity_id,display_name,images
    DIR/cameras.csv      camera,edge_id,camera_id,images
    DIR/sightings.csv    file,sighting_id,identity_id,edge_id,camera_id,start_s,end_s,created_s

A sighting is exported when it has an identity (confirmed by the hub's judge, a new identity the hub
made, or an unknown one an operator promoted) that is not deleted, was recorded at or after `since_s`,
and its crop file is still on disk; unknown sightings are not. Person ids are dense (``0001``, ``0002``,
...) in the order each identity was first seen; cameras are numbered ``c1``... per (edge, camera) in
sorted order (Market-1501 names hold one digit: at most 9 cameras per export); ``FFFFFF`` counts the
sightings of that person on that camera.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cloud.crops import CropFiles
from cloud.store import HubStore, SightingRecord
from models.errors import CrossviewError

TRAIN_FOLDER = "bounding_box_train"
CSV_FILES = ("identities.csv", "cameras.csv", "sightings.csv")
MAX_CAMERAS = 9  # Market-1501 file names carry the camera as one digit
_ALL = 1 << 62  # "no limit" for the store's newest-first listing


class TrainingExportError(CrossviewError):
    """The export cannot be written as asked."""


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    images: int
    identities: int
    cameras: int
    skipped_unknown: int  # sightings of nobody known
    skipped_deleted: int  # sightings of a deleted identity
    skipped_missing_crop: int  # crop file no longer on disk
    skipped_before: int  # recorded before `since_s`

    def lines(self) -> list[str]:
        return [f"wrote {self.images} crops of {self.identities} identities on {self.cameras} cameras to "
                f"{self.out / TRAIN_FOLDER}",
                f"left out: {self.skipped_unknown} unknown, {self.skipped_deleted} of deleted identities, "
                f"{self.skipped_missing_crop} without a crop file, {self.skipped_before} before --since"]


@dataclass(frozen=True)
class _Pick:
    sighting: SightingRecord
    source: Path


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingExportError(f"{out}: expected a folder, got a file")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise TrainingExportError(f"{out} is not empty; pass --force to replace an earlier export there")
        shutil.rmtree(out / TRAIN_FOLDER, ignore_errors=True)  # only what an export writes is replaced
        for name in CSV_FILES:
            (out / name).unlink(missing_ok=True)
    (out / TRAIN_FOLDER).mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def export_training(store: HubStore, crops: CropFiles, out: Path, *, since_s: float | None = None,
                    force: bool = False, progress: bool = True) -> ExportSummary:
    """Write the confirmed sightings under `out` (layout in the module docstring); what was written.

    Refused before anything is written: a non-empty `out` without `force`, no sighting to export, more
    than `MAX_CAMERAS` cameras.
    """
    out = Path(out)
    identities = {i.identity_id: i for i in store.list_identities(include_deleted=True)}
    picks: list[_Pick] = []
    unknown = deleted = missing = before = 0
    for sighting in sorted(store.sightings(limit=_ALL), key=lambda s: s.sighting_id):
        if sighting.identity_id is None:
            unknown += 1
            continue
        if since_s is not None and sighting.created_s < since_s:
            before += 1
            continue
        identity = identities.get(sighting.identity_id)
        if identity is None or identity.deleted:
            deleted += 1
            continue
        try:
            source = crops.path(sighting.crop_path)
        except CrossviewError:
            source = None
        if source is None or not source.is_file():
            missing += 1
            continue
        picks.append(_Pick(sighting, source))
    if not picks:
        since = "" if since_s is None else " recorded since then"
        raise TrainingExportError(f"no confirmed sightings with crops{since} to export ({unknown} unknown, "
                                  f"{deleted} of deleted identities, {missing} without a crop file, "
                                  f"{before} before --since)")
    cameras = sorted({(p.sighting.edge_id, p.sighting.camera_id) for p in picks})
    if len(cameras) > MAX_CAMERAS:
        raise TrainingExportError(f"expected at most {MAX_CAMERAS} cameras (Market-1501 names carry one digit), "
                                  f"got {len(cameras)}; export a part at a time with --since")
    camera_index = {camera: n + 1 for n, camera in enumerate(cameras)}
    pid_of: dict[str, int] = {}
    for pick in picks:
        pid_of.setdefault(str(pick.sighting.identity_id), len(pid_of) + 1)
    _prepare(out, force)

    counts: dict[tuple[int, int], int] = {}
    written: list[tuple[object, ...]] = []
    for pick in tqdm(picks, desc="export", unit="crop", disable=not progress, leave=False):
        s = pick.sighting
        pid, cam = pid_of[str(s.identity_id)], camera_index[(s.edge_id, s.camera_id)]
        counts[(pid, cam)] = frame = counts.get((pid, cam), 0) + 1
        name = f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg"
        shutil.copyfile(pick.source, out / TRAIN_FOLDER / name)
        written.append((name, s.sighting_id, s.identity_id, s.edge_id, s.camera_id, s.start_s, s.end_s, s.created_s))

    per_pid = {pid: sum(n for (p, _), n in counts.items() if p == pid) for pid in pid_of.values()}
    per_cam = {cam: sum(n for (_, c), n in counts.items() if c == cam) for cam in camera_index.values()}
    _write_csv(out / "identities.csv", ("pid", "identity_id", "display_name", "images"),
               ((f"{pid:04d}", identity_id, identities[identity_id].display_name, per_pid[pid])
                for identity_id, pid in pid_of.items()))
    _write_csv(out / "cameras.csv", ("camera", "edge_id", "camera_id", "images"),
               ((f"c{n}", edge_id, camera_id, per_cam[n]) for (edge_id, camera_id), n in camera_index.items()))
    _write_csv(out / "sightings.csv", ("file", "sighting_id", "identity_id", "edge_id", "camera_id", "start_s",
                                       "end_s", "created_s"), written)
    return ExportSummary(out, len(picks), len(pid_of), len(cameras), unknown, deleted, missing, before)
