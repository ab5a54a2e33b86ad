"""The gallery every edge recalls against: identities, reference crops, vectors per model, versions.

An identity is enrolled from photos (JPEG bytes or BGR images), from a sighting's crop, or by the
short-list service for a new cross-camera identity. Vectors are computed at the hub for every model
fingerprint in use (the fingerprints of registered edges' models and of stored vectors): a vector
is only ever compared with vectors of its own model, so each edge gets its own model's vectors.

Versions are gallery change numbers from the store (see `cloud.store.base`). `delta_since` turns
"the edge holds version v" into `GalleryDeltaPart`s (GalleryDelta messages once `cloud.wire` encodes
them), split so none exceeds `max_delta_bytes`: each split point is the version of the last identity
in the part, and since a delta from v carries every identity changed after v in its *current* state,
an edge that stops after any part resumes correctly from that part's `to_version`. Listeners hear
the new version after every change; the session manager uses that to push deltas to connected edges.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloud.crops import CropFiles
from cloud.store import GalleryEntry, HubStore, IdentityRecord, StoreError
from cloud.verification import GalleryMatrix
from cloud.wire import upsert_size
from models.errors import CrossviewError, InvalidInputError
from models.scores import check_p_same
from protos import codec

log = logging.getLogger(__name__)

Photo = bytes | np.ndarray
DEFAULT_MAX_PHOTO_BYTES = 8 * 1024 * 1024


class UnknownFingerprintError(CrossviewError):
    """The hub cannot run the model an edge's vectors come from."""


def zoo_embedder(fingerprint: str) -> Any:
    """Open the Re-ID model whose fingerprint is `fingerprint` (``<name>@<sha12>``): a built-in zoo model
    or a user model registered on this machine (`crossview models add`, the same name as the edge's)."""
    from models.embed import create_embedder
    from models.zoo import spec_for_fingerprint

    spec = spec_for_fingerprint(fingerprint)
    if spec is None:
        raise UnknownFingerprintError(f"no Re-ID model in the zoo or the user models has fingerprint "
                                      f"{fingerprint!r} (register the edge's model here with `crossview models add`)")
    return create_embedder(spec.name)


