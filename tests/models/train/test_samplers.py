"""P×K and DFGS samplers: batch shape, every identity once, camera spread, and the walk against the oracle."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.train.reference import (
    depth_first_order_reference,
    dfgs_walk_reference,
    nearest_identities_reference,
)
from models.train.samplers import (
    depth_first_order,
    dfgs_batches,
    dfgs_walk,
    neighbour_lists,
    one_per_identity,
    pk_batches,
)


def synthetic_set(n_ids: int = 23, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with 1–8 images per identity (ids not dense), cameras 0–2, and a few unlabelled samples."""
    rng = np.random.default_rng(seed)
    labels, cameras = [], []
    for identity in range(n_ids):
        count = int(rng.integers(1, 9))
        labels += [identity * 3 + 5] * count
        cameras += rng.integers(0, 3, size=count).tolist()
    labels += [-1] * 4
    cameras += [0] * 4
    order = rng.permutation(len(labels))
    return np.asarray(labels, dtype=np.int64)[order], np.asarray(cameras, dtype=np.int64)[order]


def unit_rows(n: int, d: int = 6, seed: int = 1) -> np.ndarray:
    features = np.random.default_rng(seed).normal(size=(n, d))
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def features_for(labels: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    identities = np.unique(labels[labels >= 0])
    return unit_rows(identities.size, seed=seed), identities


def batch_identities(batch: np.ndarray, labels: np.ndarray, k: int) -> list[int]:
    """The identity of each k-slot of a batch, checking that each slot holds one identity."""
    slots = labels[batch].reshape(-1, k)
    assert (slots == slots[:, :1]).all(), f"a k-slot mixes identities: {slots}"
    return slots[:, 0].tolist()


def both_samplers(labels: np.ndarray, cameras: np.ndarray, p: int, k: int, seed: int) -> dict[str, list[np.ndarray]]:
    features, identities = features_for(labels)
    return {
        "pk": pk_batches(labels, cameras, p=p, k=k, rng=np.random.default_rng(seed)),
        "dfgs": dfgs_batches(features, identities, labels, cameras, p=p, k=k, neighbours=3,
                             rng=np.random.default_rng(seed)),
    }


@pytest.mark.parametrize(("p", "k"), [(4, 4), (5, 2), (2, 1), (23, 3), (7, 6)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_are_p_by_k_and_cover_every_identity(p: int, k: int, seed: int) -> None:
    labels, cameras = synthetic_set(seed=seed)
    n_ids = np.unique(labels[labels >= 0]).size
    for name, batches in both_samplers(labels, cameras, p, k, seed).items():
        assert len(batches) == -(-n_ids // p), name
        seen: list[int] = []
        for batch in batches:
            assert batch.dtype == np.int64 and batch.shape == (p * k,), name
            ids = batch_identities(batch, labels, k)
            assert len(set(ids)) == p, f"{name}: an identity twice in one batch: {ids}"
            seen += ids
        counts = np.unique(seen, return_counts=True)[1]
        assert set(seen) == set(labels[labels >= 0].tolist()), name
        assert counts.sum() - n_ids == len(batches) * p - n_ids, name  # only the padding repeats
        assert (labels[np.concatenate(batches)] >= 0).all(), f"{name}: an unlabelled sample was drawn"


@pytest.mark.parametrize("k", [2, 4, 8])
def test_instances_spread_across_cameras(k: int) -> None:
    labels, cameras = synthetic_set(n_ids=40, seed=3)
    for name, batches in both_samplers(labels, cameras, 8, k, seed=4).items():
        for batch in batches:
            for slot in batch.reshape(-1, k):
                members = np.flatnonzero(labels == labels[slot[0]])
                assert set(slot.tolist()) <= set(members.tolist()), name
                n_cams = np.unique(cameras[members]).size
                if members.size >= k:
                    assert np.unique(slot).size == k, f"{name}: repeated an image with {members.size} >= k"
                    if n_cams >= 2 and k >= 2:
                        assert np.unique(cameras[slot]).size >= 2, f"{name}: one camera of {n_cams}"
                    # round-robin: camera counts in the slot differ by at most one unless a camera ran out
                    per_cam = np.bincount(cameras[slot], minlength=3)[np.unique(cameras[members])]
                    available = np.bincount(cameras[members], minlength=3)[np.unique(cameras[members])]
                    short = per_cam < per_cam.max() - 1
                    assert (per_cam[short] == available[short]).all(), name


@pytest.mark.parametrize("seed", [0, 7])
def test_fixed_rng_gives_the_same_batches(seed: int) -> None:
    labels, cameras = synthetic_set(seed=2)
    first = both_samplers(labels, cameras, 4, 3, seed)
    again = both_samplers(labels, cameras, 4, 3, seed)
    other = both_samplers(labels, cameras, 4, 3, seed + 100)
    for name in first:
        assert all(np.array_equal(a, b) for a, b in zip(first[name], again[name], strict=True)), name
        assert not all(np.array_equal(a, b) for a, b in zip(first[name], other[name], strict=True)), name


# --- the DFGS walk ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "neighbours"), [(2, 1), (9, 1), (17, 2), (30, 3), (30, 8), (12, 50)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_walk_matches_the_reference(n: int, neighbours: int, seed: int) -> None:
    features = unit_rows(n, seed=seed)
    lists = neighbour_lists(features, neighbours)
    assert lists.tolist() == nearest_identities_reference(features, min(neighbours, n - 1))
    walk = dfgs_walk(features, neighbours=neighbours, rng=np.random.default_rng(seed))
    starts = np.random.default_rng(seed).permutation(n).tolist()
    assert walk.tolist() == dfgs_walk_reference(features, neighbours, starts)
    assert sorted(walk.tolist()) == list(range(n)), "every identity exactly once"


def test_walk_on_a_hand_made_graph() -> None:
    # 0 → 1 → 2 → (0, 1): stuck, back to 1 → 3; 3 → 4; 4 → 3: stuck; back to 3, 1, 0: component
    # done, restart at the first unvisited start (6) → 5
    lists = [[1, 5], [2, 3], [0, 1], [4, 0], [3, 1], [0, 6], [5, 0]]
    starts = [0, 6, 2, 5, 1, 3, 4]
    expected = [0, 1, 2, 3, 4, 5, 6]
    assert depth_first_order_reference(lists, starts) == expected
    assert depth_first_order(np.asarray(lists), np.asarray(starts)).tolist() == expected
    disconnected = [[1], [0], [3], [2], [5], [4]]
    assert depth_first_order(np.asarray(disconnected), np.asarray([4, 2, 0, 1, 3, 5])).tolist() == [4, 5, 2, 3, 0, 1]


@pytest.mark.parametrize(("n", "neighbours"), [(25, 2), (40, 4)])
def test_consecutive_identities_are_graph_neighbours(n: int, neighbours: int) -> None:
    features = unit_rows(n, seed=5)
    lists = nearest_identities_reference(features, neighbours)
    walk = dfgs_walk(features, neighbours=neighbours, rng=np.random.default_rng(6)).tolist()
    for i, (current, following) in enumerate(itertools.pairwise(walk)):
        unvisited = [j for j in lists[current] if j not in walk[:i + 1]]
        if unvisited:
            assert following == unvisited[0], f"after {current} expected its nearest unvisited {unvisited[0]}"


def test_dfgs_batches_follow_the_walk_and_are_harder_than_random() -> None:
    labels, cameras = synthetic_set(n_ids=60, seed=8)
    identities = np.unique(labels[labels >= 0])
    centres = unit_rows(6, d=16, seed=9)  # identities in 6 look-alike clusters
    noisy = centres[np.arange(identities.size) % 6] + 0.3 * unit_rows(identities.size, d=16, seed=10)
    features = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    p, k = 8, 2
    batches = dfgs_batches(features, identities, labels, cameras, p=p, k=k, neighbours=4, rng=np.random.default_rng(11))
    walk = identities[dfgs_walk(features, neighbours=4, rng=np.random.default_rng(11))].tolist()
    got = [batch_identities(b, labels, k) for b in batches]
    assert got[:-1] == [walk[i:i + p] for i in range(0, len(walk) - p + 1, p)][: len(got) - 1]
    assert got[-1] == walk[-p:], "the last group is filled with the identities before it in the walk"

    def mean_batch_similarity(all_batches: list[np.ndarray]) -> float:
        rows = {int(identity): row for identity, row in zip(identities, features, strict=True)}
        values = []
        for batch in all_batches:
            f = np.stack([rows[i] for i in batch_identities(batch, labels, k)])
            s = f @ f.T
            values.append((s.sum() - np.trace(s)) / (p * (p - 1)))
        return float(np.mean(values))

    random_batches = pk_batches(labels, cameras, p=p, k=k, rng=np.random.default_rng(11))
    assert mean_batch_similarity(batches) > mean_batch_similarity(random_batches) + 0.2


def test_one_per_identity_picks_an_image_of_each() -> None:
    labels, _ = synthetic_set(seed=12)
    identities, chosen = one_per_identity(labels, np.random.default_rng(0))
    assert identities.tolist() == sorted(set(labels[labels >= 0].tolist()))
    assert labels[chosen].tolist() == identities.tolist()


# --- bad input -------------------------------------------------------------------------------------

LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
CAMERAS = np.array([0, 1, 0, 1, 0, 1, 0, 1])
GOOD = {"labels": LABELS, "cameras": CAMERAS, "p": 2, "k": 2}


@pytest.mark.parametrize(("change", "message"), [
    ({"p": 1}, "p: expected an integer >= 2 identities per batch, got 1"),
    ({"k": 0}, "k: expected an integer >= 1 instances per identity, got 0"),
    ({"p": 5}, "labels: expected at least p=5 labelled identities, got 4"),
    ({"labels": np.array([0, 0, 0, -1, -1, -1, -1, -1])}, "labels: expected at least p=2 labelled identities, got 1"),
    ({"cameras": CAMERAS[:5]}, "cameras: expected 8 entries like labels, got 5"),
    ({"labels": LABELS.reshape(2, 4)}, "labels: expected a 1-D array, got shape (2, 4)"),
    ({"labels": LABELS.astype(float)}, "labels: expected integers, got dtype float64"),
    ({"labels": LABELS - 2}, "labels: expected >= 0 (or -1 for unlabelled), got -2"),
    ({"cameras": CAMERAS - 1}, "cameras: expected 0-based camera ids >= 0, got -1"),
])
def test_bad_input_is_one_clear_error(change: dict, message: str) -> None:
    args = {**GOOD, **change}
    features, identities = unit_rows(4), np.arange(4)
    if "labels" in change and change["labels"].ndim == 1 and change["labels"].dtype.kind == "i":
        features, identities = features_for(change["labels"])
    calls = {
        "pk": lambda: pk_batches(args["labels"], args["cameras"], p=args["p"], k=args["k"],
                                 rng=np.random.default_rng(0)),
        "dfgs": lambda: dfgs_batches(features, identities, args["labels"], args["cameras"], p=args["p"],
                                     k=args["k"], rng=np.random.default_rng(0)),
    }
    for call in calls.values():
        with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
            call()


@pytest.mark.parametrize(("features", "identities", "neighbours", "message"), [
    (unit_rows(3), np.arange(4), 2, "identity_features: expected shape (4, d), one row per identity, got (3, 6)"),
    (unit_rows(4) * 2, np.arange(4), 2, "identity_features: expected L2-normalised rows, got a row of norm 2"),
    (np.full((4, 2), np.nan), np.arange(4), 2, "identity_features: expected finite floats"),
    (unit_rows(4), np.array([0, 0, 1, 2]), 2, "identities: expected distinct labels, got duplicates"),
    (unit_rows(4), np.array([0, 1, 2, 9]), 2, "identities: expected exactly the 4 labelled identities of labels, "
                                               "got 1 missing (e.g. [3]) and 1 unknown (e.g. [9])"),
    (unit_rows(4), np.arange(4), 0, "neighbours: expected an integer >= 1, got 0"),
])
def test_bad_identity_features(features: np.ndarray, identities: np.ndarray, neighbours: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match="^" + re.escape(message)):
        dfgs_batches(features, identities, LABELS, CAMERAS, p=2, k=2, neighbours=neighbours,
                     rng=np.random.default_rng(0))
