"""How sure a validation can be: an accuracy's interval, and what a program loses against the float model on
the same items (a paired difference: both answered every item, so only the items where they differ count)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest


def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of the proportion correct / n (well-behaved near 0 and 1, unlike the Wald one)."""
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def paired_loss(float_correct, program_correct, resamples: int = 20_000, seed: int = 0) -> dict:
    """Accuracy points the program loses against the float model on the same items (negative: it gains).

    `float_only` items the float model got right and the program wrong, `program_only` the reverse; the loss
    is 100 * (float_only - program_only) / n. Its 95% interval is a paired bootstrap over items: each item's
    difference is +1, -1 or 0, so a resample of n items is a multinomial draw of the two discordant counts
    (exact, and fast for any n). `mcnemar_p`: McNemar's exact test (two-sided binomial on the discordant items).
    """
    a, b = np.asarray(float_correct, bool), np.asarray(program_correct, bool)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"paired_loss: need two equal non-empty 1-D vectors, got {a.shape} and {b.shape}")
    n = a.size
    float_only, program_only = int((a & ~b).sum()), int((~a & b).sum())
    draws = np.random.default_rng(seed).multinomial(
        n, [float_only / n, program_only / n, 1 - (float_only + program_only) / n], size=resamples)
    losses = 100 * (draws[:, 0] - draws[:, 1]) / n
    low, high = np.percentile(losses, [2.5, 97.5])
    discordant = float_only + program_only
    return {
        "loss_points": round(100 * (float_only - program_only) / n, 2),
        "loss_95": [round(float(low), 2), round(float(high), 2)],
        "float_only": float_only,
        "program_only": program_only,
        "mcnemar_p": float(binomtest(min(float_only, program_only), discordant, 0.5).pvalue) if discordant else 1.0,
    }
