"""Runtime inputs for the validation items, and the float student's reference answers on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample
from vlsi_edge.evaluate import generate_answers
from vlsi_edge.families import build_batch


@dataclass
class Reference:
    samples: list[VQASample]
    answers: list[str]          # the float student's greedy answers (transformers generate)
    first_logits: np.ndarray    # [N, V] float student's logits for the first answer token


def validation_items(data: ShapesConfig, size: int) -> list[VQASample]:
    split = ShapesVQA("test", config=data)
    if size > len(split):
        raise ValueError(f"validation.size {size}: the ShapesVQA test split has {len(split)} items")
    return [split[i] for i in range(size)]


def write_inputs(family, processor, samples: list[VQASample], path: Path) -> None:
    """input_ids [1, S] and pixel_values (the processor's layout for one image) per item, as one .npz."""
    arrays = {}
    for i, sample in enumerate(samples):
        batch = build_batch(family, processor, [sample], with_answer=False)
        arrays[f"ids_{i}"] = batch["input_ids"].numpy()
        arrays[f"pixels_{i}"] = batch["pixel_values"].numpy().astype(np.float32)
    np.savez(path, count=np.array(len(samples)), **arrays)


@torch.no_grad()
def float_reference(model, family, processor, samples: list[VQASample], max_new_tokens: int) -> Reference:
    answers = generate_answers(model, family, processor, samples, max_new_tokens=max_new_tokens)
    logits = []
    for sample in samples:
        batch = build_batch(family, processor, [sample], with_answer=False)
        batch.pop("labels")
        logits.append(model(**batch).logits[0, -1].float().numpy())
    return Reference(samples, answers, np.stack(logits))
