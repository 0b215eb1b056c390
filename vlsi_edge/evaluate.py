"""Greedy answers from an eager HF model, scored by exact match — the float reference for everything.

Every accuracy the project reports (zoo cards, training reports, export gates) goes through
`evaluate`, so "teacher 85%" and "int4 .pte 84%" are measured the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample, score
from vlsi_edge.families import Family, build_batch

log = logging.getLogger(__name__)


@torch.no_grad()
def generate_answers(
    model: PreTrainedModel,
    family: Family,
    processor: Any,
    samples: Sequence[VQASample],
    batch_size: int = 64,
    max_new_tokens: int = 40,
    progress: bool = False,
) -> list[str]:
    """Greedy-decode an answer for every sample (left-padded batches, stop at the end-of-turn token)."""
    tokenizer = family.tokenizer(processor)
    eos_id = tokenizer.convert_tokens_to_ids(family.eos_token)
    was_training = model.training
    model.eval()
    answers: list[str] = []
    starts = range(0, len(samples), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        chunk = list(samples[start : start + batch_size])
        batch = build_batch(family, processor, chunk, with_answer=False, padding_side="left")
        batch.pop("labels")
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    model.train(was_training)
    return answers


def evaluate(
    model: PreTrainedModel,
    family: Family,
    processor: Any,
    samples: Sequence[VQASample],
    batch_size: int = 64,
    progress: bool = False,
) -> dict:
    """Exact-match accuracy overall and per question family (see `vlsi_edge.data.score`)."""
    predictions = generate_answers(model, family, processor, samples, batch_size, progress=progress)
    return score(predictions, list(samples))


EVAL_SPLITS = ("val", "test", "holdout")


def evaluate_splits(
    model: PreTrainedModel, family: Family, processor: Any, data: ShapesConfig, eval_size: int | None = None
) -> dict[str, dict]:
    """ShapesVQA accuracy on val / test / holdout (whole splits unless `eval_size` caps them)."""
    results = {}
    for split in EVAL_SPLITS:
        dataset = ShapesVQA(split, config=data)
        n = len(dataset) if eval_size is None else min(eval_size, len(dataset))
        results[split] = evaluate(model, family, processor, [dataset[i] for i in range(n)])
    return results
