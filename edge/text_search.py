"""Search of the edge's own footage by description (issue 15): a hub text job answered from the store.

Ranking is `models.attributes.scoring.rank_by_description` — the description's likelihood under each
tracklet's stored attribute profile, refined by the cross-modal neighbour re-ranking over the stored
Re-ID vectors — on a `ProfileTable` (arrays, not profile objects): `TextIndex` holds every closed
tracklet's attributes as a table with its camera, span and stored vector, built once per store
generation (`TrackletStore.generation`), so a query parses no JSON and builds no objects; only the
hits' profiles are read back. The answer equals `rank_by_description` on every profile parsed from the
store (tests/edge/test_text_search.py; the full-scan reference of tools/bench_edge.py).

With a text-image model (`TextEncoder`: `models.attributes.text_image.TextImageEncoder`), the index
also holds each tracklet's image-tower vector (stored by the embedding worker under that model's
fingerprint) and stage one mixes in the cosine with the query text's vector; a tracklet without one
takes the neutral text-image score, and the notes say how many.

Tracklets stored before attributes were read (NULL in the store) are not searched; how many of the
job's cameras and time range were left out is said in a note. Cameras of the job not on this edge are
named in a note, not refused: the hub sends one job to every edge, so a camera of another edge is no
error here (the hub refuses camera names no edge has). A description this edge cannot read (an unknown
attribute or colour name) is refused with INVALID_ARGUMENT (`edge.uplink.messages.text_job`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edge.footage_search import MAX_HITS, UNAVAILABLE, FootageHit, SearchJobError
from edge.storage.store import TrackletStore, UnknownIdError
from models.attributes.scoring import ProfileTable, rank_by_description
from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, TextQuery
from models.errors import InvalidInputError
from protos.codec import check_jpeg

log = logging.getLogger(__name__)

_COLOUR_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}
RERANK_WEIGHT = 0.1  # rank_by_description's default; a text score is the ranked score / (1 + weight)


@dataclass(frozen=True)
class TextJob:
    """A text job as plain data: the parsed description and the job's filters (`top_k` 0: the default)."""

    job_id: str
    query: TextQuery
    camera_ids: tuple[str, ...] = ()
    start_s: float | None = None
    end_s: float | None = None
    top_k: int = 0


def profile_table(dicts: Sequence[dict]) -> ProfileTable:
    """A `ProfileTable` straight from stored profile dicts (`AttributeProfile.to_dict`), no objects built."""
    n = len(dicts)
    probs = np.empty((n, len(ATTRIBUTE_NAMES)), np.float64)
    colour = np.full((n, 2), -1, np.int64)
    confidence = np.zeros((n, 2), np.float64)
    for i, d in enumerate(dicts):
        p = d["probabilities"]
        probs[i] = [p[name] for name in ATTRIBUTE_NAMES]
        for j, part in enumerate(("upper", "lower")):
            reading = d.get(part)
            if reading is not None:
                colour[i, j] = _COLOUR_INDEX[reading["name"]]
                confidence[i, j] = reading["confidence"]
    return ProfileTable(probs, colour, confidence)