class Embedders:
    """One embedder per fingerprint, opened on first use by `factory(fingerprint)`.

    An embedder is anything with ``embed(images) -> Embeddings`` (a `models.embed.Embedder`).
    Each is used by one thread at a time.
    """

    def __init__(self, factory: Callable[[str], Any] = zoo_embedder) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Any, threading.Lock]] = {}
        self._failed: dict[str, str] = {}

    def _get(self, fingerprint: str) -> tuple[Any, threading.Lock]:
        with self._lock:
            if fingerprint in self._open:
                return self._open[fingerprint]
            if fingerprint in self._failed:
                raise UnknownFingerprintError(self._failed[fingerprint])
            try:
                entry = (self._factory(fingerprint), threading.Lock())
            except Exception as exc:
                self._failed[fingerprint] = f"cannot run model {fingerprint!r}: {exc}"
                raise UnknownFingerprintError(self._failed[fingerprint]) from exc
            self._open[fingerprint] = entry
            return entry

    def supports(self, fingerprint: str) -> bool:
        """Whether the model can be opened (it is, and kept open)."""
        try:
            self._get(fingerprint)
        except UnknownFingerprintError:
            return False
        return True

    def dim(self, fingerprint: str) -> int | None:
        embedder, _ = self._get(fingerprint)
        dim = getattr(embedder, "dim", None)
        return int(dim) if dim else None

    def embed(self, fingerprint: str, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 vectors of `images` made by the model `fingerprint`."""
        embedder, lock = self._get(fingerprint)
        with lock:
            result = embedder.embed(list(images))
        vectors = getattr(result, "vectors", result)
        got = getattr(result, "model_fingerprint", fingerprint)
        if got != fingerprint:
            raise UnknownFingerprintError(f"embedder for {fingerprint!r} produced vectors of {got!r}")
        return np.asarray(vectors, dtype=np.float32).reshape(len(images), -1)


@dataclass
class GalleryDeltaPart:
    """Brings an edge from `from_version` to `to_version` (`cloud.wire.gallery_delta_payload` encodes it);
    a `full_snapshot` replaces whatever the edge holds."""

    from_version: int
    to_version: int = 0
    full_snapshot: bool = False
    upserts: list[GalleryEntry] = field(default_factory=list)  # in their current state
    removals: list[str] = field(default_factory=list)  # identity ids


@dataclass(frozen=True)
class _KeptMatrix:
    version: int
    rows: dict[str, np.ndarray]  # identity id -> its row, in version order
    matrix: GalleryMatrix


class Gallery:
    """Identities and their reference crops and vectors, versioned in `store`."""

    def __init__(self, store: HubStore, crops: CropFiles, embedders: Embedders, *,
                 clock: Callable[[], float] = time.time, max_delta_bytes: int = 1 << 20,
                 max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES, page_size: int = 256,
                 reference_cache_size: int = 1024) -> None:
        self.store, self.crops, self.embedders = store, crops, embedders
        self._clock = clock
        self.max_delta_bytes = max_delta_bytes
        self.max_photo_bytes = max_photo_bytes
        self._page_size = page_size
        self._listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._matrices: dict[str, _KeptMatrix] = {}
        self.reference_cache_size = reference_cache_size
        self._references: collections.OrderedDict[tuple[str, int | None, int | None], tuple[np.ndarray, ...]] = \
            collections.OrderedDict()

    # ------------------------------------------------------------------ change notification
    def add_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(version)` after every change this process makes; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, version: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(version)
            except Exception:
                log.exception("gallery listener %r failed", listener)

    def version(self) -> int:
        return self.store.gallery_version()

    # ------------------------------------------------------------------ enrolment and edits
    def _photos(self, photos: Sequence[Photo]) -> tuple[list[bytes], list[np.ndarray]]:
        if not photos:
            raise InvalidInputError("photos: expected at least one photo, got none")
        jpegs, images = [], []
        for i, photo in enumerate(photos):
            try:
                if isinstance(photo, np.ndarray):
                    jpeg = codec.crop_to_jpeg(photo)
                    image = photo
                else:
                    jpeg = bytes(photo)
                    image = codec.jpeg_to_image(jpeg, self.max_photo_bytes)
            except InvalidInputError as exc:
                raise InvalidInputError(f"photo {i}: {exc}") from None
            jpegs.append(jpeg)
            images.append(image)
        return jpegs, images

    def _vectors(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for fingerprint in sorted(self.store.fingerprints()):
            if not self.embedders.supports(fingerprint):
                continue
            out[fingerprint] = self.embedders.embed(fingerprint, images)
        return out

    def _save(self, jpegs: Sequence[bytes]) -> list[str]:
        return [self.crops.save("references", self.crops.new_name(), jpeg) for jpeg in jpegs]

    def enroll(self, photos: Sequence[Photo], *, identity_id: str | None = None, display_name: str = "",
               watchlist_threshold: float | None = None, source: str = "photo",
               sighting_id: int | None = None) -> IdentityRecord:
        """Create an identity from `photos`; an existing `identity_id` is left as it is and returned."""
        check_watchlist_threshold(watchlist_threshold)
        jpegs, images = self._photos(photos)
        identity_id = identity_id or f"id-{uuid.uuid4().hex[:12]}"
        existing = self.store.get_identity(identity_id)
        if existing is not None:
            return existing
        vectors = self._vectors(images)
        paths = self._save(jpegs)
        try:
            version = self.store.create_identity(identity_id, display_name=display_name,
                                                 watchlist_threshold=watchlist_threshold, source=source,
                                                 crop_paths=paths, embeddings=vectors, sighting_id=sighting_id,
                                                 now=self._clock())
        except BaseException:
            for path in paths:
                self.crops.delete(path)
            raise
        if version is None:  # created meanwhile by someone else
            for path in paths:
                self.crops.delete(path)
        else:
            self._changed(version)
            self._fill_missing(set(vectors))
        record = self.store.get_identity(identity_id)
        assert record is not None
        return record

    def enroll_from_sighting(self, sighting_id: int, *, identity_id: str | None = None, display_name: str = "",
                             watchlist_threshold: float | None = None) -> IdentityRecord:
        """A new identity from a sighting's crop, or (with an existing `identity_id`) one more
        reference crop for that identity.

        Without `identity_id`, a sighting of an automatic ("auto") identity promotes that identity
        (same id, new name and watchlist threshold when given) instead of enrolling the person twice.
        An unknown sighting (nobody the hub knew) becomes a sighting of the identity it is enrolled in.
        """
        check_watchlist_threshold(watchlist_threshold)
        sighting = self.store.get_sighting(sighting_id)
        if sighting is None:
            raise StoreError(f"unknown sighting {sighting_id}")
        if identity_id is None and sighting.identity_id is not None:
            owner = self.store.get_identity(sighting.identity_id)
            if owner is not None and not owner.deleted and owner.source == "auto":
                return self._promote(owner, display_name, watchlist_threshold)
        jpeg = self.crops.read(sighting.crop_path)
        if identity_id is not None and self.store.get_identity(identity_id) is not None:
            self.add_photos(identity_id, [jpeg], sighting_id=sighting_id)
            record = self.store.get_identity(identity_id)
        else:
            record = self.enroll([jpeg], identity_id=identity_id, display_name=display_name,
                                 watchlist_threshold=watchlist_threshold, source="sighting", sighting_id=sighting_id)
        assert record is not None
        if sighting.identity_id is None:
            self.store.assign_sighting(sighting_id, record.identity_id)
        return record

    def _promote(self, identity: IdentityRecord, display_name: str,
                 watchlist_threshold: float | None) -> IdentityRecord:
        changes: dict[str, Any] = {}
        if display_name and display_name != identity.display_name:
            changes["display_name"] = display_name
        if watchlist_threshold is not None and watchlist_threshold != identity.watchlist_threshold:
            changes["watchlist_threshold"] = watchlist_threshold
        if changes:
            self._changed(self.store.update_identity(identity.identity_id, now=self._clock(), **changes))
        record = self.store.get_identity(identity.identity_id)
        assert record is not None
        return record

    def add_photos(self, identity_id: str, photos: Sequence[Photo], *, sighting_id: int | None = None) -> int:
        jpegs, images = self._photos(photos)
        if self.store.get_identity(identity_id) is None:
            raise StoreError(f"unknown identity {identity_id!r}")
        vectors = self._vectors(images)
        paths = self._save(jpegs)
        try:
            version = self.store.add_reference_crops(identity_id, paths, vectors, sighting_id=sighting_id,
                                                     now=self._clock())
        except BaseException:
            for path in paths:
                self.crops.delete(path)
            raise
        self._changed(version)
        return version

    def set_watchlist(self, identity_id: str, threshold: float | None) -> int:
        """Put the identity on the watchlist with a P(same) threshold in [0, 1], or take it off (None)."""
        check_watchlist_threshold(threshold)
        version = self.store.update_identity(identity_id, watchlist_threshold=threshold, now=self._clock())
        self._changed(version)
        return version

    def rename(self, identity_id: str, display_name: str) -> int:
        version = self.store.update_identity(identity_id, display_name=display_name, now=self._clock())
        self._changed(version)
        return version

    def remove(self, identity_id: str) -> int:
        version, paths = self.store.remove_identity(identity_id, now=self._clock())
        for path in paths:
            self.crops.delete(path)
        self._changed(version)
        return version

    def ensure_fingerprint(self, fingerprint: str) -> int:
        """Compute vectors of `fingerprint` for every identity lacking them; how many were computed."""
        count = 0
        for identity_id in self.store.identities_missing(fingerprint):
            images = self.reference_images(identity_id)
            if not images:
                continue
            try:
                version = self.store.set_embeddings(identity_id, fingerprint,
                                                    self.embedders.embed(fingerprint, images), now=self._clock())
            except StoreError:  # removed meanwhile
                continue
            count += 1
            self._changed(version)
        return count

    def _fill_missing(self, done: set[str]) -> None:
        for fingerprint in self.store.fingerprints() - done:
            if self.embedders.supports(fingerprint):
                self.ensure_fingerprint(fingerprint)

    # ------------------------------------------------------------------ reading
    def reference_images(self, identity_id: str, limit: int | None = None, *,
                         version: int | None = None) -> list[np.ndarray]:
        """The identity's reference crops (BGR, read-only when cached), oldest first; unreadable files
        are skipped. With the identity's `version` (`IdentityRecord.version`, which every change of the
        identity bumps) the decoded crops are kept, the last `reference_cache_size` identities' worth."""
        key = (identity_id, version, limit)
        if version is not None:
            with self._lock:
                cached = self._references.get(key)
                if cached is not None:
                    self._references.move_to_end(key)
                    return list(cached)
        images, complete = [], True
        for ref in self.store.reference_crops(identity_id)[:limit]:
            try:
                images.append(codec.jpeg_to_image(self.crops.read(ref.path), self.max_photo_bytes))
            except (OSError, InvalidInputError) as exc:
                complete = False  # perhaps passing: not kept
                log.warning("reference crop %s of %s unreadable: %s", ref.path, identity_id, exc)
        if version is not None and complete and self.reference_cache_size:
            for image in images:
                image.flags.writeable = False  # shared by every later caller
            with self._lock:
                self._references[key] = tuple(images)
                while len(self._references) > self.reference_cache_size:
                    self._references.popitem(last=False)
        return images

    def matrix(self, fingerprint: str) -> GalleryMatrix:
        """One L2-normalised mean vector per live identity with vectors of `fingerprint`, in version order.

        Kept per fingerprint and brought up to date from the identities changed since (a full read only
        the first time, or when the store's history no longer reaches back to the kept version)."""
        version = self.store.gallery_version()
        with self._lock:
            cached = self._matrices.get(fingerprint)
        if cached is not None and cached.version == version:
            return cached.matrix
        if cached is None or cached.version > version or cached.version < self.store.gallery_floor():
            rows: dict[str, np.ndarray] = {}
            after, include_deleted = 0, False
        else:
            rows, after, include_deleted = dict(cached.rows), cached.version, True
        while True:
            page = self.store.gallery_entries(fingerprint, after_version=after, up_to_version=version,
                                              include_deleted=include_deleted, limit=self._page_size)
            for entry in page:
                identity_id = entry.identity.identity_id
                rows.pop(identity_id, None)  # a changed identity moves to its new version's place
                if not entry.identity.deleted and entry.vectors is not None and len(entry.vectors):
                    mean = entry.vectors.mean(axis=0)
                    rows[identity_id] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            if len(page) < self._page_size:
                break
            after = page[-1].identity.version
        matrix = (GalleryMatrix(tuple(rows), np.asarray(list(rows.values()), np.float32)) if rows
                  else GalleryMatrix.empty())
        with self._lock:
            self._matrices[fingerprint] = _KeptMatrix(version, rows, matrix)
        return matrix

    def delta_since(self, version: int, fingerprint: str) -> list[GalleryDeltaPart]:
        """Deltas that bring an edge at `version` to the current version (empty when it is there).

        An unknown version (ahead of the hub, e.g. after a database restore) or one older than the
        store's floor gets a full snapshot, whose first part has from_version 0.
        """
        current = self.store.gallery_version()
        snapshot = version <= 0 or version > current or version < self.store.gallery_floor()
        if not snapshot and version == current:
            return []
        if snapshot and current == 0:
            if version <= 0:
                return []
            current = self.store.bump_gallery_version()  # a version to reset the edge to
        deltas: list[GalleryDeltaPart] = []
        part = GalleryDeltaPart(from_version=0 if snapshot else version, full_snapshot=snapshot)
        size, after = 0, part.from_version
        while True:
            page = self.store.gallery_entries(fingerprint, after_version=after, up_to_version=current,
                                              include_deleted=not snapshot, limit=self._page_size)
            for entry in page:
                deleted = entry.identity.deleted
                item_size = (len(entry.identity.identity_id) + 4 if deleted
                             else upsert_size(entry, fingerprint) + 8)
                if size and size + item_size > self.max_delta_bytes:
                    part.to_version = after
                    deltas.append(part)
                    part = GalleryDeltaPart(from_version=after)
                    size = 0
                if deleted:
                    part.removals.append(entry.identity.identity_id)
                else:
                    part.upserts.append(entry)
                size += item_size
                after = entry.identity.version
            if len(page) < self._page_size:
                break
        if part.upserts or part.removals or part.from_version < current:
            part.to_version = current
            deltas.append(part)
        return deltas


def check_watchlist_threshold(threshold: float | None) -> None:
    """The one rule for a watchlist threshold (gallery, REST API, CLI): None, or a P(same) in [0, 1]
    (`models.scores`): a confirmed sighting whose P(same) reaches it raises an alert."""
    if threshold is not None:
        check_p_same("watchlist_threshold", threshold)


__all__ = ["Embedders", "Gallery", "GalleryDeltaPart", "UnknownFingerprintError", "check_watchlist_threshold",
           "zoo_embedder"]
