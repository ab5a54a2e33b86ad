"""Short-list policy: a table of cases, errors, and random rows against a brute-force reference.

The policy reads two numbers per gallery entry: an *ordering* distance (re-ranked or cosine; it only
orders) and the entry's stage-1 P(same) (the only thing a threshold reads).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.shortlist import Candidate, ShortListPolicy
from models.calibration import Calibration
from models.errors import InvalidInputError

INF = math.inf
HI = 0.9  # a P(same) well above the default floor (0.05)

# (case, ids, distances, p_same, policy kwargs, expected [(identity, rank, watchlist)])
CASES = [
    ("empty row", [], [], [], {}, []),
    ("plain top-k, nearest first", ["a", "b", "c", "d"], [0.4, 0.1, 0.3, 0.2], [HI] * 4, {"top_k": 2},
     [("b", 0, False), ("d", 1, False)]),
    ("fewer than k", ["a", "b"], [0.4, 0.1], [HI, HI], {"top_k": 5}, [("b", 0, False), ("a", 1, False)]),
    ("the P(same) floor cuts, and rank counts only those above it", ["a", "b", "c"], [0.1, 0.2, 0.3],
     [0.9, 0.01, 0.5], {}, [("a", 0, False), ("c", 1, False)]),
    ("the floor is inclusive", ["a", "b"], [0.1, 0.2], [0.3, 0.2999], {"min_p_same": 0.3}, [("a", 0, False)]),
    ("nothing reaches the floor", ["a", "b"], [0.1, 0.2], [0.01, 0.04], {}, []),
    ("a near ordering distance does not rescue a low P(same)", ["a", "b"], [0.0, 0.9], [0.01, 0.6], {},
     [("b", 0, False)]),
    ("a far ordering distance does not drop a high P(same)", ["a", "b"], [0.1, 7.5], [0.5, 0.99], {"top_k": 5},
     [("a", 0, False), ("b", 1, False)]),
    ("an infinite ordering distance only orders", ["a", "b"], [INF, 0.3], [0.8, 0.8], {},
     [("b", 0, False), ("a", 1, False)]),
    ("order is by distance, not by P(same)", ["a", "b", "c"], [0.3, 0.1, 0.2], [0.99, 0.1, 0.5], {"top_k": 2},
     [("b", 0, False), ("c", 1, False)]),
    ("duplicate identity counts once, at its nearest", ["a", "b", "a", "c"], [0.3, 0.2, 0.1, 0.4], [HI] * 4,
     {"top_k": 2}, [("a", 0, False), ("b", 1, False)]),
    ("an identity's entry below the floor does not give it its distance", ["a", "b", "a"], [0.05, 0.2, 0.3],
     [0.01, HI, HI], {}, [("b", 0, False), ("a", 1, False)]),
    ("one entry of an identity above the floor is enough", ["a", "a"], [0.1, 0.2], [0.01, 0.2], {},
     [("a", 0, False)]),
    ("ties broken by id", ["c", "a", "b"], [0.2, 0.2, 0.2], [HI] * 3, {"top_k": 2},
     [("a", 0, False), ("b", 1, False)]),
    ("watchlist beyond top-k is kept", ["a", "b", "w"], [0.1, 0.2, 0.3], [HI] * 3, {"top_k": 2, "watchlist": ["w"]},
     [("a", 0, False), ("b", 1, False), ("w", 2, True)]),
    ("watchlist below the floor is not", ["a", "b", "w"], [0.1, 0.2, 0.3], [HI, HI, 0.04],
     {"top_k": 2, "watchlist": ["w"]}, [("a", 0, False), ("b", 1, False)]),
    ("watchlist below the floor frees its slot", ["w", "a", "b"], [0.1, 0.2, 0.3], [0.0, HI, HI],
     {"top_k": 2, "watchlist": ["w"]}, [("a", 0, False), ("b", 1, False)]),
    ("watchlist inside top-k takes a slot", ["w", "a", "b"], [0.1, 0.2, 0.3], [HI] * 3,
     {"top_k": 2, "watchlist": ["w"]}, [("w", 0, True), ("a", 1, False)]),
    ("top_k 0: watchlist only", ["a", "w", "v"], [0.1, 0.2, 0.9], [HI, HI, 0.01],
     {"top_k": 0, "watchlist": ["w", "v"]}, [("w", 1, True)]),
    ("unknown watchlist ids are harmless", ["a"], [0.1], [HI], {"watchlist": ["zzz"]}, [("a", 0, False)]),
    ("min_p_same 0: everything goes", ["a", "b"], [0.1, 0.2], [0.0, 0.0], {"min_p_same": 0.0},
     [("a", 0, False), ("b", 1, False)]),
    ("min_p_same 1: only certainty goes", ["a", "b"], [0.1, 0.2], [0.999, 1.0], {"min_p_same": 1.0},
     [("b", 0, False)]),
]


@pytest.mark.parametrize(("ids", "distances", "p_same", "kwargs", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_table(ids: list, distances: list, p_same: list, kwargs: dict, expected: list) -> None:
    policy = ShortListPolicy(**kwargs)
    got = policy.decide(ids, distances, p_same)
    assert [(c.identity_id, c.rank, c.watchlist) for c in got] == expected
    nearest: dict[str, float] = {}
    likely: dict[str, float] = {}
    for identity, d, p in zip(ids, distances, p_same, strict=True):
        if p >= policy.min_p_same:
            nearest[identity] = min(d, nearest.get(identity, INF))
            likely[identity] = max(p, likely.get(identity, -1.0))
    assert [c.distance for c in got] == [nearest[c.identity_id] for c in got]
    assert [c.p_same for c in got] == [likely[c.identity_id] for c in got]
    assert all(c.cosine_distance is None for c in got)  # none given
    assert all(isinstance(c.identity_id, str) and type(c.distance) is float and type(c.p_same) is float
               for c in got)


def test_an_identity_takes_its_most_likely_entry_and_that_entry_s_cosine() -> None:
    # 'a': nearest by order at its second entry, most likely at its first: both are read, each from its own
    got = ShortListPolicy().decide(["a", "b", "a"], [0.3, 0.2, 0.1], [0.9, 0.5, 0.4], [0.1, 0.5, 0.6])
    assert got == [Candidate("a", 0.1, 0, False, 0.9, 0.1), Candidate("b", 0.2, 1, False, 0.5, 0.5)]


def test_numpy_inputs_and_candidate_type() -> None:
    policy = ShortListPolicy(top_k=1)
    got = policy.decide(np.array(["x", "y"]), np.array([0.3, 0.2], np.float32), np.array([0.7, 0.8], np.float32),
                        np.array([0.25, 0.15], np.float32))
    assert got == [Candidate("y", pytest.approx(0.2), 0, False, pytest.approx(0.8), pytest.approx(0.15))]
    c = got[0]
    assert type(c.identity_id) is str and type(c.distance) is float and type(c.p_same) is float
    assert type(c.cosine_distance) is float


def test_defaults_and_with_watchlist() -> None:
    policy = ShortListPolicy()
    assert (policy.top_k, policy.min_p_same, policy.watchlist, policy.calibration) == (5, 0.05, frozenset(), None)
    calibration = Calibration("m@1", "cosine_distance", "logistic", 4.0, -10.0)
    base = ShortListPolicy(3, 0.2, ["old"], calibration)
    changed = base.with_watchlist({"w1", "w2"})
    assert (changed.top_k, changed.min_p_same, changed.calibration) == (3, 0.2, calibration)
    assert changed.watchlist == {"w1", "w2"} and base.watchlist == {"old"}
    assert isinstance(ShortListPolicy(np.int64(2)).top_k, int)


# ---------------------------------------------------------------- brute force

def _reference(policy: ShortListPolicy, ids: list[str], d: list[float], p: list[float],
               cos: list[float] | None) -> list[tuple]:
    """The policy as plainly as it can be said: slow, no numpy."""
    groups: dict[str, list[tuple[float, float, float | None, int]]] = {}
    for index, identity in enumerate(ids):
        if p[index] >= policy.min_p_same:
            groups.setdefault(identity, []).append((d[index], p[index], None if cos is None else cos[index], index))
    rows = []
    for identity, entries in groups.items():
        order = min(e[0] for e in entries)
        likely = max(entries, key=lambda e: (e[1], -e[0], -e[3]))  # most likely; ties: nearest, then first
        rows.append((order, identity, likely[1], likely[2]))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for rank, (order, identity, prob, c) in enumerate(rows):
        on_watchlist = identity in policy.watchlist
        if rank < policy.top_k or on_watchlist:
            out.append((identity, order, rank, on_watchlist, prob, c))
    return out


def _got(candidates: list[Candidate]) -> list[tuple]:
    return [(c.identity_id, c.distance, c.rank, c.watchlist, c.p_same, c.cosine_distance) for c in candidates]


def _row(rng: np.random.Generator, n: int, decimals: int) -> tuple[list[float], list[float], list[float]]:
    """Ordering distances, and cosine distances with the P(same) read from them (1 - cosine, rounded, so
    that there are ties): an entry's P(same) and its cosine go together, its ordering distance does not."""
    d = [float(x) for x in np.round(rng.uniform(0, 1, size=n), decimals)]
    cos = [float(x) for x in np.round(rng.uniform(0, 1, size=n), 2)]
    p = [round(1.0 - c, 2) for c in cos]
    return d, p, cos


