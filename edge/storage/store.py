"""The edge's local store: cameras, tracklets, vectors and sightings in SQLite; best crops as JPEG files.

Durability: WAL with ``synchronous=FULL`` — every commit fsyncs the WAL before returning, so what a
call acknowledged (by returning) survives a killed process *and* a power cut. ``NORMAL`` survives only
the former, and edge boxes (a Jetson on a pole) lose power far more often than servers; a commit is
one tracklet, a few per second, so the extra fsync is cheap.

Crops and rows: a crop goes to a temporary file, is fsynced, renamed into place and its folder fsynced
*before* the row naming it commits; files are unlinked only *after* their rows are gone. A crash thus
never leaves a row pointing at a missing file, only unreferenced files, which the sweep run on every
open deletes (with leftover ``.part`` files); it also drops rows whose file vanished behind our back.
Database and crops folder carry the same store id (``meta`` table, ``.store-id`` file), so a wrong
pairing is refused instead of swept, and an exclusive ``flock`` on ``<crops_dir>/.lock`` (released by
the kernel if the process dies) makes this the only open store on that folder.

Threads: one connection behind one re-entrant lock held by every public method; share a store freely.

Modules: the SQLite plumbing (connection, write transactions, migrations), shared with every store,
lives in `persist.sqlite`; the crop files (durable writes, the sweep's scan, the folder lock,
store-id pairing, JPEG encoding) in `edge.storage.crop_files`; the records it returns in
`edge.storage.records`; its tables in `edge.storage.schema`. Their errors and the records are importable from here too.

Layout: crop paths have their own table (one row per file) so orphan checks and byte counts are
exact; ``tracklets.bytes`` caches each tracklet's crop + vector bytes for retention.
``schema_version`` has a row per component (``store``, ``outbox``), so the outbox may share the file.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edge.storage.crop_files import (
    CropLike,
    bind_store_id,
    lock_folder,
    scan_crops_dir,
    to_jpeg,
    unlink_crops,
    unlock_folder,
    write_crop_files,
)
from edge.storage.crop_files import CropsFolderMismatchError as CropsFolderMismatchError  # re-exported (API)
from edge.storage.crop_files import StoreLockedError as StoreLockedError  # re-exported (API)
from edge.storage.records import RetentionReport, Sighting, StoreStats, SweepReport, TrackletRecord
from edge.storage.schema import STORE_MIGRATIONS
from models.attributes.types import AttributeProfile
from models.errors import CrossviewError, InvalidInputError
from models.types import Embeddings, Tracklet
from persist.sqlite import SchemaVersionError as SchemaVersionError  # re-exported (API)
from persist.sqlite import SqliteDatabase, write_transaction

log = logging.getLogger(__name__)


class UnknownIdError(CrossviewError, LookupError):
    """A camera, tracklet or outbox entry that the store does not hold."""


class FingerprintMismatchError(InvalidInputError):
    """Vectors of one model were asked to meet vectors of another; refused, never compared."""


# ---------------------------------------------------------------- the store

class TrackletStore(SqliteDatabase):
    """SQLite (WAL) store of an edge's tracklets with their best crops as JPEG files under `crops_dir`.

    `crops_dir` defaults to ``<path>.crops`` next to the database. See the module docstring for the
    durability, crash and threading guarantees.
    """

    def __init__(self, path: Path, crops_dir: Path | None = None, *, jpeg_quality: int = 90,
                 clock: Callable[[], float] = time.time) -> None:
        path = Path(path)
        self._clock = clock
        self.crops_dir = Path(crops_dir) if crops_dir is not None else path.with_name(path.name + ".crops")
        if not 1 <= jpeg_quality <= 100:
            raise InvalidInputError(f"jpeg_quality: expected 1..100, got {jpeg_quality}")
        self.jpeg_quality = jpeg_quality
        self._generation = 0
        self._rewrites = 0
        self.crops_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_folder(self.crops_dir)
        try:
            super().__init__(path)
        except BaseException:
            unlock_folder(self._lock_fd)
            raise
        try:
            self._migrate("store", STORE_MIGRATIONS)
            bind_store_id(self._conn, self.crops_dir, self.path)
            self.last_sweep = self.sweep()
        except BaseException:
            self.close()
            raise

    # -- lifecycle (close and `with` come from SqliteDatabase)

    def _release(self) -> None:
        unlock_folder(self._lock_fd)

    @property
    def generation(self) -> int:
        """Bumped by every write to tracklets, vectors or attributes through this store: a cache key."""
        return self._generation

    @property
    def rewrites(self) -> int:
        """Bumped by every such write except adding a new closed tracklet (with its crops, vector and
        attributes, in one `upsert_tracklet`): a cache built at the same count may catch up on the rows
        added since (`searchable_rows(after_rowid=...)`) instead of rebuilding."""
        return self._rewrites

    def _changed(self, *, appended: bool = False) -> None:
        self._generation += 1
        if not appended:
            self._rewrites += 1

    # -- cameras

    def add_camera(self, camera_id: str, name: str | None = None, source: str = "",
                   added: float | None = None) -> None:
        """Register a camera, or update its name and source; calling it again on restart is harmless."""
        _require_text("camera_id", camera_id)
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute("INSERT INTO cameras (id, name, source, added) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET name = excluded.name, source = excluded.source",
                         (camera_id, name or camera_id, str(source), self._clock() if added is None else added))

    def cameras(self) -> list[tuple[str, str, str, float]]:
        """(id, name, source, added) of every camera, in id order."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute("SELECT id, name, source, added FROM cameras ORDER BY id")]

    # -- tracklets

    def upsert_tracklet(self, tracklet: Tracklet, crops: Sequence[CropLike] | None = None, *,
                        closed: bool = False, attributes: AttributeProfile | None = None,
                        extra_vectors: Sequence[Embeddings] = ()) -> TrackletRecord:
        """Insert or update a tracklet; `crops` (JPEG bytes, BGR images or `Crop`s, best first) replace
        its crop files. With `crops=None` the tracklet's own `crops` are used, or, when it has none,
        the stored files are kept. A tracklet's `embedding` and `extra_vectors` (of other models, e.g. a
        text-image model's image tower) are stored as with `put_vector`, its `attributes` (None: the
        stored ones are kept) as with `put_attributes`; all in one transaction.
        """
        if not isinstance(tracklet, Tracklet):
            raise InvalidInputError(f"tracklet: expected a Tracklet, got {type(tracklet).__name__}")
        profile_json = None if attributes is None else _profile_json(attributes)
        if crops is None and tracklet.crops:
            crops = tracklet.crops
        blobs = None if crops is None else [to_jpeg(c, self.jpeg_quality) for c in crops]
        tid = tracklet.tracklet_id
        appended = False
        with self._lock:
            written = write_crop_files(self.crops_dir, tid, blobs) if blobs else []
            old: list[str] = []
            try:
                with write_transaction(self._conn) as conn:
                    self._require_camera(tracklet.camera_id)
                    row = conn.execute("SELECT camera FROM tracklets WHERE id = ?", (tid,)).fetchone()
                    if row is not None and row[0] != tracklet.camera_id:
                        raise InvalidInputError(f"tracklet {tid!r}: expected camera {row[0]!r} (as stored), "
                                                f"got {tracklet.camera_id!r}")
                    appended = row is None and closed
                    conn.execute(
                        "INSERT INTO tracklets (id, camera, track_id, start_s, end_s, closed, updated) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "track_id = excluded.track_id, start_s = excluded.start_s, end_s = excluded.end_s, "
                        "closed = excluded.closed, updated = excluded.updated",
                        (tid, tracklet.camera_id, int(tracklet.track_id), float(tracklet.start_s),
                         float(tracklet.end_s), int(bool(closed)), self._clock()))
                    if blobs is not None:
                        old = [r[0] for r in conn.execute("SELECT path FROM crops WHERE tracklet = ?", (tid,))]
                        conn.execute("DELETE FROM crops WHERE tracklet = ?", (tid,))
                        conn.executemany("INSERT INTO crops (tracklet, rank, path, bytes) VALUES (?, ?, ?, ?)",
                                         [(tid, rank, rel, size) for rank, (rel, size) in enumerate(written)])
                    for embedding in (tracklet.embedding, *extra_vectors):
                        if embedding is not None:
                            self._put_vector_row(tid, embedding)
                    if profile_json is not None:
                        conn.execute("UPDATE tracklets SET attributes = ? WHERE id = ?", (profile_json, tid))
                    self._refresh_bytes(tid)
            except BaseException:
                self._unlink(rel for rel, _ in written)
                raise
            finally:
                self._changed(appended=appended)
            self._unlink(old)
            return self.get_tracklet(tid)

    def get_tracklet(self, tracklet_id: str) -> TrackletRecord:
        with self._lock:
            row = self._conn.execute("SELECT id, camera, track_id, start_s, end_s, closed, bytes FROM tracklets "
                                     "WHERE id = ?", (tracklet_id,)).fetchone()
            if row is None:
                raise UnknownIdError(f"unknown tracklet {tracklet_id!r}")
            fingerprints = tuple(r[0] for r in self._conn.execute(
                "SELECT fingerprint FROM vectors WHERE tracklet = ? ORDER BY fingerprint", (tracklet_id,)))
            return TrackletRecord(row[0], row[1], int(row[2]), float(row[3]), float(row[4]), bool(row[5]),
                                  tuple(self._crop_paths(tracklet_id)), fingerprints, int(row[6]))

    def crop_paths(self, tracklet_id: str) -> list[Path]:
        """Absolute paths of a tracklet's crop files, best first."""
        with self._lock:
            self._require_tracklet(tracklet_id)
            return self._crop_paths(tracklet_id)

    # -- vectors

    def put_vector(self, tracklet_id: str, embedding: Embeddings) -> None:
        """Store a tracklet's one aggregated vector for `embedding.model_fingerprint` (replacing it)."""
        with self._lock, write_transaction(self._conn):
            self._changed()
            self._require_tracklet(tracklet_id)
            self._put_vector_row(tracklet_id, embedding)
            self._refresh_bytes(tracklet_id)

    # -- attributes (issue 15)

    def put_attributes(self, tracklet_id: str, profile: AttributeProfile) -> None:
        """Store (replace) a tracklet's aggregated attribute profile, as JSON."""
        profile_json = _profile_json(profile)
        with self._lock, write_transaction(self._conn) as conn:
            self._changed()
            self._require_tracklet(tracklet_id)
            conn.execute("UPDATE tracklets SET attributes = ? WHERE id = ?", (profile_json, tracklet_id))

    def attributes(self, tracklet_id: str) -> AttributeProfile | None:
        """A tracklet's attribute profile; None for one stored before attributes were read."""
        with self._lock:
            row = self._conn.execute("SELECT attributes FROM tracklets WHERE id = ?", (tracklet_id,)).fetchone()
        if row is None:
            raise UnknownIdError(f"unknown tracklet {tracklet_id!r}")
        return None if row[0] is None else AttributeProfile.from_dict(json.loads(row[0]))

    def attribute_rows(self) -> list[tuple[str, str, float, float, str | None, Path | None]]:
        """(id, camera, start_s, end_s, profile JSON or None, best crop's path or None) of every closed
        tracklet, oldest first."""
        with self._lock:
            return [(r[0], r[1], float(r[2]), float(r[3]), r[4], None if r[5] is None else self.crops_dir / r[5])
                    for r in self._conn.execute(
                        "SELECT t.id, t.camera, t.start_s, t.end_s, t.attributes, c.path FROM tracklets t "
                        "LEFT JOIN crops c ON c.tracklet = t.id AND c.rank = 0 WHERE t.closed = 1 "
                        "ORDER BY t.end_s, t.id")]

    def searchable_rows(self, fingerprint: str, after_rowid: int = 0, extra_fingerprint: str = "") -> list[tuple]:
        """(rowid, id, camera, start_s, end_s, profile JSON or None, best crop's path or None, the
        tracklet's vector of model `fingerprint` as (bytes, dim, dtype) or three Nones, then its vector of
        `extra_fingerprint` the same way) of every closed tracklet added after `after_rowid`, in the order
        they were added (`rewrites` says whether rows before it may have changed)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.rowid, t.id, t.camera, t.start_s, t.end_s, t.attributes, c.path, v.data, v.dim, v.dtype, "
                "w.data, w.dim, w.dtype FROM tracklets t LEFT JOIN crops c ON c.tracklet = t.id AND c.rank = 0 "
                "LEFT JOIN vectors v ON v.tracklet = t.id AND v.fingerprint = ? "
                "LEFT JOIN vectors w ON w.tracklet = t.id AND w.fingerprint = ? "
                "WHERE t.closed = 1 AND t.rowid > ? ORDER BY t.rowid",
                (fingerprint, extra_fingerprint, after_rowid)).fetchall()
        return [(*r[:3], float(r[3]), float(r[4]), r[5], None if r[6] is None else self.crops_dir / r[6], *r[7:])
                for r in rows]

    def vector(self, tracklet_id: str, fingerprint: str) -> Embeddings:
        with self._lock:
            self._require_tracklet(tracklet_id)
            row = self._conn.execute("SELECT dim, dtype, data FROM vectors WHERE tracklet = ? AND fingerprint = ?",
                                     (tracklet_id, fingerprint)).fetchone()
            if row is None:
                held = self.get_tracklet(tracklet_id).fingerprints
                raise UnknownIdError(f"tracklet {tracklet_id!r} has no vector of model {fingerprint!r}; "
                                     f"it has {list(held)}")
            return Embeddings(np.frombuffer(row[2], np.dtype(row[1])).reshape(1, row[0]).copy(), fingerprint)

    def vectors(self, fingerprint: str | Embeddings, since: float | None = None, camera: str | None = None,
                start_s: float | None = None, end_s: float | None = None) -> tuple[list[str], np.ndarray]:
        """Tracklet ids and their (N, D) vectors made by model `fingerprint`, oldest tracklet first.

        since: only vectors stored at or after this wall-clock time (incremental pulls).
        camera: only this camera's tracklets. start_s/end_s: only tracklets overlapping that span.
        Raises FingerprintMismatchError when the store holds vectors but none of this model: a search
        with a query of another model is refused rather than answered with nothing.
        """
        fp = fingerprint.model_fingerprint if isinstance(fingerprint, Embeddings) else fingerprint
        _require_text("fingerprint", fp)
        with self._lock:
            spec = self._conn.execute("SELECT dim, dtype FROM vectors WHERE fingerprint = ? LIMIT 1",
                                      (fp,)).fetchone()
            if spec is None:
                held = [r[0] for r in self._conn.execute("SELECT DISTINCT fingerprint FROM vectors LIMIT 5")]
                if held:
                    raise FingerprintMismatchError(f"model fingerprint mismatch: this store holds no vectors of "
                                                   f"{fp!r}, only of {held}; refusing to compare across models")
                return [], np.zeros((0, 0), np.float32)
            if camera is not None:
                self._require_camera(camera)
            sql = ("SELECT t.id, v.data FROM vectors v JOIN tracklets t ON t.id = v.tracklet "
                   "WHERE v.fingerprint = ?")
            args: list[object] = [fp]
            for clause, value in (("v.stored >= ?", since), ("t.camera = ?", camera),
                                  ("t.end_s >= ?", start_s), ("t.start_s <= ?", end_s)):
                if value is not None:
                    sql += f" AND {clause}"
                    args.append(value)
            rows = self._conn.execute(sql + " ORDER BY t.end_s, t.id", args).fetchall()
        dim, dtype = int(spec[0]), np.dtype(spec[1])
        data = np.frombuffer(b"".join(r[1] for r in rows), dtype).reshape(len(rows), dim).copy()
        return [r[0] for r in rows], data

    # -- sightings

    def add_sighting(self, tracklet_id: str, identity_id: str, distance: float, time_s: float | None = None,
                     source: str = "edge") -> int:
        """Record that a tracklet was matched to an identity; returns the sighting id."""
        _require_text("identity_id", identity_id)
        if not math.isfinite(float(distance)):
            raise InvalidInputError(f"distance: expected a finite number, got {distance}")
        with self._lock, write_transaction(self._conn) as conn:
            self._require_tracklet(tracklet_id)
            cur = conn.execute("INSERT INTO sightings (tracklet, identity, distance, time, source) "
                               "VALUES (?, ?, ?, ?, ?)", (tracklet_id, identity_id, float(distance),
                                                          self._clock() if time_s is None else float(time_s),
                                                          str(source)))
            return int(cur.lastrowid)

    def sightings(self, tracklet_id: str | None = None, identity_id: str | None = None) -> list[Sighting]:
        """Sightings in time order, optionally of one tracklet and/or one identity."""
        sql, args = "SELECT id, tracklet, identity, distance, time, source FROM sightings WHERE 1", []
        if tracklet_id is not None:
            sql, args = sql + " AND tracklet = ?", [*args, tracklet_id]
        if identity_id is not None:
            sql, args = sql + " AND identity = ?", [*args, identity_id]
        with self._lock:
            return [Sighting(int(r[0]), r[1], r[2], float(r[3]), float(r[4]), r[5])
                    for r in self._conn.execute(sql + " ORDER BY time, id", args)]

    # -- retention and housekeeping

    def apply_retention(self, max_age_s: float | None = None, max_total_bytes: int | None = None,
                        now: float | None = None, age_by: str = "seen") -> RetentionReport:
        """Delete tracklets (rows, vectors, sightings and crop files together), oldest `end_s` first.

        max_age_s: every tracklet last seen more than this long before `now` goes, open or closed
        (an open tracklet that old was abandoned). `age_by="seen"` ages a tracklet by its last-seen
        stream time `end_s` (wall-clock for live streams); `age_by="stored"` by when it was last written
        here, which is what recorded footage (stream times counted from the file's start) needs.
        max_total_bytes: closed tracklets go until the crop + vector bytes of all tracklets fit; open
        ones are still being written and stay, and `over_budget` says when they alone exceed the
        budget. Rows go first, files after: a crash in between leaves only orphan files, which the
        next open sweeps.
        """
        for name, value in (("max_age_s", max_age_s), ("max_total_bytes", max_total_bytes)):
            if value is not None and not value >= 0:
                raise InvalidInputError(f"{name}: expected a non-negative number or None, got {value}")
        if age_by not in ("seen", "stored"):
            raise InvalidInputError(f"age_by: expected 'seen' or 'stored', got {age_by!r}")
        age_column = "end_s" if age_by == "seen" else "updated"
        now = self._clock() if now is None else float(now)
        with self._lock:
            with write_transaction(self._conn) as conn:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
                conn.execute("DELETE FROM temp.doomed")
                if max_age_s is not None:
                    conn.execute(f"INSERT INTO temp.doomed SELECT id FROM tracklets WHERE {age_column} < ?",
                                 (now - max_age_s,))
                total = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM tracklets").fetchone()[0]
                freed = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM tracklets "
                                     "WHERE id IN (SELECT id FROM temp.doomed)").fetchone()[0]
                if max_total_bytes is not None and total - freed > max_total_bytes:
                    extra: list[tuple[str]] = []
                    oldest = conn.execute("SELECT id, bytes FROM tracklets WHERE closed = 1 AND id NOT IN "
                                          "(SELECT id FROM temp.doomed) ORDER BY end_s, id")
                    for tid, size in oldest:
                        if total - freed <= max_total_bytes:
                            break
                        extra.append((tid,))
                        freed += size
                    oldest.close()
                    conn.executemany("INSERT INTO temp.doomed (id) VALUES (?)", extra)
                paths = [r[0] for r in conn.execute("SELECT path FROM crops WHERE tracklet IN "
                                                    "(SELECT id FROM temp.doomed)")]
                removed = conn.execute("DELETE FROM tracklets WHERE id IN (SELECT id FROM temp.doomed)").rowcount
                if removed:  # a pass that removes nothing leaves readers' caches (the text index) valid
                    self._changed()
                conn.execute("DELETE FROM temp.doomed")
            self._unlink(paths)
        remaining = int(total - freed)
        return RetentionReport(int(removed), len(paths), int(freed), remaining,
                               max_total_bytes is not None and remaining > max_total_bytes)

    def sweep(self) -> SweepReport:
        """Delete crop files no row names (and temporary files); drop crop rows whose file is gone."""
        with self._lock:
            on_disk, temps = scan_crops_dir(self.crops_dir)
            known = {r[0] for r in self._conn.execute("SELECT path FROM crops")}
            orphans = on_disk - known
            self._unlink(orphans)
            missing = sorted(known - on_disk)
            if missing:
                self._changed()
                log.warning("%d crop files named by %s are missing; dropping their rows", len(missing), self.path)
                with write_transaction(self._conn) as conn:
                    owners: set[str] = set()
                    for rel in missing:
                        owners.update(r[0] for r in conn.execute("SELECT tracklet FROM crops WHERE path = ?",
                                                                 (rel,)))
                        conn.execute("DELETE FROM crops WHERE path = ?", (rel,))
                    for tid in owners:
                        self._refresh_bytes(tid)
            return SweepReport(len(orphans), temps, len(missing))

    def stats(self) -> StoreStats:
        with self._lock:
            def one(sql: str) -> int:
                return int(self._conn.execute(sql).fetchone()[0])

            by_fp = {r[0]: int(r[1]) for r in self._conn.execute(
                "SELECT fingerprint, COUNT(*) FROM vectors GROUP BY fingerprint ORDER BY fingerprint")}
            db_bytes = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
            return StoreStats(
                cameras=one("SELECT COUNT(*) FROM cameras"),
                tracklets=one("SELECT COUNT(*) FROM tracklets"),
                open_tracklets=one("SELECT COUNT(*) FROM tracklets WHERE closed = 0"),
                crop_files=one("SELECT COUNT(*) FROM crops"),
                crop_bytes=one("SELECT COALESCE(SUM(bytes), 0) FROM crops"),
                vector_bytes=one("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM vectors"),
                sightings=one("SELECT COUNT(*) FROM sightings"),
                vectors_by_fingerprint=by_fp, db_bytes=db_bytes)

    # -- internals (call with self._lock held)

    def _require_camera(self, camera_id: str) -> None:
        if self._conn.execute("SELECT 1 FROM cameras WHERE id = ?", (camera_id,)).fetchone() is None:
            raise UnknownIdError(f"unknown camera {camera_id!r}: add it with add_camera() first")

    def _require_tracklet(self, tracklet_id: str) -> None:
        if self._conn.execute("SELECT 1 FROM tracklets WHERE id = ?", (tracklet_id,)).fetchone() is None:
            raise UnknownIdError(f"unknown tracklet {tracklet_id!r}")

    def _crop_paths(self, tracklet_id: str) -> list[Path]:
        return [self.crops_dir / r[0] for r in self._conn.execute(
            "SELECT path FROM crops WHERE tracklet = ? ORDER BY rank", (tracklet_id,))]

    def _put_vector_row(self, tracklet_id: str, embedding: Embeddings) -> None:
        if not isinstance(embedding, Embeddings):
            raise InvalidInputError(f"embedding: expected Embeddings, got {type(embedding).__name__}")
        if len(embedding) != 1:
            raise InvalidInputError(f"embedding: expected one aggregated vector (1, D), "
                                    f"got shape {embedding.vectors.shape}")
        fp, vec = embedding.model_fingerprint, np.ascontiguousarray(embedding.vectors[0])
        spec = self._conn.execute("SELECT dim, dtype FROM vectors WHERE fingerprint = ? AND tracklet != ? LIMIT 1",
                                  (fp, tracklet_id)).fetchone()
        if spec is not None and (int(spec[0]), spec[1]) != (vec.shape[0], vec.dtype.str):
            raise InvalidInputError(f"vector of model {fp!r}: expected dim {spec[0]} dtype {np.dtype(spec[1])}, "
                                    f"got dim {vec.shape[0]} dtype {vec.dtype}")
        self._conn.execute(
            "INSERT INTO vectors (tracklet, fingerprint, dim, dtype, data, stored) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tracklet, fingerprint) DO UPDATE SET dim = excluded.dim, dtype = excluded.dtype, "
            "data = excluded.data, stored = excluded.stored",
            (tracklet_id, fp, int(vec.shape[0]), vec.dtype.str, vec.tobytes(), self._clock()))

    def _refresh_bytes(self, tracklet_id: str) -> None:
        self._conn.execute(
            "UPDATE tracklets SET bytes = (SELECT COALESCE(SUM(bytes), 0) FROM crops WHERE tracklet = ?1) "
            "+ (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM vectors WHERE tracklet = ?1) WHERE id = ?1",
            (tracklet_id,))

    def _unlink(self, relative_paths: Iterator[str] | Sequence[str] | set[str]) -> None:
        unlink_crops(self.crops_dir, relative_paths)


# ---------------------------------------------------------------- helpers

def _profile_json(profile: AttributeProfile) -> str:
    if not isinstance(profile, AttributeProfile):
        raise InvalidInputError(f"attributes: expected an AttributeProfile, got {type(profile).__name__}")
    return json.dumps(profile.to_dict(), sort_keys=True, separators=(",", ":"))


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name}: expected a non-empty string, got {value!r}")
