"""Re-ranking: k-reciprocal (Zhong et al., CVPR 2017) and cross-modal neighbour re-ranking.

- ``k_reciprocal_reference``: the textbook algorithm in plain loops (the test oracle).
- ``k_reciprocal_exact``: the same result, vectorised, for offline evaluation.
- ``GalleryIndex``: the edge's incremental index; gallery work once, per query a distance row
  (``neighbours="faiss"`` for 1e5–1e6 items, see ``ann.py``).
- ``crossmodal_rerank`` / ``image_neighbours``: text-query refinement.
"""

from models.rerank._common import unit_distances
from models.rerank.crossmodal import crossmodal_rerank, image_neighbours
from models.rerank.exact import k_reciprocal_exact
from models.rerank.incremental import GalleryIndex
from models.rerank.neighbours import ExactNeighbours
from models.rerank.reference import k_reciprocal_reference

__all__ = [
    "ExactNeighbours",
    "GalleryIndex",
    "crossmodal_rerank",
    "image_neighbours",
    "k_reciprocal_exact",
    "k_reciprocal_reference",
    "unit_distances",
]
