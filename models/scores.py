"""The one number operators read and set thresholds on: P(same), the calibrated probability that two
tracklets show the same person, in [0, 1].

Three of them travel with a match (all on the same scale, all named the same everywhere: store
columns, wire fields, API fields, CLI tables, UI cards):

- ``stage1_p_same``: the edge model's cosine distance through that model's calibration;
- ``stage2_p_same``: the hub judge's output through the judge's calibration;
- ``p_same``: the two fused (`models.calibration.fuse_p_same`) — what every threshold reads
  (the hub's decision line, the watchlist).

A P(same) of 0.9 means: of many pairs scored 0.9 on data like the calibration data, about nine in ten
show the same person. k-reciprocal re-ranking only orders candidates; it never changes these numbers.
"""

from __future__ import annotations

import math
import numbers

from models.errors import InvalidInputError

#: how the number is labelled wherever it is shown
P_SAME_LABEL = "P(same)"
#: the hub confirms the best candidate when its fused P(same) reaches this
DEFAULT_CONFIRM_P_SAME = 0.5
#: a watchlist identity raises an alert when a confirmed sighting's P(same) reaches this
DEFAULT_WATCH_P_SAME = 0.5
#: the edge sends a candidate up when its stage-1 P(same) reaches this (stage one is for recall)
DEFAULT_RECALL_P_SAME = 0.05


def check_p_same(name: str, value: object) -> float:
    """`value` as a float in [0, 1]; InvalidInputError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name}: expected a {P_SAME_LABEL} in [0, 1], got {value!r}")
    return float(value)


def format_p_same(value: float | None) -> str:
    """``"P(same) 0.93"``, or ``"-"`` for no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{P_SAME_LABEL} {value:.2f}"
