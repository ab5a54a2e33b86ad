"""Short-list policy: a table of cases, errors, and random rows against a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.shortlist import Candidate, ShortListPolicy
from models.errors import InvalidInputError

INF = math.inf

# (case, ids, distances, policy kwargs, expected [(identity, rank, watchlist)])
CASES = [
    ("empty row", [], [], {}, []),
    ("plain top-k, nearest first", ["a", "b", "c", "d"], [0.4, 0.1, 0.3, 0.2], {"top_k": 2},
     [("b", 0, False), ("d", 1, False)]),
    ("fewer than k", ["a", "b"], [0.4, 0.1], {"top_k": 5}, [("b", 0, False), ("a", 1, False)]),
    ("threshold cuts the tail", ["a", "b", "c"], [0.5, 0.2, 0.35], {"top_k": 5, "max_distance": 0.35},
     [("b", 0, False), ("c", 1, False)]),
    ("nothing within threshold", ["a", "b"], [0.5, 0.6], {"max_distance": 0.4}, []),
    ("duplicate identity counts once, at its nearest", ["a", "b", "a", "c"], [0.3, 0.2, 0.1, 0.4], {"top_k": 2},
     [("a", 0, False), ("b", 1, False)]),
    ("ties broken by id", ["c", "a", "b"], [0.2, 0.2, 0.2], {"top_k": 2}, [("a", 0, False), ("b", 1, False)]),
    ("watchlist beyond top-k is kept", ["a", "b", "w"], [0.1, 0.2, 0.3],
     {"top_k": 2, "watchlist_thresholds": {"w": 0.35}},
     [("a", 0, False), ("b", 1, False), ("w", 2, True)]),
    ("watchlist outside its threshold is not", ["a", "b", "w"], [0.1, 0.2, 0.3],
     {"top_k": 2, "watchlist_thresholds": {"w": 0.25}}, [("a", 0, False), ("b", 1, False)]),
    ("looser watchlist threshold beats the global one", ["a", "w"], [0.1, 0.7],
     {"max_distance": 0.5, "watchlist_thresholds": {"w": 0.8}}, [("a", 0, False), ("w", 1, True)]),
    ("stricter watchlist threshold: dropped, rank kept", ["w", "a"], [0.3, 0.4],
     {"max_distance": 0.5, "watchlist_thresholds": {"w": 0.2}}, [("a", 1, False)]),
    ("watchlist inside top-k takes a slot", ["w", "a", "b"], [0.1, 0.2, 0.3],
     {"top_k": 2, "watchlist_thresholds": {"w": 0.5}}, [("w", 0, True), ("a", 1, False)]),
    ("failed watchlist frees its slot", ["w", "a", "b"], [0.1, 0.2, 0.3],
     {"top_k": 2, "watchlist_thresholds": {"w": 0.05}}, [("a", 1, False), ("b", 2, False)]),
    ("top_k 0: watchlist only", ["a", "w", "v"], [0.1, 0.2, 0.9],
     {"top_k": 0, "watchlist_thresholds": {"w": 0.5, "v": 0.5}}, [("w", 1, True)]),
    ("threshold is inclusive", ["a"], [0.25], {"max_distance": 0.25}, [("a", 0, False)]),
    ("infinite distances never pass a finite threshold", ["a", "b"], [INF, 0.3], {"max_distance": 1.0},
     [("b", 0, False)]),
    ("unknown watchlist ids are harmless", ["a"], [0.1], {"watchlist_thresholds": {"zzz": 0.9}},
     [("a", 0, False)]),
]


@pytest.mark.parametrize(("ids", "distances", "kwargs", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_table(ids: list, distances: list, kwargs: dict, expected: list) -> None:
    got = ShortListPolicy(**kwargs).decide(ids, distances)
    assert [(c.identity_id, c.rank, c.watchlist) for c in got] == expected
    lookup: dict[str, float] = {}
    for identity, d in zip(ids, distances, strict=True):
        lookup[identity] = min(d, lookup.get(identity, INF))
    assert [c.distance for c in got] == [lookup[c.identity_id] for c in got]
    assert all(isinstance(c.identity_id, str) and type(c.distance) is float for c in got)


def test_numpy_inputs_and_candidate_type() -> None:
    policy = ShortListPolicy(top_k=1)
    got = policy.decide(np.array(["x", "y"]), np.array([0.3, 0.2], np.float32))
    assert got == [Candidate("y", pytest.approx(0.2), 0, False)]
    assert type(got[0].identity_id) is str


def _reference(policy: ShortListPolicy, ids: list[str], d: list[float]) -> list[tuple[str, float, int, bool]]:
    nearest: dict[str, float] = {}
    for identity, dist in zip(ids, d, strict=True):
        nearest[identity] = min(dist, nearest.get(identity, INF))
    ranked = sorted(nearest.items(), key=lambda item: (item[1], item[0]))
    passing = [(identity, dist, rank) for rank, (identity, dist) in enumerate(ranked)
               if dist <= policy.watchlist_thresholds.get(identity, policy.max_distance)]
    out = []
    for position, (identity, dist, rank) in enumerate(passing):
        on_watchlist = identity in policy.watchlist_thresholds
        if position < policy.top_k or on_watchlist:
            out.append((identity, dist, rank, on_watchlist))
    return out


def test_random_rows_match_brute_force() -> None:
    rng = np.random.default_rng(11)
    names = [f"id{i:02d}" for i in range(30)]
    for trial in range(300):
        n = int(rng.integers(0, 60))
        ids = [names[i] for i in rng.integers(0, 30, size=n)]
        d = [float(x) for x in np.round(rng.uniform(0, 1, size=n), 2)]  # rounding makes ties
        watch = {names[i]: float(rng.uniform(0, 1)) for i in rng.choice(30, size=int(rng.integers(0, 6)),
                                                                         replace=False)}
        policy = ShortListPolicy(
            top_k=int(rng.integers(0, 8)),
            max_distance=[INF, 0.3, 0.6][trial % 3],
            watchlist_thresholds=watch,
        )
        got = [(c.identity_id, c.distance, c.rank, c.watchlist) for c in policy.decide(ids, d)]
        assert got == _reference(policy, ids, d), trial


@pytest.mark.parametrize("n_identities", [3, 40, 3000])  # few: many vectors each, so the fast head falls short
def test_large_rows_match_brute_force(n_identities: int) -> None:
    rng = np.random.default_rng(n_identities)
    for trial in range(12):
        n = 2000
        ids = [f"g{i}" for i in rng.integers(0, n_identities, size=n)]
        d = [float(x) for x in np.round(rng.uniform(0, 1, size=n), 3)]
        watch = {f"g{i}": float(rng.uniform(0, 0.2)) for i in range(int(rng.integers(0, 3)))}
        policy = ShortListPolicy(top_k=int(rng.integers(0, 9)), max_distance=[INF, 0.5][trial % 2],
                                 watchlist_thresholds=watch)
        want = _reference(policy, ids, d)
        for row_ids in (ids, np.array(ids)):
            got = [(c.identity_id, c.distance, c.rank, c.watchlist) for c in policy.decide(row_ids, d)]
            assert got == want, trial


def test_result_does_not_depend_on_gallery_order() -> None:
    rng = np.random.default_rng(5)
    ids = [f"p{i % 9}" for i in range(40)]
    d = list(np.round(rng.uniform(0, 1, 40), 1))
    policy = ShortListPolicy(top_k=3, max_distance=0.8, watchlist_thresholds={"p4": 0.9})
    want = policy.decide(ids, d)
    perm = rng.permutation(40)
    assert policy.decide([ids[i] for i in perm], [d[i] for i in perm]) == want


@pytest.mark.parametrize(
    ("kwargs", "ids", "distances", "message"),
    [
        ({"top_k": -1}, [], [], "top_k"),
        ({"top_k": 2.5}, [], [], "top_k"),
        ({"max_distance": float("nan")}, [], [], "max_distance"),
        ({"watchlist_thresholds": {"w": float("nan")}}, [], [], "watchlist_thresholds"),
        ({"watchlist_thresholds": {3: 0.5}}, [], [], "string ids"),
        ({}, ["a", "b"], [0.1], "one per distance"),
        ({}, ["a"], [[0.1]], "one row"),
        ({}, ["a"], [float("nan")], "NaN"),
        ({}, [1, 2], [0.1, 0.2], "strings"),
    ],
)
def test_errors(kwargs: dict, ids: list, distances: list, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ShortListPolicy(**kwargs).decide(ids, distances)
