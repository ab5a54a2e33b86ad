"""Per-query cost of k-reciprocal re-ranking: textbook recompute versus the incremental index.

    python tools/bench_rerank.py [--json] [--sizes 1000,5000,10000] [--ann-size 100000] [--queries 10]

Data: seeded random unit vectors (d=256) with identity structure: identities drawn around a few
"look" centres, each seen in 2–12 noisy views, so neighbour sets mean something. Queries are
held-out views of gallery identities.

Per gallery size:
- ``oracle_ms``: ``k_reciprocal_reference`` (textbook loops) re-run for one new query, given the
  cached gallery-gallery distances (not timed, which favours the reference). Measured up to
  ``--oracle-max`` items, on ``--oracle-queries`` queries.
- ``exact_ms``: ``k_reciprocal_exact`` (vectorised, same result) for one new query, same inputs.
- ``reference_ms``: the oracle where measured, else exact; ``reference`` says which.
- ``fast_ms``: ``GalleryIndex.query(q, top_k=10)`` (median over ``--fast-queries`` queries).
- ``top10_identical``: share of ``--queries`` queries whose ordered top-10 ids equal exact's.
- ``oracle_vs_exact``: largest absolute difference between the oracle's and exact's distances.
- ``peak_mem_mb``: tracemalloc peak while building the index (numpy allocations; faiss's own
  C++ memory is not traced); ``index_mb``: bytes the built index holds; ``kb_per_item``.
The faiss rows use ``neighbours="faiss"`` (HNSW32); at the ANN size no reference is feasible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import numpy as np
from tqdm import tqdm

from models.rerank import (
    GalleryIndex,
    k_reciprocal_exact,
    k_reciprocal_reference,
    unit_distances,
)

COLUMNS = ["gallery", "mode", "reference", "reference_ms", "oracle_ms", "exact_ms", "fast_ms", "speedup",
           "top10_identical", "oracle_vs_exact", "build_s", "peak_mem_mb", "index_mb", "kb_per_item"]


def make_vectors(n: int, dim: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit vectors and (n,) identity labels with clustered structure."""
    rng = np.random.default_rng(seed)
    views = rng.integers(2, 13, size=n)
    pids = np.repeat(np.arange(n), views)[:n]
    n_ids = int(pids.max()) + 1
    looks = rng.normal(size=(max(1, n_ids // 8), dim))
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    centres = looks[rng.integers(0, len(looks), n_ids)] + 0.8 * rng.normal(size=(n_ids, dim)) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[pids] + 0.7 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), pids


def split(n_gallery: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, _ = make_vectors(n_gallery + n_queries, seed=seed)
    rng = np.random.default_rng(seed + 1)
    held_out = np.zeros(len(x), bool)
    held_out[rng.choice(len(x), n_queries, replace=False)] = True
    return x[~held_out], x[held_out]


def build_index(gallery: np.ndarray, **options: object) -> tuple[GalleryIndex, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    index = GalleryIndex(**options)
    index.add(np.arange(len(gallery)), gallery)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return index, seconds, peak / 1e6


def time_queries(index: GalleryIndex, queries: np.ndarray, label: str) -> tuple[float, list[np.ndarray]]:
    times, tops = [], []
    for q in tqdm(queries, desc=f"{label}: incremental", leave=False, file=sys.stderr):
        start = time.perf_counter()
        ids, _ = index.query(q, top_k=10)
        times.append(time.perf_counter() - start)
        tops.append(ids[0])
    return 1000 * float(np.median(times)), tops


def row_for(index: GalleryIndex, mode: str, build_s: float, peak_mb: float, fast_ms: float) -> dict:
    return {"gallery": index.size, "mode": mode, "reference": "-", "reference_ms": None, "oracle_ms": None,
            "exact_ms": None, "fast_ms": round(fast_ms, 2), "speedup": None, "top10_identical": None,
            "build_s": round(build_s, 1), "peak_mem_mb": round(peak_mb, 1),
            "index_mb": round(index.nbytes() / 1e6, 1), "kb_per_item": round(index.nbytes() / 1e3 / index.size, 2)}


def bench_size(size: int, args: argparse.Namespace, with_faiss: bool) -> list[dict]:
    n_q = max(args.queries, args.fast_queries)
    gallery, queries = split(size, n_q, args.seed)
    index, build_s, peak_mb = build_index(gallery)
    fast_ms, fast_tops = time_queries(index, queries[: args.fast_queries], f"{size}")

    g_g = unit_distances(gallery, gallery)
    np.fill_diagonal(g_g, 0.0)
    q_q = np.zeros((1, 1), np.float32)
    exact_times, exact_tops, oracle_times, worst = [], [], [], 0.0
    for i, q in enumerate(tqdm(queries[: args.queries], desc=f"{size}: exact", leave=False, file=sys.stderr)):
        q_g = unit_distances(q[None], gallery)
        start = time.perf_counter()
        exact = k_reciprocal_exact(q_g, q_q, g_g)
        exact_times.append(time.perf_counter() - start)
        exact_tops.append(np.argsort(exact[0], kind="stable")[:10])
        if size <= args.oracle_max and i < args.oracle_queries:
            start = time.perf_counter()
            oracle = k_reciprocal_reference(q_g, q_q, g_g)
            oracle_times.append(time.perf_counter() - start)
            worst = max(worst, float(np.abs(oracle - exact).max()))
    del g_g
    exact_ms = 1000 * float(np.median(exact_times))
    oracle_ms = 1000 * float(np.median(oracle_times)) if oracle_times else None
    reference_ms = oracle_ms if oracle_ms is not None else exact_ms

    def agreement(tops: list[np.ndarray]) -> float:
        return float(np.mean([np.array_equal(a, b) for a, b in zip(tops, exact_tops, strict=False)]))

    rows = []
    row = row_for(index, "exact", build_s, peak_mb, fast_ms)
    row.update(reference="oracle" if oracle_ms is not None else "exact", reference_ms=round(reference_ms, 1),
               oracle_ms=None if oracle_ms is None else round(oracle_ms, 1), exact_ms=round(exact_ms, 1),
               speedup=round(reference_ms / fast_ms, 1), top10_identical=agreement(fast_tops))
    if oracle_times:
        row["oracle_vs_exact"] = f"{worst:.1e}"
    rows.append(row)
    del index
    if with_faiss:
        ann, build_s, peak_mb = build_index(gallery, neighbours="faiss")
        fast_ms, tops = time_queries(ann, queries[: args.fast_queries], f"{size} faiss")
        row = row_for(ann, "faiss", build_s, peak_mb, fast_ms)
        row.update(reference="exact", reference_ms=round(exact_ms, 1), exact_ms=round(exact_ms, 1),
                   speedup=round(exact_ms / fast_ms, 1), top10_identical=agreement(tops))
        rows.append(row)
    return rows


def bench_ann(size: int, args: argparse.Namespace) -> dict:
    gallery, queries = split(size, args.fast_queries, args.seed)
    index, build_s, peak_mb = build_index(gallery, neighbours="faiss")
    fast_ms, _ = time_queries(index, queries, f"{size} faiss")
    return row_for(index, "faiss", build_s, peak_mb, fast_ms)


def table(rows: list[dict]) -> str:
    def cell(v: object) -> str:
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--sizes", default="1000,5000,10000", help="gallery sizes, exact neighbour mode")
    parser.add_argument("--ann-size", type=int, default=100_000, help="gallery size of the faiss row (0: none)")
    parser.add_argument("--queries", type=int, default=10, help="queries compared with exact.py per size")
    parser.add_argument("--fast-queries", type=int, default=100, help="queries timed on the index")
    parser.add_argument("--oracle-max", type=int, default=10_000, help="largest size that runs the oracle")
    parser.add_argument("--oracle-queries", type=int, default=1, help="queries timed on the oracle")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    rows: list[dict] = []
    for i, size in enumerate(tqdm(sizes, desc="sizes", file=sys.stderr)):
        rows += bench_size(size, args, with_faiss=i == len(sizes) - 1 and args.ann_size > 0)
    if args.ann_size > 0:
        rows.append(bench_ann(args.ann_size, args))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows))
        print("\nreference: 'oracle' = k_reciprocal_reference (textbook loops), 'exact' = k_reciprocal_exact; "
              "both for one new query over cached gallery distances. fast_ms: GalleryIndex.query, median.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
