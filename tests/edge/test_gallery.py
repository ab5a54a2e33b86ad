"""EdgeGallery: deltas applied atomically or refused, full snapshots, recall, persistence across reopen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.gallery import EdgeGallery, GalleryChange, GalleryDeltaError, Identity
from edge.shortlist import ShortListPolicy
from edge.uplink.messages import decode_delta
from models.calibration import Calibration
from models.errors import InvalidInputError
from models.rerank import GalleryIndex
from models.rerank.adaptive import rerank_k1
from models.types import Embeddings
from protos.codec import vector_to_proto
from protos.crossview.v1 import hub_to_edge_pb2

FP, DIM = "test-model@1", 16


def vectors(seed: int, n: int = 2, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def upsert(identity: str, seed: int, n: int = 2, *, fp: str = FP, dim: int = DIM, name: str = "",
           threshold: float | None = None) -> hub_to_edge_pb2.IdentityUpsert:
    msg = hub_to_edge_pb2.IdentityUpsert(identity_id=identity, display_name=name,
                                         vectors=[vector_to_proto(vectors(seed, n, dim), fp)])
    if threshold is not None:
        msg.watchlist_threshold = threshold
    return msg


def delta(frm: int, to: int, upserts=(), removals=(), full: bool = False) -> hub_to_edge_pb2.GalleryDelta:
    return hub_to_edge_pb2.GalleryDelta(from_version=frm, to_version=to, upserts=list(upserts),
                                        removals=list(removals), full_snapshot=full)


def apply(g: EdgeGallery, msg: hub_to_edge_pb2.GalleryDelta) -> int:
    """A wire delta applied as the hub link applies it: decoded, then `EdgeGallery.apply_delta`."""
    return g.apply_delta(decode_delta(msg, g.model_fingerprint, g.dim))


@pytest.fixture
def gallery(tmp_path: Path) -> EdgeGallery:
    g = EdgeGallery(tmp_path / "gallery.db", FP, DIM)
    yield g
    g.close()


def state(g: EdgeGallery) -> tuple:
    probe = vectors(99, 1)[0]
    ids, d = g.recall(probe)
    return g.version, g.identities(), g.watchlist_thresholds(), ids.tolist(), np.round(d, 6).tolist()


def test_new_gallery_is_empty(gallery: EdgeGallery) -> None:
    assert gallery.version == 0 and gallery.size == 0 and gallery.identities() == []
    ids, d = gallery.recall(vectors(1, 1)[0])
    assert ids.shape == (0,) and d.shape == (0,)


def test_delta_applies_and_recall_names_identities(gallery: EdgeGallery) -> None:
    assert apply(gallery, delta(0, 1, [upsert("alice", 1, name="Alice", threshold=0.4), upsert("bob", 2, 3)])) == 1
    assert gallery.version == 1 and gallery.size == 5
    assert [(i.identity_id, i.display_name, i.vectors) for i in gallery.identities()] == [
        ("alice", "Alice", 2), ("bob", "", 3)]
    assert gallery.watchlist_thresholds() == pytest.approx({"alice": 0.4})
    query = vectors(2, 3)[1] + 0.01  # one of bob's reference vectors
    ids, d = gallery.recall(query)
    assert sorted(ids.tolist()) == ["alice"] * 2 + ["bob"] * 3
    assert ids[np.argmin(d)] == "bob"
    top_ids, top_d = gallery.recall(Embeddings(query[None], FP), top_k=2)
    assert top_ids[0] == "bob" and top_d[0] == pytest.approx(d.min()) and top_d[0] <= top_d[1]
    scored_ids, order, cosine = gallery.recall_scored(query)
    assert scored_ids.tolist() == ids.tolist()
    short = ShortListPolicy(top_k=1, watchlist=gallery.watchlist_thresholds()).decide(
        scored_ids, order, Calibration.uncalibrated(FP, "cosine_distance").p_same(cosine), cosine)
    assert short[0].identity_id == "bob" and short[0].p_same > 0.99


def test_recall_equals_an_index_built_from_scratch(gallery: EdgeGallery) -> None:
    apply(gallery, delta(0, 1, [upsert(f"p{i}", i, 3) for i in range(8)]))
    apply(gallery, delta(1, 2, [upsert("p3", 30, 2), upsert("p9", 9)], removals=["p5"]))
    fresh = GalleryIndex()
    remaining = [(f"p{i}", i, 3) for i in range(8) if i not in (3, 5)] + [("p3", 30, 2), ("p9", 9, 2)]
    refs = np.concatenate([vectors(seed, n) for _, seed, n in remaining])
    fresh.add(np.arange(len(refs)), refs)
    query = vectors(77, 1)[0]
    ids, d = gallery.recall(query)
    expected_ids = np.repeat([name for name, _, n in remaining], [n for _, _, n in remaining])
    expected = fresh.query(query)[0]
    order, expected_order = np.lexsort((ids, d)), np.lexsort((expected_ids, expected))
    assert ids[order].tolist() == expected_ids[expected_order].tolist()
    np.testing.assert_allclose(d[order], expected[expected_order], atol=1e-5)


def test_upsert_replaces_vectors_and_removal_deletes(gallery: EdgeGallery) -> None:
    apply(gallery, delta(0, 1, [upsert("alice", 1), upsert("bob", 2)]))
    apply(gallery, delta(1, 2, [upsert("alice", 3, 1, name="A")], removals=["bob", "never-there"]))
    assert [(i.identity_id, i.display_name, i.vectors) for i in gallery.identities()] == [("alice", "A", 1)]
    ids, _ = gallery.recall(vectors(5, 1)[0])
    assert ids.tolist() == ["alice"]


@pytest.mark.parametrize(("bad", "message"), [
    (delta(0, 2, [upsert("carol", 5)]), "does not apply to gallery version 1"),
    (delta(1, 1, [upsert("carol", 5)]), "from_version < to_version"),
    (delta(1, 2, [upsert("carol", 5), upsert("dave", 6, fp="other-model")]), "expected model fingerprint"),
    (delta(1, 2, [upsert("carol", 5), upsert("dave", 6, dim=8)]), "expected dimension 16"),
    (delta(1, 2, [upsert("carol", 5), upsert("carol", 6)]), "upserted once"),
    (delta(1, 2, [upsert("carol", 5)], removals=["carol"]), "not both"),
    (delta(1, 2, [upsert("", 5)]), "identity_id"),
    (delta(1, 2, [upsert("carol", 5, threshold=float("nan"))]), "finite watchlist threshold"),
])
def test_refused_delta_changes_nothing(gallery: EdgeGallery, bad: hub_to_edge_pb2.GalleryDelta, message: str) -> None:
    apply(gallery, delta(0, 1, [upsert("alice", 1), upsert("bob", 2)]))
    before = state(gallery)
    with pytest.raises(GalleryDeltaError, match=message):
        apply(gallery, bad)
    assert state(gallery) == before


def test_failure_inside_the_transaction_rolls_back(gallery: EdgeGallery, monkeypatch: pytest.MonkeyPatch) -> None:
    apply(gallery, delta(0, 1, [upsert("alice", 1), upsert("bob", 2)]))
    before = state(gallery)
    real = EdgeGallery._insert_vectors
    calls = []

    def failing(self: EdgeGallery, identity: Identity) -> list:
        calls.append(identity.identity_id)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, identity)

    monkeypatch.setattr(EdgeGallery, "_insert_vectors", failing)
    with pytest.raises(OSError, match="disk full"):
        apply(gallery, delta(1, 2, [upsert("carol", 5), upsert("dave", 6)], removals=["alice"]))
    assert calls == ["carol", "dave"]
    assert state(gallery) == before
    monkeypatch.undo()
    assert apply(gallery, delta(1, 2, [upsert("carol", 5)])) == 2


def test_full_snapshot_replaces_everything_from_any_version(gallery: EdgeGallery) -> None:
    apply(gallery, delta(0, 3, [upsert("alice", 1), upsert("bob", 2)]))
    assert apply(gallery, delta(0, 7, [upsert("zed", 9, 1)], full=True)) == 7
    assert [i.identity_id for i in gallery.identities()] == ["zed"] and gallery.size == 1
    assert apply(gallery, delta(7, 8, removals=["zed"])) == 8
    assert gallery.size == 0 and gallery.recall(vectors(1, 1)[0])[0].shape == (0,)


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    with EdgeGallery(path, FP, DIM, k1=4, k2=2) as g:
        apply(g, delta(0, 1, [upsert(f"p{i}", i, 2, threshold=0.5 if i == 2 else None) for i in range(6)]))
        apply(g, delta(1, 2, [upsert("p1", 11)], removals=["p4"]))
        before = state(g)
    with EdgeGallery(path, FP, DIM, k1=4, k2=2) as g:
        assert state(g) == before
        assert apply(g, delta(2, 3, removals=["p0"])) == 3


def test_another_model_empties_the_gallery(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    with EdgeGallery(path, FP, DIM) as g:
        apply(g, delta(0, 4, [upsert("alice", 1)]))
    with EdgeGallery(path, "test-model@2", DIM) as g:
        assert g.version == 0 and g.identities() == []
    with EdgeGallery(path, "test-model@2", 8) as g:
        assert g.version == 0


def test_decoded_change_is_accepted_and_checked(gallery: EdgeGallery) -> None:
    change = GalleryChange(0, 1, FP, (Identity("alice", vectors(1), "Alice", 0.3),))
    assert gallery.apply_delta(change) == 1
    with pytest.raises(GalleryDeltaError, match="expected vectors of model"):
        gallery.apply_delta(GalleryChange(1, 2, "other", (Identity("bob", vectors(2)),)))
    with pytest.raises(GalleryDeltaError, match="dimension 16"):
        gallery.apply_delta(GalleryChange(1, 2, FP, (Identity("bob", vectors(2, dim=4)),)))
    with pytest.raises(GalleryDeltaError, match="non-zero"):
        Identity("bob", np.zeros((1, DIM), np.float32))
    assert decode_delta(delta(1, 2, [upsert("bob", 2, 1)]), FP, DIM).upserts[0].vectors.shape == (1, DIM)


@pytest.mark.parametrize(("call", "message"), [
    (lambda g: g.recall(np.zeros(8, np.float32)), r"shape \(16,\)"),
    (lambda g: g.recall(Embeddings(vectors(1, 1), "other")), "expected a vector of model"),
    (lambda g: g.recall([0.0] * DIM), "numpy array"),
])
def test_recall_refuses_bad_queries(gallery: EdgeGallery, call, message: str) -> None:
    apply(gallery, delta(0, 1, [upsert("alice", 1)]))
    with pytest.raises(InvalidInputError, match=message):
        call(gallery)


@pytest.mark.parametrize(("args", "message"), [
    (("", DIM), "model_fingerprint"), ((FP, 0), "dim"), ((FP, DIM, {"k1": 0}), "k1"),
])
def test_constructor_errors(tmp_path: Path, args: tuple, message: str) -> None:
    kwargs = args[2] if len(args) > 2 else {}
    with pytest.raises(InvalidInputError, match=message):
        EdgeGallery(tmp_path / "g.db", args[0], args[1], **kwargs)


# ---------------------------------------------------------------- recall_scored: P(same) and adaptive re-ranking

CALIBRATED = Calibration(FP, "cosine_distance", "logistic", 4.0, -11.5)  # like the zoo's for intel-0288


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _ordered(ids: np.ndarray, d: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Rows in a canonical order (distance, then id), to compare recalls that number items differently."""
    order = np.lexsort((ids, d))
    return ids[order].tolist(), d[order]


