"""The validation's statistics on constructed cases whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlsi_edge.validate.stats import paired_loss, wilson


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)  # 3.84 / (20 + 3.84): no Wald collapse at 0


def _pair(n: int, float_only: int, program_only: int, both: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with the given discordant counts (the rest: `both` right by both, others by neither)."""
    f = np.zeros(n, bool)
    p = np.zeros(n, bool)
    f[:float_only] = True
    p[float_only : float_only + program_only] = True
    end = float_only + program_only
    f[end : end + both] = p[end : end + both] = True
    rng = np.random.default_rng(1)
    order = rng.permutation(n)  # the statistic depends on the counts only, not on where the items sit
    return f[order], p[order]


def test_paired_loss_of_a_known_case():
    """30 items only the float model gets, 10 only the program: loss 2 points; the bootstrap interval is the paired
    normal one (se = sqrt(b + c - (b - c)^2 / n) / n), McNemar's p the two-sided binomial tail P(X <= 10 | 40, 1/2)."""
    f, p = _pair(1000, 30, 10, 500)
    out = paired_loss(f, p)
    assert out["loss_points"] == 2.0 and (out["float_only"], out["program_only"]) == (30, 10)
    se = 100 * math.sqrt(40 - 20**2 / 1000) / 1000
    assert out["loss_95"][0] == pytest.approx(2.0 - 1.96 * se, abs=0.15)
    assert out["loss_95"][1] == pytest.approx(2.0 + 1.96 * se, abs=0.15)
    tail = sum(math.comb(40, k) for k in range(11)) / 2**40
    assert out["mcnemar_p"] == pytest.approx(2 * tail, rel=1e-9)
    # The same accuracies with no overlap in who is right (30 + 10 discordant -> 60 + 40) are less certain.
    wider = paired_loss(*_pair(1000, 60, 40, 470))
    assert wider["loss_points"] == 2.0 and wider["loss_95"][1] - wider["loss_95"][0] > out["loss_95"][1] - out["loss_95"][0]


def test_paired_loss_is_zero_for_identical_answers_and_negative_for_a_gain():
    f, _ = _pair(300, 0, 0, 150)
    same = paired_loss(f, f)
    assert same["loss_points"] == 0 and same["loss_95"] == [0.0, 0.0] and same["mcnemar_p"] == 1.0
    gain = paired_loss(*_pair(300, 3, 9, 100))
    assert gain["loss_points"] == -2.0 and gain["loss_95"][0] < -2.0 < gain["loss_95"][1]


def test_paired_loss_refuses_vectors_of_different_items():
    with pytest.raises(ValueError, match="equal non-empty 1-D"):
        paired_loss([True, False], [True])
