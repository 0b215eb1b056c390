"""The learning-rate schedule every trainer here uses (the zoo's and the distillation stages')."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, steps: int, floor: float) -> float:
    """Factor of the peak learning rate at `step`: linear warm-up over `warmup` steps, then cosine decay
    to `floor` at `steps` (and `floor` after it)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