def _fresh_rerank(refs: list[tuple[str, np.ndarray]], query: np.ndarray, **index_kwargs: object
                  ) -> tuple[list[str], np.ndarray]:
    """Re-ranked distances from an index built from scratch over `refs` (identity, (N, D) vectors)."""
    index = GalleryIndex(**index_kwargs)
    vecs = np.concatenate([v for _, v in refs])
    index.add(np.arange(len(vecs)), vecs)
    ids = np.repeat([name for name, _ in refs], [len(v) for _, v in refs])
    return _ordered(ids, index.query(query)[0])


def test_one_identity_a_near_duplicate_scores_high_and_a_stranger_low(gallery: EdgeGallery) -> None:
    # the issue: with one identity enrolled every re-ranked distance is the same (0.3 here), so a
    # threshold on it passes a stranger exactly as it passes the person; the cosine distance does not
    base = vectors(1, 1)[0]
    apply(gallery, delta(0, 1, [hub_to_edge_pb2.IdentityUpsert(
        identity_id="alice", vectors=[vector_to_proto(base[None], FP)])]))
    near = base + 0.02 * vectors(2, 1)[0]
    stranger = vectors(3, 1)[0]
    stranger -= (stranger @ base) / (base @ base) * base  # orthogonal to alice: cosine distance 1
    (_, rerank_near), (_, rerank_stranger) = gallery.recall(near), gallery.recall(stranger)
    assert rerank_near.tolist() == pytest.approx(rerank_stranger.tolist(), abs=1e-6)  # no signal in it

    results = {}
    for name, query in (("near", near), ("stranger", stranger)):
        ids, order, cosine = gallery.recall_scored(query)
        assert ids.tolist() == ["alice"] and order.dtype == cosine.dtype == np.float32
        np.testing.assert_array_equal(order, cosine)  # one identity: ordered by cosine, not re-ranked
        assert cosine[0] == pytest.approx(1.0 - float(_unit(query) @ _unit(base)), abs=1e-5)
        results[name] = cosine[0]
    assert results["near"] < 0.01 and results["stranger"] == pytest.approx(1.0, abs=1e-5)

    for calibration in (CALIBRATED, Calibration.uncalibrated(FP, "cosine_distance")):
        p_near, p_stranger = calibration.p_same([results["near"], results["stranger"]])
        assert p_near > 0.95 and p_stranger < 0.01
    policy = ShortListPolicy()
    for query, expected in ((near, ["alice"]), (stranger, [])):
        ids, order, cosine = gallery.recall_scored(query)
        assert [c.identity_id for c in policy.decide(ids, order, CALIBRATED.p_same(cosine), cosine)] == expected


