"""Sampler edge cases and a seeded sweep of random configurations (deterministic property tests)."""

from __future__ import annotations

import numpy as np
import pytest

from models.train.reference import dfgs_walk_reference, nearest_identities_reference
from models.train.samplers import dfgs_batches, dfgs_walk, neighbour_lists, pk_batches, spread_instances


def unit_rows(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.normal(size=(n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def check_epoch(batches: list[np.ndarray], labels: np.ndarray, cameras: np.ndarray, p: int, k: int) -> list[int]:
    """Every invariant of one epoch; returns the identity of each slot in order."""
    ids = np.unique(labels[labels >= 0])
    assert len(batches) == -(-ids.size // p)
    slots: list[int] = []
    for batch in batches:
        assert batch.dtype == np.int64 and batch.shape == (p * k,)
        groups = batch.reshape(p, k)
        owners = labels[groups]
        assert (owners == owners[:, :1]).all() and (owners >= 0).all()
        assert np.unique(owners[:, 0]).size == p
        for group in groups:
            members = np.flatnonzero(labels == labels[group[0]])
            if members.size >= k:
                assert np.unique(group).size == k
                if k >= 2 and np.unique(cameras[members]).size >= 2:
                    assert np.unique(cameras[group]).size >= 2
            else:
                assert set(members.tolist()) <= set(group.tolist()), "all its images before any repeat"
        slots += owners[:, 0].tolist()
    assert set(slots) == set(ids.tolist())
    assert len(slots) - ids.size == len(batches) * p - ids.size
    return slots


@pytest.mark.parametrize("seed", range(30))
def test_random_configurations(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n_ids = int(rng.integers(2, 60))
    p = int(rng.integers(2, min(n_ids, 10) + 1))
    k = int(rng.integers(1, 7))
    n_cameras = int(rng.integers(1, 5))
    neighbours = int(rng.integers(1, 11))
    counts = rng.integers(1, 11, size=n_ids)
    ids = rng.choice(10_000, size=n_ids, replace=False)
    labels = np.repeat(ids, counts)
    cameras = rng.integers(0, n_cameras, size=labels.size)
    unlabelled = int(rng.integers(0, 4))
    labels = np.concatenate([labels, np.full(unlabelled, -1)])
    cameras = np.concatenate([cameras, np.zeros(unlabelled, dtype=cameras.dtype)])
    shuffle = rng.permutation(labels.size)
    labels, cameras = labels[shuffle], cameras[shuffle]
    labels_before, cameras_before = labels.copy(), cameras.copy()
    identities = np.sort(ids)
    features = unit_rows(n_ids, int(rng.integers(2, 9)), rng)

    check_epoch(pk_batches(labels, cameras, p=p, k=k, rng=np.random.default_rng(seed)), labels, cameras, p, k)
    batches = dfgs_batches(features, identities, labels, cameras, p=p, k=k, neighbours=neighbours,
                           rng=np.random.default_rng(seed))
    slots = check_epoch(batches, labels, cameras, p, k)
    starts = np.random.default_rng(seed).permutation(n_ids).tolist()
    walk = identities[dfgs_walk_reference(features, neighbours, starts)].tolist()
    full = len(walk) // p * p
    assert slots[:full] == walk[:full]
    if full < len(walk):
        assert slots[full:] == walk[-p:]
    assert np.array_equal(labels, labels_before) and np.array_equal(cameras, cameras_before), "inputs unchanged"


def test_exact_multiple_of_p_has_no_padding() -> None:
    labels = np.repeat(np.arange(12), 3)
    cameras = np.tile([0, 1, 2], 12)
    for batches in (pk_batches(labels, cameras, p=4, k=3, rng=np.random.default_rng(0)),
                    dfgs_batches(unit_rows(12, 5, np.random.default_rng(1)), np.arange(12), labels, cameras,
                                 p=4, k=3, rng=np.random.default_rng(0))):
        slots = check_epoch(batches, labels, cameras, 4, 3)
        assert sorted(slots) == list(range(12)), "each identity exactly once"
        assert sorted(np.concatenate(batches).tolist()) == list(range(36)), "3 images, k=3: each image once"


def test_as_many_identities_as_p_is_one_batch() -> None:
    labels, cameras = np.array([3, 3, 8, 8, 5]), np.array([0, 1, 0, 1, 0])
    (batch,) = pk_batches(labels, cameras, p=3, k=2, rng=np.random.default_rng(0))
    assert sorted(set(labels[batch].tolist())) == [3, 5, 8]
    assert batch[labels[batch] == 5].tolist() == [4, 4], "one image and k=2: repeated"


def test_spread_instances_round_robin() -> None:
    rng = np.random.default_rng(0)
    per_camera = (np.array([0, 1, 2, 3, 4, 5]), np.array([10]), np.array([20, 21]))
    for _ in range(20):
        chosen = spread_instances(per_camera, 4, rng)
        assert np.unique(chosen).size == 4
        assert 10 in chosen and ({20, 21} & set(chosen.tolist())), "every camera is used before any twice"
    single = spread_instances((np.array([7, 8, 9]),), 3, rng)
    assert sorted(single.tolist()) == [7, 8, 9], "one camera, enough images: all distinct"
    short = spread_instances((np.array([7]), np.array([9])), 5, rng)
    assert set(short.tolist()) == {7, 9} and short.size == 5


def test_ties_go_to_the_lower_index() -> None:
    # one-hot rows: similarities are exactly 1 (same axis) or 0, so every order is decided by the tie rule
    features = np.eye(3)[[0, 1, 2, 0, 1, 2, 0]]
    lists = neighbour_lists(features, 3)
    assert lists.tolist() == nearest_identities_reference(features, 3)
    assert lists[0].tolist() == [3, 6, 1] and lists[4].tolist() == [1, 0, 2]
    for seed in range(5):
        starts = np.random.default_rng(seed).permutation(7).tolist()
        walk = dfgs_walk(features, neighbours=3, rng=np.random.default_rng(seed)).tolist()
        assert walk == dfgs_walk_reference(features, 3, starts)


def test_mutual_pairs_stay_together() -> None:
    """Identities in look-alike pairs, one neighbour each: the walk visits each pair back to back."""
    rng = np.random.default_rng(3)
    centres = unit_rows(8, 32, rng)
    rows = np.repeat(centres, 2, axis=0) + 0.05 * unit_rows(16, 32, rng)
    features = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    labels = np.repeat(np.arange(16), 2)
    cameras = np.tile([0, 1], 16)
    batches = dfgs_batches(features, np.arange(16), labels, cameras, p=2, k=2, neighbours=1,
                           rng=np.random.default_rng(4))
    pairs = sorted(tuple(sorted(set(labels[b].tolist()))) for b in batches)
    assert pairs == [(2 * i, 2 * i + 1) for i in range(8)]


def test_narrow_label_dtypes_are_accepted() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    cameras = np.array([0, 1, 0, 1, 0, 1], dtype=np.uint8)
    check_epoch(pk_batches(labels, cameras, p=2, k=2, rng=np.random.default_rng(0)), labels, cameras, 2, 2)
