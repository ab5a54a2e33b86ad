"""The `reid` judge: the cosine → μ mapping and de-duplication with fake embedders, then real crops."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.types import Embeddings
from models.verify import JudgeConfigError, create_judge
from models.verify.reid_judge import ReidJudge


class TableEmbedder:
    """Embeds an image as the unit vector stored for its top-left pixel value; counts what it embeds."""

    def __init__(self, table: dict[int, list[float]], fingerprint: str = "fake") -> None:
        self.table = {k: (np.asarray(v) / np.linalg.norm(v)).astype(np.float32) for k, v in table.items()}
        self.fingerprint = fingerprint
        self.embedded = 0

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        self.embedded += len(images)
        return Embeddings(np.stack([self.table[int(image[0, 0, 0])] for image in images]), self.fingerprint)


def image(value: int) -> np.ndarray:
    return np.full((32, 16, 3), value, np.uint8)


TABLE = {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [-1.0, 0.0], 4: [1.0, 1.0]}


@pytest.mark.parametrize(
    ("a", "b", "mu"),
    [(1, 1, 0.0), (1, 2, 0.5), (1, 3, 1.0), (1, 4, (1 - np.sqrt(0.5)) / 2)],
)
def test_mu_is_half_the_cosine_distance(a: int, b: int, mu: float) -> None:
    judge = ReidJudge(embedders=[TableEmbedder(TABLE)])
    assert judge.score_pairs([(image(a), image(b))])[0] == pytest.approx(mu, abs=1e-6)


def test_an_ensemble_averages_its_models() -> None:
    other = {1: [1.0, 0.0], 2: [1.0, 0.0], 3: [1.0, 0.0], 4: [1.0, 0.0]}  # sees everyone as the same
    judge = ReidJudge(embedders=[TableEmbedder(TABLE), TableEmbedder(other, "fake-2")])
    assert judge.score_pairs([(image(1), image(3))])[0] == pytest.approx(0.5)
    assert judge.models == ("fake", "fake-2")


def test_each_distinct_image_is_embedded_once() -> None:
    embedder = TableEmbedder(TABLE)
    judge = ReidJudge(embedders=[embedder], swap=True)
    query = image(1)
    candidates = [image(2), image(3), image(2).copy(), image(4)]  # the copy has the same content
    mu = judge.score_shortlist(query, candidates)
    assert mu.shape == (4,) and mu[0] == mu[2]
    assert embedder.embedded == 4  # query + three distinct candidates, both orders included


def test_vectors_are_kept_between_calls_up_to_cache_size() -> None:
    a, b = TableEmbedder(TABLE), TableEmbedder({k: [v[1], v[0]] for k, v in TABLE.items()}, "fake-2")
    judge = ReidJudge(embedders=[a, b], cache_size=3)
    plain = ReidJudge(embedders=[TableEmbedder(TABLE), TableEmbedder({k: [v[1], v[0]] for k, v in TABLE.items()})],
                      cache_size=0)
    first = judge.score_shortlist(image(1), [image(2), image(3)])
    assert a.embedded == b.embedded == 3
    again = judge.score_shortlist(image(4), [image(2), image(3)])  # the references are cached: only the query
    assert a.embedded == b.embedded == 4
    for query, refs, mu in ((1, [2, 3], first), (4, [2, 3], again)):  # the same numbers as without a cache
        assert mu == pytest.approx(plain.score_shortlist(image(query), [image(r) for r in refs]))
    judge.score_shortlist(image(1), [image(2)])  # 1 was evicted (size 3, least recently used)
    assert a.embedded == 5
    with pytest.raises(JudgeConfigError, match="cache_size"):
        ReidJudge(embedders=[a], cache_size=-1)


def test_an_empty_model_list_is_refused() -> None:
    with pytest.raises(JudgeConfigError, match="at least one"):
        ReidJudge(models=())


def test_same_identity_pairs_score_lower_than_different_ones_on_real_crops(models_dir: Path,
                                                                            data_dir: Path) -> None:
    files = sorted((data_dir / "cuhk03_labeled" / "val").glob("*.jpg"))
    by_identity: dict[str, list[Path]] = collections.defaultdict(list)
    for file in files:
        by_identity[file.name.split("_")[0]].append(file)
    identities = sorted(i for i, fs in by_identity.items() if len(fs) >= 6)[:12]
    if len(identities) < 12:
        pytest.skip(f"need 12 CUHK03 val identities with 6+ crops under {data_dir}")
    crops = {i: (cv2.imread(str(by_identity[i][0])), cv2.imread(str(by_identity[i][-1]))) for i in identities}
    same = [(crops[i][0], crops[i][1]) for i in identities]
    different = [(crops[i][0], crops[j][1]) for i, j in zip(identities, identities[1:] + identities[:1], strict=True)]
    judge = create_judge("reid")  # Intel 0277 + 0286
    mu = judge.score_pairs(same + different)
    mu_same, mu_different = mu[: len(same)], mu[len(same):]
    assert np.all((mu >= 0) & (mu <= 1))
    assert mu_same.mean() + 0.05 < mu_different.mean()
    assert np.mean(mu_same < mu_different) >= 0.75  # per query: its own pair beats a stranger's