def test_recall_scored_cosine_matches_numpy_and_an_empty_gallery(gallery: EdgeGallery) -> None:
    ids, order, cosine = gallery.recall_scored(vectors(1, 1)[0])
    assert ids.shape == order.shape == cosine.shape == (0,)
    apply(gallery, delta(0, 1, [upsert("alice", 1, 2), upsert("bob", 2, 3)]))
    query = vectors(7, 1)
    ids, order, cosine = gallery.recall_scored(Embeddings(query, FP))
    refs = {"alice": vectors(1, 2), "bob": vectors(2, 3)}
    want = sorted((identity, float(1.0 - _unit(query[0]) @ _unit(v))) for identity, vs in refs.items() for v in vs)
    assert sorted(zip(ids.tolist(), cosine.tolist(), strict=True)) == [
        (i, pytest.approx(c, abs=1e-5)) for i, c in want]
    assert np.all((cosine >= 0.0) & (cosine <= 2.0))
    with pytest.raises(InvalidInputError, match="expected a vector of model"):
        gallery.recall_scored(Embeddings(query, "other"))
    with pytest.raises(InvalidInputError, match=r"shape \(16,\)"):
        gallery.recall_scored(np.zeros(8, np.float32))


def test_the_order_switches_to_reranking_when_the_gallery_grows_past_the_minimum(tmp_path: Path) -> None:
    refs = [(f"p{i}", vectors(100 + i, 3)) for i in range(6)]
    query = refs[2][1][0] + 0.3 * vectors(7, 1)[0]

    def upserts(items: list[tuple[str, np.ndarray]]) -> list[hub_to_edge_pb2.IdentityUpsert]:
        return [hub_to_edge_pb2.IdentityUpsert(identity_id=n, vectors=[vector_to_proto(v, FP)]) for n, v in items]

    with EdgeGallery(tmp_path / "g.db", FP, DIM, rerank_min_identities=5) as g:
        apply(g, delta(0, 1, upserts(refs[:4])))  # 4 identities: below the minimum
        ids, order, cosine = g.recall_scored(query)
        np.testing.assert_array_equal(order, cosine)
        apply(g, delta(1, 2, upserts(refs[4:5])))  # 5: re-ranked, k1 from the images per identity
        ids, order, cosine = g.recall_scored(query)
        assert not np.allclose(order, cosine)
        assert rerank_k1(5, 15, min_identities=5) == 6
        want_ids, want = _fresh_rerank(refs[:5], query, k1=6)
        got_ids, got = _ordered(ids, order)
        assert got_ids == want_ids
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert _ordered(ids, cosine)[0][0] == "p2" and got_ids[0] == "p2"
        apply(g, delta(2, 3, removals=["p0", "p1"]))  # 3: cosine again
        ids, order, cosine = g.recall_scored(query)
        np.testing.assert_array_equal(order, cosine)
        assert sorted(set(ids.tolist())) == ["p2", "p3", "p4"]