def test_random_rows_match_brute_force() -> None:
    rng = np.random.default_rng(11)
    names = [f"id{i:02d}" for i in range(30)]
    for trial in range(400):
        n = int(rng.integers(0, 60))
        ids = [names[i] for i in rng.integers(0, 30, size=n)]
        d, p, cos = _row(rng, n, 2)  # rounding makes ties
        watch = [names[i] for i in rng.choice(30, size=int(rng.integers(0, 6)), replace=False)]
        policy = ShortListPolicy(top_k=int(rng.integers(0, 8)), min_p_same=[0.0, 0.05, 0.3, 0.7][trial % 4],
                                 watchlist=watch)
        with_cos = trial % 2 == 0
        got = _got(policy.decide(ids, d, p, cos if with_cos else None))
        assert got == _reference(policy, ids, d, p, cos if with_cos else None), trial


@pytest.mark.parametrize("n_identities", [3, 40, 3000])  # few: many vectors each
def test_large_rows_match_brute_force(n_identities: int) -> None:
    rng = np.random.default_rng(n_identities)
    for trial in range(12):
        n = 2000
        ids = [f"g{i}" for i in rng.integers(0, n_identities, size=n)]
        d, p, cos = _row(rng, n, 3)
        watch = [f"g{i}" for i in range(int(rng.integers(0, 3)))]
        policy = ShortListPolicy(top_k=int(rng.integers(0, 9)), min_p_same=[0.05, 0.5][trial % 2], watchlist=watch)
        want = _reference(policy, ids, d, p, cos)
        for row_ids in (ids, np.array(ids)):
            assert _got(policy.decide(row_ids, np.array(d), np.array(p), np.array(cos))) == want, trial


