"""Cross-modal neighbour re-ranking for text queries (docs/architecture.md §2, after TextReID).

For a text query t and an image candidate g: A = t's k most similar images (by text-image
similarity), B = g's k nearest images (by image-image similarity, g itself included). The
refined similarity is ``sim(t, g) + weight · |A ∩ B| / |A ∪ B|``: an image whose visual
neighbourhood agrees with what the text retrieved moves up. The defaults (k=10, weight=0.1) are
this project's choice of "a small weight", not values from a paper.
"""

from __future__ import annotations

import numpy as np

from models.errors import InvalidInputError
from models.rerank._common import stable_topk

_CHUNK_CELLS = 4_000_000


def image_neighbours(image_image: np.ndarray, k: int = 10) -> np.ndarray:
    """(G, min(k, G)) int64 indices of each image's most similar images, itself first.

    Args:
        image_image: (G, G) image-image similarities (higher = more similar).
        k: neighbours per image, including the image itself.
    """
    sim = _check_matrix("image_image", image_image)
    if sim.shape[0] != sim.shape[1]:
        raise InvalidInputError(f"image_image: expected a square matrix, got shape {sim.shape}")
    k = _check_k(k)
    score = -sim.astype(np.float64)
    np.fill_diagonal(score, -np.inf)  # an image is its own nearest neighbour
    return stable_topk(score, min(k, sim.shape[0]))


def crossmodal_rerank(
    text_image: np.ndarray,
    neighbours: np.ndarray,
    k: int = 10,
    weight: float = 0.1,
) -> np.ndarray:
    """Text-to-image similarities refined by the Jaccard of text and image neighbourhoods.

    Args:
        text_image: (T, G) text-to-image similarities (higher = more similar).
        neighbours: (G, K) int image neighbour lists, e.g. from ``image_neighbours``; the first
            ``k`` of each row are used (K >= min(k, G)).
        k: neighbourhood size on both sides (clipped to G).
        weight: weight of the Jaccard term.

    Returns:
        (T, G) float32 refined similarities.
    """
    sim = _check_matrix("text_image", text_image)
    n_text, n_gallery = sim.shape
    k = min(_check_k(k), n_gallery)
    if not (np.isfinite(weight) and weight >= 0):
        raise InvalidInputError(f"weight: expected a finite number >= 0, got {weight!r}")
    if not isinstance(neighbours, np.ndarray) or neighbours.ndim != 2 or neighbours.shape[0] != n_gallery:
        shape = getattr(neighbours, "shape", type(neighbours).__name__)
        raise InvalidInputError(f"neighbours: expected shape ({n_gallery}, >={k}), got {shape}")
    if neighbours.shape[1] < k or not np.issubdtype(neighbours.dtype, np.integer):
        raise InvalidInputError(f"neighbours: expected ({n_gallery}, >={k}) integers, "
                                f"got {neighbours.shape} {neighbours.dtype}")
    image_sets = neighbours[:, :k].astype(np.int64)
    if image_sets.min() < 0 or image_sets.max() >= n_gallery:
        raise InvalidInputError(f"neighbours: expected indices in [0, {n_gallery}), "
                                f"got [{image_sets.min()}, {image_sets.max()}]")

    text_sets = stable_topk(-sim.astype(np.float64), k)  # (T, k)
    out = sim.astype(np.float32)
    step = max(1, _CHUNK_CELLS // (n_gallery * k))
    for start in range(0, n_text, step):
        rows = text_sets[start : start + step]
        member = np.zeros((len(rows), n_gallery), dtype=bool)
        member[np.arange(len(rows))[:, None], rows] = True
        common = member[:, image_sets].sum(axis=2)  # (t, G): |A ∩ B|
        jaccard = common / (2 * k - common)
        out[start : start + step] += np.float32(weight) * jaccard.astype(np.float32)
    return out


def _check_matrix(name: str, value: np.ndarray) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        shape = getattr(value, "shape", type(value).__name__)
        raise InvalidInputError(f"{name}: expected a 2-D numpy array, got {shape}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise InvalidInputError(f"{name}: expected a non-empty matrix, got shape {value.shape}")
    if not np.issubdtype(value.dtype, np.number) or not np.all(np.isfinite(value)):
        raise InvalidInputError(f"{name}: expected finite numbers, got NaN, inf or dtype {value.dtype}")
    return value


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k: expected an integer >= 1, got {k!r}")
    return int(k)
