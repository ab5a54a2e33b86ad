"""GalleryIndex with faiss neighbours: Flat equals exact mode, HNSW agrees on typical data."""

from __future__ import annotations

import numpy as np
import pytest
from crossview_testing.rerank_data import identities

from models.errors import InvalidInputError
from models.rerank import GalleryIndex

pytest.importorskip("faiss", reason="faiss-cpu is not installed: pip install 'crossview[ann]'")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, GalleryIndex]:
    x = identities(1600, seed=2)
    gallery, queries = x[:1500], x[1500:]
    exact = GalleryIndex()
    exact.add(np.arange(1500), gallery)
    return gallery, queries, exact


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([np.array_equal(x, y) for x, y in zip(a, b, strict=True)]))


def test_flat_index_equals_exact_mode(data) -> None:
    gallery, queries, exact = data
    ann = GalleryIndex(neighbours="faiss", factory="Flat")
    ann.add(np.arange(len(gallery)), gallery)
    np.testing.assert_array_equal(ann._st.lists, exact._st.lists)
    ids_e, d_e = exact.query(queries, top_k=10)
    ids_a, d_a = ann.query(queries, top_k=10)
    assert _agreement(ids_e, ids_a) >= 0.99
    np.testing.assert_allclose(d_a, d_e, atol=1e-4)


def test_hnsw_agrees_with_exact_mode(data) -> None:
    gallery, queries, exact = data
    ann = GalleryIndex(neighbours="faiss", factory="HNSW32", ef_search=128)
    ann.add(np.arange(len(gallery)), gallery)
    assert _agreement(exact.query(queries, top_k=10)[0], ann.query(queries, top_k=10)[0]) >= 0.95
    dense = ann.query(queries[:2])
    assert dense.shape == (2, len(gallery))


def test_remove_and_add_back_in_faiss_mode(data) -> None:
    gallery, queries, _ = data
    ann = GalleryIndex(neighbours="faiss", factory="HNSW32")
    ann.add(np.arange(len(gallery)), gallery)
    before, _ = ann.query(queries[:20], top_k=10)
    gone = np.unique(before[:, :3])
    ann.remove(gone)
    after, _ = ann.query(queries[:20], top_k=10)
    assert not np.isin(after, gone).any()
    ann.add(gone, gallery[gone])
    again, _ = ann.query(queries[:20], top_k=10)
    assert _agreement(before, again) >= 0.9


def test_removing_most_items_rebuilds_the_faiss_index() -> None:
    x = identities(300, seed=6)
    ann = GalleryIndex(neighbours="faiss", factory="HNSW32")
    ann.add(np.arange(300), x)
    ann.remove(np.arange(200))
    ids, _ = ann.query(x[250], top_k=1)
    assert ids[0, 0] == 250


def test_untrainable_factory_is_a_clear_error() -> None:
    ann = GalleryIndex(neighbours="faiss", factory="IVF1024,Flat")
    with pytest.raises(InvalidInputError, match="cannot be built"):
        ann.add(np.arange(50), identities(50))