@dataclass(frozen=True)
class TextIndex:
    """The store's closed tracklets as of one store generation: those with attributes as a `ProfileTable`
    with their ids, cameras, spans, best crops, profile JSON and stored vectors of one model (zero rows
    where a tracklet has none; None: none has one), and the cameras and spans of the older ones.

    Built from the store's rows in the order they were added; `extended` appends the rows added since
    when nothing else changed (`TrackletStore.rewrites`), so a live edge's new tracklets cost a query
    of their own rows, not a rebuild."""

    generation: int
    rewrites: int
    last_rowid: int
    ids: tuple[str, ...]
    cameras: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    crops: tuple[Path | None, ...]
    profile_json: tuple[str, ...]
    table: ProfileTable
    vectors: np.ndarray | None
    older: tuple[np.ndarray, np.ndarray, np.ndarray]  # cameras, start_s, end_s of tracklets without attributes
    # the text-image model's image vectors, like `vectors` but NaN rows where a tracklet has none, so a
    # query's cosines are NaN there, which `combined_similarity` reads as neutral ("" / None: no model)
    text_image_fingerprint: str = ""
    text_image_vectors: np.ndarray | None = None
    model_fingerprint: str = ""  # whose vectors `vectors` are

    @staticmethod
    def build(store: TrackletStore, model_fingerprint: str, text_image_fingerprint: str = "") -> TextIndex:
        return TextIndex._from_rows(store, model_fingerprint, text_image_fingerprint, None)

    def extended(self, store: TrackletStore, model_fingerprint: str, text_image_fingerprint: str = "") -> TextIndex:
        """This index with the rows the store added since; a new build when the store rewrote rows (also
        while this runs) or other models are asked for."""
        if store.rewrites != self.rewrites or (model_fingerprint, text_image_fingerprint) != (
                self.model_fingerprint, self.text_image_fingerprint):
            return TextIndex.build(store, model_fingerprint, text_image_fingerprint)
        return TextIndex._from_rows(store, model_fingerprint, text_image_fingerprint, self)

    @staticmethod
    def _from_rows(store: TrackletStore, model_fingerprint: str, text_image_fingerprint: str,
                   base: TextIndex | None) -> TextIndex:
        generation, rewrites = store.generation, store.rewrites  # read first: a write meanwhile shows next time
        if base is not None and rewrites != base.rewrites:  # rows under the base changed: only a build is true
            base = None
        rows = store.searchable_rows(model_fingerprint, after_rowid=0 if base is None else base.last_rowid,
                                     extra_fingerprint=text_image_fingerprint)
        if base is not None and not rows:
            return dataclasses.replace(base, generation=generation, rewrites=rewrites)
        dicts, has = [], np.zeros(len(rows), bool)
        for i, r in enumerate(rows):
            if r[5] is None:
                continue
            try:
                dicts.append(json.loads(r[5]))
                has[i] = True
            except ValueError:
                log.warning("tracklet %s: its stored attributes are unreadable; not searched", r[1])
        try:
            table = profile_table(dicts)
        except (KeyError, TypeError, ValueError) as exc:  # written by hand, not by this store: one by one
            log.warning("stored attributes of an unexpected shape (%s); reading them one by one", exc)
            table, has = _checked_table(rows, has)
        searchable = [r for r, h in zip(rows, has, strict=True) if h]
        older = [r for r, h in zip(rows, has, strict=True) if not h]
        added = TextIndex(generation, rewrites, rows[-1][0] if rows else 0, tuple(r[1] for r in searchable),
                          _column(searchable, 2, object), _column(searchable, 3, np.float64),
                          _column(searchable, 4, np.float64), tuple(r[6] for r in searchable),
                          tuple(r[5] for r in searchable), table, _vectors(searchable, 7),
                          (_column(older, 2, object), _column(older, 3, np.float64), _column(older, 4, np.float64)),
                          text_image_fingerprint, _vectors(searchable, 10, fill=np.nan), model_fingerprint)
        return added if base is None else _joined(base, added)


def _vectors(rows: list, column: int, fill: float = 0.0) -> np.ndarray | None:
    """The rows' vectors from (bytes, dim, dtype) at `column` (`fill` where a row has none); None when none has
    one."""
    known = [r for r in rows if r[column] is not None]
    if not known:
        return None
    dim, dtype = int(known[0][column + 1]), np.dtype(known[0][column + 2])
    vectors = np.full((len(rows), dim), fill, np.float32)
    for i, r in enumerate(rows):
        if r[column] is not None:
            vectors[i] = np.frombuffer(r[column], dtype)
    return vectors


def _joined_vectors(base: np.ndarray | None, n_base: int, added: np.ndarray | None, n_added: int,
                    fill: float = 0.0) -> np.ndarray | None:
    if base is None and added is None:
        return None
    dim = (base if base is not None else added).shape[1]  # type: ignore[union-attr]
    return np.concatenate([v if v is not None else np.full((n, dim), fill, np.float32)
                           for v, n in ((base, n_base), (added, n_added))])


