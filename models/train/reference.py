"""The DFGS identity walk written for clarity: the slow oracle for ``samplers.py``.

Plain Python loops and a recursive depth-first search that read like the method's description.
Use it on a few hundred identities at most (O(n² · d) similarities, recursion depth up to n).

Conventions shared with ``samplers.dfgs_walk`` (they pin down what the description leaves open):

- the graph is directed: an identity points at its ``neighbours`` most cosine-similar others
  (the dot product of L2-normalised rows), nearest first, ties to the lower index;
- restarts are not drawn one at a time: a permutation ``starts`` of all identities is given, and a
  restart goes to its first unvisited entry (a uniformly random unvisited identity when
  ``starts`` is a random permutation; ``dfgs_walk`` draws it as ``rng.permutation(n)``).
"""

from __future__ import annotations

import sys

import numpy as np


def nearest_identities_reference(features: np.ndarray, neighbours: int) -> list[list[int]]:
    """For every row, the indices of its ``neighbours`` most similar other rows, nearest first."""
    rows = [[float(x) for x in row] for row in np.asarray(features)]
    n = len(rows)

    def similarity(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(rows[i], rows[j], strict=True))

    lists = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        others.sort(key=lambda j: (-similarity(i, j), j))
        lists.append(others[:neighbours])
    return lists


def depth_first_order_reference(lists: list[list[int]], starts: list[int]) -> list[int]:
    """Visit nodes depth-first, nearest unvisited neighbour first; restart at the next unvisited start."""
    visited: set[int] = set()
    order: list[int] = []

    def visit(node: int) -> None:
        visited.add(node)
        order.append(node)
        for child in lists[node]:
            if child not in visited:  # re-checked after each return: that is the backtracking
                visit(child)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, len(lists) + 100))
    try:
        for start in starts:
            if start not in visited:
                visit(int(start))
    finally:
        sys.setrecursionlimit(limit)
    return order


def dfgs_walk_reference(features: np.ndarray, neighbours: int, starts: list[int]) -> list[int]:
    """Row indices of ``features`` in DFGS walk order, restarting in the order of ``starts``."""
    degree = min(neighbours, len(features) - 1)
    return depth_first_order_reference(nearest_identities_reference(features, degree), starts)
