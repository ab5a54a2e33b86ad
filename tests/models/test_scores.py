"""models.scores: the one P(same) check and label."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.scores import (
    DEFAULT_CONFIRM_P_SAME,
    DEFAULT_RECALL_P_SAME,
    DEFAULT_WATCH_P_SAME,
    P_SAME_LABEL,
    check_p_same,
    format_p_same,
)


@pytest.mark.parametrize(("value", "expected"), [
    (0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0, 0.0), (1, 1.0), (np.float32(0.25), 0.25), (np.float64(0.9), 0.9),
    (np.int64(1), 1.0), (5e-324, 5e-324),
])
def test_check_p_same_accepts(value: object, expected: float) -> None:
    got = check_p_same("threshold", value)
    assert got == expected and type(got) is float


@pytest.mark.parametrize("value", [-0.0001, 1.0001, -1, 2, math.nan, math.inf, -math.inf, True, False, "0.5", None,
                                   [0.5], np.array([0.5]), complex(0.5, 0)])
def test_check_p_same_refuses(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^threshold: expected a P\(same\) in \[0, 1\], got "):
        check_p_same("threshold", value)


def test_format_and_defaults() -> None:
    assert P_SAME_LABEL == "P(same)"
    assert format_p_same(0.934) == "P(same) 0.93" and format_p_same(1.0) == "P(same) 1.00"
    assert format_p_same(None) == "-" and format_p_same(math.nan) == "-"
    assert 0.0 <= DEFAULT_RECALL_P_SAME < DEFAULT_CONFIRM_P_SAME <= DEFAULT_WATCH_P_SAME <= 1.0
    for value in (DEFAULT_RECALL_P_SAME, DEFAULT_CONFIRM_P_SAME, DEFAULT_WATCH_P_SAME):
        assert check_p_same("default", value) == value