def _joined(base: TextIndex, added: TextIndex) -> TextIndex:
    vectors = _joined_vectors(base.vectors, len(base.ids), added.vectors, len(added.ids))
    table = ProfileTable(*(np.concatenate([a, b]) for a, b in zip(
        (base.table.probabilities, base.table.colour, base.table.confidence),
        (added.table.probabilities, added.table.colour, added.table.confidence), strict=True)))
    return TextIndex(added.generation, added.rewrites, added.last_rowid, base.ids + added.ids,
                     np.concatenate([base.cameras, added.cameras]), np.concatenate([base.start_s, added.start_s]),
                     np.concatenate([base.end_s, added.end_s]), base.crops + added.crops,
                     base.profile_json + added.profile_json, table, vectors,
                     tuple(np.concatenate([a, b]) for a, b in zip(base.older, added.older, strict=True)),
                     added.text_image_fingerprint, _joined_vectors(base.text_image_vectors, len(base.ids),
                                                                   added.text_image_vectors, len(added.ids),
                                                                   fill=np.nan), added.model_fingerprint)


def _column(rows: list, i: int, dtype: type) -> np.ndarray:
    return np.array([r[i] for r in rows], dtype=dtype)


def _in_filters(job: TextJob, cameras: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray | None:
    """Which rows pass the job's cameras and time range; None: all of them."""
    keep = None
    if job.camera_ids:
        wanted = set(job.camera_ids)
        keep = np.fromiter((c in wanted for c in cameras), bool, len(cameras))
    if job.start_s is not None:
        keep = (end_s >= job.start_s) if keep is None else keep & (end_s >= job.start_s)
    if job.end_s is not None:
        keep = (start_s <= job.end_s) if keep is None else keep & (start_s <= job.end_s)
    return keep


def _checked_table(rows: list, has: np.ndarray) -> tuple[ProfileTable, np.ndarray]:
    dicts = []
    for i, r in enumerate(rows):
        if has[i]:
            try:
                dicts.append(AttributeProfile.from_dict(json.loads(r[5])).to_dict())
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("tracklet %s: its stored attributes are unreadable (%s); not searched", r[1], exc)
                has[i] = False
    return profile_table(dicts), has


_CACHE: weakref.WeakKeyDictionary[TrackletStore, TextIndex] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def text_index(store: TrackletStore, model_fingerprint: str, text_image_fingerprint: str = "") -> TextIndex:
    """The store's index for its current generation (extended or rebuilt when the store changed)."""
    with _CACHE_LOCK:
        index = _CACHE.get(store)
        if index is None:
            index = TextIndex.build(store, model_fingerprint, text_image_fingerprint)
        elif (index.generation != store.generation or index.model_fingerprint != model_fingerprint
              or index.text_image_fingerprint != text_image_fingerprint):
            index = index.extended(store, model_fingerprint, text_image_fingerprint)
        _CACHE[store] = index
        return index


@runtime_checkable
class TextEncoder(Protocol):
    """`models.attributes.text_image.TextImageEncoder`, as far as text search uses it."""

    fingerprint: str
    weight: float
    cosine_range: tuple[float, float]

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


def _text_image_cosine(job: TextJob, index: TextIndex, rows: np.ndarray, encoder: TextEncoder | None,
                       notes: list[str]) -> np.ndarray | None:
    """The query text's cosine with each of `rows`' text-image vectors, NaN where none is stored (and for
    every row when the text tower failed: said in `notes`); None when the edge has no text-image model.
    A NaN takes the neutral text-image score (`combined_similarity`), so an edge with a model puts every
    score on one scale."""
    if encoder is None:
        return None
    cosine = np.full(len(rows), np.nan)
    vectors = index.text_image_vectors
    low, high = encoder.cosine_range
    notes.append(f"stage one: attributes mixed with text-image model {encoder.fingerprint} (weight "
                 f"{encoder.weight:g}, its cosines {low:g}..{high:g} read as 0..1, no vector as 0.5)")
    if vectors is None or not len(rows):
        if len(rows):
            notes.append("no tracklet has a text-image vector yet: its part of every score is 0.5")
        return cosine
    try:
        text = encoder.encode_text([job.query.text])[0]
    except Exception as exc:  # the attribute ranking still answers; the hub hears why it is alone
        log.warning("text job %s: the text-image model failed: %s", job.job_id, exc)
        notes.append(f"the text-image model failed ({type(exc).__name__}): its part of every score is 0.5")
        return cosine
    cosine = (vectors @ text)[rows].astype(np.float64)  # one matrix-vector product; NaN where no vector
    missing = int(np.count_nonzero(np.isnan(cosine)))
    if missing:
        notes.append(f"{missing} tracklets have no text-image vector (recorded before the model was on, or "
                     "its image tower failed on them)")
    return cosine


def rank_text(job: TextJob, store: TrackletStore | None, *, model_fingerprint: str, default_top_k: int = 50,
              text_image: TextEncoder | None = None) -> tuple[TextIndex, list[tuple[int, float]], list[str]]:
    """(the index, [(index row, text score in [0, 1])] best first, notes); SearchJobError when unanswerable.

    With `text_image` (a text-image model: `TextImageEncoder`), stage one mixes the cosine of the query
    text's vector and each tracklet's stored image vector into the attribute score
    (`models.attributes.scoring.combined_similarity`, weighted by `text_image.weight`).
    The text score is the re-ranked similarity scaled by 1 / (1 + weight) into [0, 1] (same order)."""
    if store is None:
        raise SearchJobError(job.job_id, UNAVAILABLE, "this edge keeps no local store")
    index = text_index(store, model_fingerprint, "" if text_image is None else text_image.fingerprint)
    notes = []
    if job.camera_ids:
        known = {c[0] for c in store.cameras()}
        unknown = [c for c in job.camera_ids if c not in known]
        if len(unknown) == len(job.camera_ids):  # the hub fans one job out to every edge: not an error here
            return index, [], [f"none of the cameras asked for is on this edge ({', '.join(unknown)}); this edge "
                               f"has {', '.join(sorted(known)) or 'no cameras'}"]
        if unknown:
            notes.append(f"cameras not on this edge, not searched: {', '.join(unknown)}")
    older = _in_filters(job, *index.older)
    missing = len(index.older[0]) if older is None else int(np.count_nonzero(older))
    if missing:
        notes.append(f"{missing} tracklets have no attributes yet (recorded before attributes were on) "
                     "and were not searched")
    keep = _in_filters(job, index.cameras, index.start_s, index.end_s)
    rows = np.arange(len(index.ids)) if keep is None else np.flatnonzero(keep)
    table, vectors = index.table, index.vectors
    if keep is not None:  # only a filtered job copies rows; an unfiltered one ranks the index's own arrays
        table = ProfileTable(table.probabilities[rows], table.colour[rows], table.confidence[rows])
        vectors = None if vectors is None else vectors[rows]
    top_k = min(job.top_k if job.top_k > 0 else default_top_k, MAX_HITS)
    cosine = _text_image_cosine(job, index, rows, text_image, notes)
    mixing = {} if cosine is None else {"text_image_cosine": cosine, "text_image_weight": text_image.weight,
                                        "text_image_range": text_image.cosine_range}
    best, scores = rank_by_description(job.query, table, vectors, top_k=top_k, weight=RERANK_WEIGHT, **mixing)
    scale = 1.0 + RERANK_WEIGHT if vectors is not None else 1.0
    return index, [(int(rows[b]), float(min(max(score / scale, 0.0), 1.0))) for b, score in zip(best, scores,
                                                                                                 strict=True)], notes


def find_text(job: TextJob, store: TrackletStore | None, *, model_fingerprint: str, default_top_k: int = 50,
              text_image: TextEncoder | None = None) -> tuple[list[FootageHit], list[str]]:
    """The text job's hits with their crops, attributes and text scores, best first, and the notes. A hit
    reads only its crop file (its size from the JPEG header) and its profile JSON: no SQL per hit."""
    index, ranked, notes = rank_text(job, store, model_fingerprint=model_fingerprint, default_top_k=default_top_k,
                                     text_image=text_image)
    assert store is not None
    hits = []
    for row, score in ranked:
        tid, path = index.ids[row], index.crops[row]
        vector = None if index.vectors is None or not index.vectors[row].any() else index.vectors[row]
        try:
            if vector is None:
                vector = store.vector(tid, model_fingerprint).vectors[0]
            if path is None:
                raise OSError("it has no crop")
            data = path.read_bytes()
            height, width = check_jpeg(data)  # the header only: no decoding
        except (OSError, InvalidInputError, UnknownIdError) as exc:  # e.g. removed by retention; the hub needs both
            log.warning("text search hit %s left out: %s", tid, exc)
            continue
        hits.append(FootageHit(tid, str(index.cameras[row]), float(index.start_s[row]), float(index.end_s[row]),
                               1.0 - score, vector, data, width, height,
                               AttributeProfile.from_dict(json.loads(index.profile_json[row])), score))
    return hits, notes