def test_result_does_not_depend_on_gallery_order() -> None:
    rng = np.random.default_rng(5)
    ids = [f"p{i % 9}" for i in range(40)]
    d, p, cos = _row(rng, 40, 1)
    policy = ShortListPolicy(top_k=3, min_p_same=0.2, watchlist=["p4"])
    want = policy.decide(ids, d, p, cos)
    for _ in range(5):
        perm = rng.permutation(40)
        assert policy.decide([ids[i] for i in perm], [d[i] for i in perm], [p[i] for i in perm],
                             [cos[i] for i in perm]) == want


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"top_k": "3"}, "top_k"),
        ({"min_p_same": -0.01}, r"min_p_same: expected a P\(same\) in \[0, 1\]"),
        ({"min_p_same": 1.01}, "min_p_same"),
        ({"min_p_same": float("nan")}, "min_p_same"),
        ({"min_p_same": INF}, "min_p_same"),
        ({"min_p_same": "0.5"}, "min_p_same"),
        ({"min_p_same": True}, "min_p_same"),
        ({"min_p_same": None}, "min_p_same"),
        ({"watchlist": [3]}, "non-empty string ids"),
        ({"watchlist": [""]}, "non-empty string ids"),
        ({"watchlist": ["w", None]}, "non-empty string ids"),
    ],
)
def test_policy_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ShortListPolicy(**kwargs)


@pytest.mark.parametrize(
    ("ids", "distances", "p_same", "cosine", "message"),
    [
        (["a", "b"], [0.1], [0.5], None, "ids: expected 1 ids, one per distance"),
        (["a"], [[0.1]], [0.5], None, "one row"),
        (["a"], [float("nan")], [0.5], None, "distances: expected numbers, got NaN"),
        ([1, 2], [0.1, 0.2], [0.5, 0.5], None, "ids: expected identity ids as strings"),
        (["a", None], [0.1, 0.2], [0.5, 0.5], None, "ids: expected identity ids as strings, got NoneType"),
        (["a", "b"], [0.1, 0.2], [0.5], None, "p_same: expected 2 numbers, one per distance"),
        (["a", "b"], [0.1, 0.2], [0.5, float("nan")], None, "p_same"),
        (["a"], [0.1], [[0.5]], None, "p_same"),
        (["a", "b"], [0.1, 0.2], [0.5, 0.5], [0.1], "cosine: expected 2 numbers, one per distance"),
    ],
)
def test_decide_errors(ids: list, distances: list, p_same: list, cosine: list | None, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ShortListPolicy().decide(ids, distances, p_same, cosine)
