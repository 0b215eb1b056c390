"""The validation items and the float student's reference answers on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample


@dataclass
class Reference:
    samples: list[VQASample]
    answers: list[str]          # the float student's greedy answers (its eager parts through the host loop)
    first_logits: np.ndarray    # [N, V] float student's logits for the first answer token


def validation_items(data: ShapesConfig, size: int) -> list[VQASample]:
    split = ShapesVQA("test", config=data)
    if size > len(split):
        raise ValueError(f"validation.size {size}: the ShapesVQA test split has {len(split)} items")
    return [split[i] for i in range(size)]
