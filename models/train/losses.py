"""Training losses on torch tensors: label-smoothed identity cross-entropy and batch-hard triplet.

Both take a batch of N samples; `labels` are int64 (N,) identity indices. `torch` is imported by
the caller (these functions only use methods of the tensors given), so importing this module is free.
"""

from __future__ import annotations

from typing import Any

LABEL_SMOOTHING = 0.1
TRIPLET_MARGIN = 0.3


def identity_loss(logits: Any, labels: Any, *, smoothing: float = LABEL_SMOOTHING) -> Any:
    """Cross-entropy of (N, C) logits against (N,) labels with label smoothing ε (Szegedy et al.).

    The target puts 1 − ε on the true class and ε / C on every class (torch's convention).
    """
    log_probs = logits.log_softmax(dim=1)
    true = -log_probs.gather(1, labels.view(-1, 1)).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    return ((1.0 - smoothing) * true + smoothing * uniform).mean()


def pairwise_distances(features: Any) -> Any:
    """(N, N) Euclidean distances of (N, D) rows (clamped before the square root so gradients stay finite)."""
    squared = (features * features).sum(dim=1)
    gram = features @ features.t()
    d2 = squared.view(-1, 1) + squared.view(1, -1) - 2.0 * gram
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet(features: Any, labels: Any, *, margin: float = TRIPLET_MARGIN) -> Any:
    """Batch-hard triplet loss (Hermans et al. 2017): for each anchor, its farthest positive and
    nearest negative in the batch; mean of max(0, d(a, p) − d(a, n) + margin).

    Anchors without a positive (another sample of their identity) or without a negative are skipped;
    a batch with no valid anchor gives a zero that still carries a gradient.
    """
    dist = pairwise_distances(features)
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = same.new_ones(same.shape).triu(1) | same.new_ones(same.shape).tril(-1)  # off-diagonal
    positive = same & eye
    negative = ~same
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    hardest_pos = (dist * positive).amax(dim=1)
    inf = dist.detach().max() + 1.0
    hardest_neg = (dist + inf * (~negative)).amin(dim=1)
    return (hardest_pos - hardest_neg + margin).clamp_min(0.0)[valid].mean()