def test_default_minimum_is_twenty_identities(gallery: EdgeGallery) -> None:
    assert gallery.rerank_min_identities == 20
    apply(gallery, delta(0, 1, [upsert(f"p{i:02d}", i, 1) for i in range(19)]))
    query = vectors(99, 1)[0]
    _, order, cosine = gallery.recall_scored(query)
    np.testing.assert_array_equal(order, cosine)
    apply(gallery, delta(1, 2, [upsert("p19", 19, 1)]))
    ids, order, cosine = gallery.recall_scored(query)
    assert not np.allclose(order, cosine)
    np.testing.assert_allclose(_ordered(ids, order)[1],
                               _fresh_rerank([(f"p{i:02d}", vectors(i, 1)) for i in range(20)], query, k1=2)[1],
                               atol=1e-5)


def test_k1_follows_the_gallery_as_it_shrinks_and_grows_again(tmp_path: Path) -> None:
    # reranking on with k1=2, off, then on with k1=20: the index must be rebuilt with 20, whatever
    # k1 it was last built with (and a reopened gallery must agree)
    def upserts(items: list[tuple[str, np.ndarray]]) -> list[hub_to_edge_pb2.IdentityUpsert]:
        return [hub_to_edge_pb2.IdentityUpsert(identity_id=n, vectors=[vector_to_proto(v, FP)]) for n, v in items]

    small = [(f"s{i}", vectors(200 + i, 1)) for i in range(3)]
    large = [(f"l{i}", vectors(300 + i, 20)) for i in range(3)]
    query = large[1][1][3] + 0.2 * vectors(8, 1)[0]
    path = tmp_path / "g.db"
    with EdgeGallery(path, FP, DIM, rerank_min_identities=3) as g:
        apply(g, delta(0, 1, upserts(small)))
        assert rerank_k1(3, 3, min_identities=3) == 2
        ids, order, _ = g.recall_scored(query)
        np.testing.assert_allclose(_ordered(ids, order)[1], _fresh_rerank(small, query, k1=2)[1], atol=1e-5)
        apply(g, delta(1, 2, removals=["s2"]))
        _, order, cosine = g.recall_scored(query)
        np.testing.assert_array_equal(order, cosine)
        apply(g, delta(2, 3, upserts(large)))
        remaining = small[:2] + large
        assert rerank_k1(5, 62, min_identities=3) == 20
        ids, order, _ = g.recall_scored(query)
        want_ids, want = _fresh_rerank(remaining, query, k1=20)
        got_ids, got = _ordered(ids, order)
        assert got_ids == want_ids
        np.testing.assert_allclose(got, want, atol=1e-5)
        # recall() reads the same index
        np.testing.assert_allclose(_ordered(*g.recall(query))[1], want, atol=1e-5)
    with EdgeGallery(path, FP, DIM, rerank_min_identities=3) as g:
        np.testing.assert_allclose(_ordered(*g.recall_scored(query)[:2])[1], want, atol=1e-5)
