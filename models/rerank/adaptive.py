"""How much k-reciprocal re-ranking a gallery can use.

Re-ranking helps when each identity's own images are among each other's nearest neighbours: k1 is
the size of the neighbourhood it trusts. With k1 far above the images per identity (Zhong et al.'s
k1=20 was set on Market-1501, ~20 images per identity) the neighbourhoods fill with other people and
re-ranking *lowers* recall; with a handful of identities there is no neighbourhood structure at all
(with one identity every re-ranked distance is the same). So: off below `min_identities`, else k1 a
few times the mean images per identity, never above the paper's value.
"""

from __future__ import annotations

import math


def rerank_k1(identities: int, items: int, *, k1_max: int = 20, min_identities: int = 20,
              per_identity: float = 2.0) -> int | None:
    """k1 for a gallery of `items` vectors over `identities` people; None: do not re-rank."""
    if identities < max(1, min_identities) or items < 1:
        return None
    return max(2, min(k1_max, math.ceil(per_identity * items / identities)))
