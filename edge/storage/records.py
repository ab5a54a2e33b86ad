"""The edge store's records: what `edge.storage.store.TrackletStore` returns (importable from there too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TrackletRecord:
    """A stored tracklet: its row, its crop files (absolute, best first) and the models with a vector."""

    tracklet_id: str
    camera_id: str
    track_id: int
    start_s: float
    end_s: float
    closed: bool
    crop_paths: tuple[Path, ...]
    fingerprints: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class Sighting:
    sighting_id: int
    tracklet_id: str
    identity_id: str
    distance: float
    time_s: float
    source: str


@dataclass(frozen=True)
class RetentionReport:
    """What `apply_retention` removed; `over_budget` when open tracklets alone exceed max_total_bytes."""

    tracklets_removed: int
    crop_files_removed: int
    bytes_freed: int
    bytes_remaining: int
    over_budget: bool = False


@dataclass(frozen=True)
class SweepReport:
    orphan_files_removed: int
    temp_files_removed: int
    missing_crops_dropped: int


@dataclass(frozen=True)
class StoreStats:
    cameras: int
    tracklets: int
    open_tracklets: int
    crop_files: int
    crop_bytes: int
    vector_bytes: int
    sightings: int
    vectors_by_fingerprint: dict[str, int] = field(default_factory=dict)
    db_bytes: int = 0
