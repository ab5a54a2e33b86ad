"""The edge's copy of the hub's gallery: identities and their reference vectors, kept in SQLite (WAL)
and served for recall through an incremental k-reciprocal `GalleryIndex`.

Versions: the hub numbers gallery states; a `GalleryDelta` moves the edge from `from_version` to
`to_version`. A delta is applied whole or not at all: it is decoded and checked first (versions,
each vector's model fingerprint and dimension, ids), then written in one transaction, and only after
the commit is the in-memory index changed (``remove`` then ``add``, a batch each). A refused delta
raises `GalleryDeltaError` and changes nothing; the hub answers a refusal with a full snapshot.

Model: a gallery holds vectors of exactly one model (`model_fingerprint`, `dim`). Opened with
another model than the one it was written with, the gallery is emptied and reset to version 0: its
vectors cannot be compared with the new model's, and version 0 in the next Hello makes the hub send
a full snapshot made with the model the edge now runs.

Index ids are the rows of ``gallery_vectors`` (never reused), so an identity with several reference
vectors has several index items; `recall` returns one identity id per item and
`edge.shortlist.ShortListPolicy` counts each identity once, at its nearest item.

Threads: one connection and one re-entrant lock held by every public method.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import InvalidInputError
from models.rerank import GalleryIndex, unit_distances
from models.rerank.adaptive import rerank_k1
from models.types import Embeddings
from persist.sqlite import SqliteDatabase, write_transaction

log = logging.getLogger(__name__)


class GalleryDeltaError(InvalidInputError):
    """A delta that does not apply to this gallery (version, model, dimension or ids); nothing changed."""


_MIGRATIONS: list[list[str]] = [
    [  # 1
        "CREATE TABLE gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE gallery_identities (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, "
        "watchlist_threshold REAL)",
        "CREATE TABLE gallery_vectors (item INTEGER PRIMARY KEY AUTOINCREMENT, "
        "identity TEXT NOT NULL REFERENCES gallery_identities (id) ON DELETE CASCADE, data BLOB NOT NULL)",
        "CREATE INDEX gallery_vectors_by_identity ON gallery_vectors (identity)",
    ],
]


@dataclass(frozen=True)
class Identity:
    """A gallery identity: reference vectors (N, D) float32 (N may be 0) and an optional watchlist threshold."""

    identity_id: str
    vectors: np.ndarray
    display_name: str = ""
    watchlist_threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.identity_id, str) or not self.identity_id:
            raise GalleryDeltaError(f"identity_id: expected a non-empty string, got {self.identity_id!r}")
        v = self.vectors
        if not isinstance(v, np.ndarray) or v.ndim != 2 or v.dtype != np.float32:
            got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise GalleryDeltaError(f"identity {self.identity_id!r}: expected float32 vectors (N, D), got {got}")
        if not np.all(np.isfinite(v)) or (len(v) and np.any(np.linalg.norm(v, axis=1) == 0)):
            raise GalleryDeltaError(f"identity {self.identity_id!r}: expected finite non-zero vectors")
        t = self.watchlist_threshold
        if t is not None and not (isinstance(t, int | float) and math.isfinite(t)):
            raise GalleryDeltaError(f"identity {self.identity_id!r}: expected a finite watchlist threshold, got {t!r}")


@dataclass(frozen=True)
class GalleryChange:
    """A decoded `GalleryDelta` (`edge.uplink.messages.decode_delta`): every vector in `upserts` is of the
    model `model_fingerprint`."""

    from_version: int
    to_version: int
    model_fingerprint: str
    upserts: tuple[Identity, ...] = ()
    removals: tuple[str, ...] = ()
    full_snapshot: bool = False

    def __post_init__(self) -> None:
        if self.from_version < 0 or self.to_version <= self.from_version:
            raise GalleryDeltaError(f"delta: expected 0 <= from_version < to_version, "
                                    f"got {self.from_version} -> {self.to_version}")
        ids = [u.identity_id for u in self.upserts]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise GalleryDeltaError(f"delta: expected each identity upserted once, got repeats {repeated[:5]}")
        both = sorted(set(ids) & set(self.removals))
        if both:
            raise GalleryDeltaError(f"delta: expected an identity to be upserted or removed, not both: {both[:5]}")
        if any(not isinstance(r, str) or not r for r in self.removals):
            raise GalleryDeltaError("delta: expected removals to be non-empty identity ids")


@dataclass(frozen=True)
class IdentityInfo:
    identity_id: str
    display_name: str
    watchlist_threshold: float | None
    vectors: int


class EdgeGallery(SqliteDatabase):
    """The gallery synced from the hub, persisted at `path`; see the module docstring.

    Args:
        path: SQLite file (its own, or shared with the store: the tables are ``gallery_*``).
        model_fingerprint, dim: the edge's Re-ID model; every vector in the gallery is of it.
        rerank_min_identities: below this many identities recall orders by cosine distance
            (`models.rerank.adaptive.rerank_k1`); above, k1 follows the images per identity, at most `k1`.
        **rerank_kwargs: passed to `GalleryIndex` (k1, k2, lambda_value, neighbours, ...).
    """

    def __init__(self, path: Path, model_fingerprint: str, dim: int, *, rerank_min_identities: int = 20,
                 **rerank_kwargs: object) -> None:
        if not isinstance(model_fingerprint, str) or not model_fingerprint.strip():
            raise InvalidInputError(f"model_fingerprint: expected a non-empty string, got {model_fingerprint!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim: expected a positive int, got {dim!r}")
        self.model_fingerprint = model_fingerprint
        self.dim = dim
        self._rerank_kwargs = dict(rerank_kwargs)
        self.rerank_min_identities = int(rerank_min_identities)
        self._k1_max = GalleryIndex(**self._rerank_kwargs).k1  # also rejects bad parameters before the file
        self._k1: int | None = None  # re-ranking's k1 for the gallery as it is; None: off
        super().__init__(path)
        try:
            self._migrate("gallery", _MIGRATIONS)
            self._adopt_model()
            self._version = int(self._meta("version") or 0)
            self._rebuild_index()
        except BaseException:
            self.close()
            raise

    # -- reading

    @property
    def version(self) -> int:
        """The gallery version held (0 = empty, never synced)."""
        with self._lock:
            return self._version

    @property
    def size(self) -> int:
        """Reference vectors in the index (an identity may have several)."""
        with self._lock:
            return self._index.size

    def identities(self) -> list[IdentityInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.id, i.display_name, i.watchlist_threshold, COUNT(v.item) FROM gallery_identities i "
                "LEFT JOIN gallery_vectors v ON v.identity = i.id GROUP BY i.id ORDER BY i.id").fetchall()
        return [IdentityInfo(r[0], r[1], None if r[2] is None else float(r[2]), int(r[3])) for r in rows]

    def watchlist_thresholds(self) -> dict[str, float]:
        """identity id → its watchlist threshold, for identities on the watchlist (for `ShortListPolicy`)."""
        with self._lock:
            rows = self._conn.execute("SELECT id, watchlist_threshold FROM gallery_identities "
                                      "WHERE watchlist_threshold IS NOT NULL ORDER BY id").fetchall()
        return {r[0]: float(r[1]) for r in rows}

    def recall_scored(self, vector: np.ndarray | Embeddings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Identity ids (M,), ordering distances (M,) and plain cosine distances (M,), one per item in
        index order: the order is k-reciprocal re-ranked when the gallery is large enough for that to
        help (`models.rerank.adaptive`), else the cosine distance itself."""
        x = self._query_vector(vector)
        with self._lock:
            if self._index.size == 0:
                return np.zeros(0, dtype="<U1"), np.zeros(0, np.float32), np.zeros(0, np.float32)
            cosine = self._index.cosine_distances(x)
            order = cosine if self._k1 is None else self._index.query(x)[0]
            return self._column_ids.copy(), order, cosine

    def recall(self, vector: np.ndarray | Embeddings, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Re-ranked distances of one tracklet vector to the gallery.

        Args:
            vector: (D,) or (1, D) of this gallery's model; `Embeddings` are checked for the fingerprint.
            top_k: None for every item, else the `top_k` nearest items.

        Returns:
            identity ids (M,) as a numpy string array (one per item; an identity can repeat) and
            k-reciprocal distances (M,) float32, lower is closer; M = 0 for an empty gallery.
            With `top_k`, nearest first; without, in index order.
        """
        x = self._query_vector(vector)
        with self._lock:
            if self._index.size == 0:
                return np.zeros(0, dtype="<U1"), np.zeros(0, np.float32)
            if top_k is None:
                return self._column_ids.copy(), self._index.query(x)[0]
            items, distances = self._index.query(x, int(top_k))
            return np.array([self._item_identity[int(i)] for i in items[0]], dtype=str), distances[0]

    # -- changing

    def apply_delta(self, change: GalleryChange) -> int:
        """Apply a delta atomically; returns the new version. Raises GalleryDeltaError (nothing changed).

        A wire `GalleryDelta` is decoded by `edge.uplink.messages.decode_delta`."""
        if not isinstance(change, GalleryChange):
            raise GalleryDeltaError(f"delta: expected a GalleryChange, got {type(change).__name__}")
        with self._lock:
            self._check(change)
            removed, added = self._write(change)
            self._version = change.to_version
            try:
                self._update_index(change.full_snapshot, removed, added)
            except Exception:  # the database is right; rebuild the index from it rather than serve a wrong one
                log.exception("incremental gallery index update failed; rebuilding it from %s", self.path)
                self._rebuild_index()
            log.info("gallery %s: version %d, %d vectors in the index", self.path, self._version, self._index.size)
            return self._version

    # -- internals (call with self._lock held)

    def _check(self, change: GalleryChange) -> None:
        if change.model_fingerprint != self.model_fingerprint:
            raise GalleryDeltaError(f"delta: expected vectors of model {self.model_fingerprint!r}, "
                                    f"got {change.model_fingerprint!r}")
        if not change.full_snapshot and change.from_version != self._version:
            raise GalleryDeltaError(f"delta {change.from_version} -> {change.to_version} does not apply to gallery "
                                    f"version {self._version}: expected from_version {self._version} "
                                    f"(or a full snapshot)")
        for u in change.upserts:
            if u.vectors.shape[1] != self.dim:
                raise GalleryDeltaError(f"identity {u.identity_id!r}: expected vectors of dimension {self.dim}, "
                                        f"got shape {u.vectors.shape}")

    def _write(self, change: GalleryChange) -> tuple[list[int], list[tuple[int, str, np.ndarray]]]:
        """One transaction; returns (removed items, added (item, identity, vector))."""
        added: list[tuple[int, str, np.ndarray]] = []
        with write_transaction(self._conn) as conn:
            if change.full_snapshot:
                removed = [r[0] for r in conn.execute("SELECT item FROM gallery_vectors")]
                conn.execute("DELETE FROM gallery_identities")
            else:
                touched = [*change.removals, *(u.identity_id for u in change.upserts)]
                removed = self._items_of(touched)
                unknown = set(change.removals) - self._known(change.removals)
                if unknown:  # already gone: the end state is the one the hub wants
                    log.debug("gallery delta removes unknown identities %s", sorted(unknown)[:5])
                conn.executemany("DELETE FROM gallery_identities WHERE id = ?", [(r,) for r in change.removals])
            for u in change.upserts:
                conn.execute(
                    "INSERT INTO gallery_identities (id, display_name, watchlist_threshold) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, "
                    "watchlist_threshold = excluded.watchlist_threshold",
                    (u.identity_id, u.display_name, u.watchlist_threshold))
                conn.execute("DELETE FROM gallery_vectors WHERE identity = ?", (u.identity_id,))
                added += self._insert_vectors(u)
            self._set_meta("version", str(change.to_version))
        return removed, added

    def _insert_vectors(self, identity: Identity) -> list[tuple[int, str, np.ndarray]]:
        out = []
        for row in np.ascontiguousarray(identity.vectors, dtype="<f4"):
            cur = self._conn.execute("INSERT INTO gallery_vectors (identity, data) VALUES (?, ?)",
                                     (identity.identity_id, row.tobytes()))
            out.append((int(cur.lastrowid), identity.identity_id, row.astype(np.float32)))
        return out

    def _update_index(self, full: bool, removed: Sequence[int], added: Sequence[tuple[int, str, np.ndarray]]) -> None:
        if full:
            self._index = self._new_index()
            self._item_identity = {}
        elif removed:
            self._index.remove(np.asarray(removed, np.int64))
            for item in removed:
                self._item_identity.pop(int(item), None)
        if added:
            self._index.add(np.array([a[0] for a in added], np.int64), np.stack([a[2] for a in added]))
            self._item_identity.update((a[0], a[1]) for a in added)
        self._refresh_columns()

    def _rebuild_index(self) -> None:
        rows = self._conn.execute("SELECT item, identity, data FROM gallery_vectors ORDER BY item").fetchall()
        self._index = self._new_index()
        self._item_identity = {int(r[0]): r[1] for r in rows}
        if rows:
            vectors = np.frombuffer(b"".join(r[2] for r in rows), "<f4").reshape(len(rows), self.dim)
            self._index.add(np.array([r[0] for r in rows], np.int64), vectors.astype(np.float32))
        self._refresh_columns()

    def _new_index(self) -> GalleryIndex:
        return GalleryIndex(**{**self._rerank_kwargs, "k1": self._k1 or self._k1_max})

    def _refresh_columns(self) -> None:
        ids = [self._item_identity[int(i)] for i in self._index.ids]
        self._column_ids = np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
        k1 = rerank_k1(len(set(ids)), len(ids), k1_max=self._k1_max, min_identities=self.rerank_min_identities)
        if k1 != self._k1:
            self._k1 = k1
            log.info("gallery: %d identities, %d vectors: %s", len(set(ids)), len(ids),
                     "ordering by cosine distance" if k1 is None else f"k-reciprocal re-ranking with k1={k1}")
            # the neighbourhoods depend on k1: compare with the index's own (built under an earlier k1,
            # kept while re-ranking was off, it is not necessarily k1_max)
            if k1 is not None and k1 != self._index.k1 and self._index.size:
                self._rebuild_index()

    def _adopt_model(self) -> None:
        """Record the model on a new gallery; empty a gallery written with another model."""
        fingerprint, dim = self._meta("fingerprint"), self._meta("dim")
        if fingerprint == self.model_fingerprint and dim == str(self.dim):
            return
        with write_transaction(self._conn) as conn:
            if fingerprint is not None:
                log.warning("gallery %s holds vectors of model %r (dim %s); this edge runs %r (dim %d): emptying it "
                            "so the hub sends a full snapshot", self.path, fingerprint, dim, self.model_fingerprint,
                            self.dim)
                conn.execute("DELETE FROM gallery_identities")
            self._set_meta("fingerprint", self.model_fingerprint)
            self._set_meta("dim", str(self.dim))
            self._set_meta("version", "0")

    def _query_vector(self, vector: np.ndarray | Embeddings) -> np.ndarray:
        if isinstance(vector, Embeddings):
            if vector.model_fingerprint != self.model_fingerprint:
                raise InvalidInputError(f"recall: expected a vector of model {self.model_fingerprint!r}, "
                                        f"got {vector.model_fingerprint!r}")
            vector = vector.vectors
        if not isinstance(vector, np.ndarray):
            raise InvalidInputError(f"recall: expected a numpy array, got {type(vector).__name__}")
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        if vector.shape != (self.dim,):
            raise InvalidInputError(f"recall: expected one vector of shape ({self.dim},), got {vector.shape}")
        return vector

    def _items_of(self, identity_ids: Sequence[str]) -> list[int]:
        items: list[int] = []
        for identity in identity_ids:
            items += [int(r[0]) for r in self._conn.execute("SELECT item FROM gallery_vectors WHERE identity = ?",
                                                            (identity,))]
        return items

    def _known(self, identity_ids: Sequence[str]) -> set[str]:
        return {i for i in identity_ids
                if self._conn.execute("SELECT 1 FROM gallery_identities WHERE id = ?", (i,)).fetchone()}

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM gallery_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO gallery_meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


class MemoryGallery:
    """An in-memory gallery of identities (several vectors each), recalled with k-reciprocal re-ranking.

    Args:
        model_fingerprint: vectors of any other model are refused.
        dim: vector dimension.
        rerank: k-reciprocal re-ranking (`GalleryIndex`, k1/k2/lambda as in the paper); False gives
            plain squared Euclidean distances of unit vectors (0..4).

    Every change bumps `version`. Thread-safe.
    """

    def __init__(self, model_fingerprint: str, dim: int, *, rerank: bool = True, k1: int = 20, k2: int = 6,
                 lambda_value: float = 0.3) -> None:
        if not isinstance(model_fingerprint, str) or not model_fingerprint:
            raise InvalidInputError(f"model_fingerprint: expected a non-empty string, got {model_fingerprint!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim: expected an integer >= 1, got {dim!r}")
        self.model_fingerprint = model_fingerprint
        self.dim = dim
        self.rerank = rerank
        self._params = (k1, k2, lambda_value)
        self._lock = threading.Lock()
        self._identities: list[str] = []  # per entry
        self._vectors = np.zeros((0, dim), np.float32)
        self._watchlist: dict[str, float] = {}
        self._index: GalleryIndex | None = None
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    @property
    def size(self) -> int:
        """Gallery entries (vectors), not identities."""
        return len(self._identities)

    def identities(self) -> list[str]:
        with self._lock:
            return sorted(set(self._identities))

    def add(self, identity_id: str, vectors: Embeddings | np.ndarray, *,
            watchlist_threshold: float | None = None) -> None:
        """Add (N, D) or (D,) vectors of one identity; Embeddings must be of `model_fingerprint`."""
        if not isinstance(identity_id, str) or not identity_id:
            raise InvalidInputError(f"identity_id: expected a non-empty string, got {identity_id!r}")
        if isinstance(vectors, Embeddings):
            if vectors.model_fingerprint != self.model_fingerprint:
                raise InvalidInputError(f"vectors: expected model fingerprint {self.model_fingerprint!r}, "
                                        f"got {vectors.model_fingerprint!r}")
            vectors = vectors.vectors
        rows = np.asarray(vectors, dtype=np.float32)
        rows = rows[None] if rows.ndim == 1 else rows
        if rows.ndim != 2 or rows.shape[1] != self.dim or len(rows) == 0:
            raise InvalidInputError(f"vectors: expected shape (N, {self.dim}) with N >= 1, got {np.shape(vectors)}")
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if not np.all(np.isfinite(rows)) or np.any(norms == 0):
            raise InvalidInputError("vectors: expected finite, non-zero vectors")
        with self._lock:
            self._identities += [identity_id] * len(rows)
            self._vectors = np.concatenate([self._vectors, rows / norms])
            if watchlist_threshold is not None:
                self._watchlist[identity_id] = float(watchlist_threshold)
            self._index = None
            self._version += 1

    def watchlist_thresholds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._watchlist)

    def recall(self, vector: np.ndarray | Embeddings) -> tuple[list[str], np.ndarray]:
        ids, order, _ = self.recall_scored(vector)
        return ids, order

    def recall_scored(self, vector: np.ndarray | Embeddings) -> tuple[list[str], np.ndarray, np.ndarray]:
        if isinstance(vector, Embeddings):
            if vector.model_fingerprint != self.model_fingerprint:
                raise InvalidInputError(f"vector: expected model fingerprint {self.model_fingerprint!r}, "
                                        f"got {vector.model_fingerprint!r}")
            vector = vector.vectors
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape != (self.dim,):
            raise InvalidInputError(f"vector: expected shape ({self.dim},), got {np.shape(vector)}")
        with self._lock:
            if not self._identities:
                return [], np.zeros(0, np.float32), np.zeros(0, np.float32)
            # 1 - cos, clipped as GalleryIndex.cosine_distances clips it: rounding can reach 2.0000002, which the
            # hub refuses on the wire
            cosine = np.minimum(unit_distances(query[None] / np.linalg.norm(query), self._vectors)[0] / 2.0,
                                np.float32(2.0))
            if not self.rerank:
                return list(self._identities), cosine, cosine
            if self._index is None:  # gallery-only work, once per version
                k1, k2, lam = self._params
                self._index = GalleryIndex(k1, k2, lam)
                self._index.add(np.arange(len(self._identities)), self._vectors)
            distances = self._index.query(query)[0]
            return list(self._identities), distances, cosine
