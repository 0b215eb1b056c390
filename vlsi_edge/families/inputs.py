"""Model inputs from (image, question, answer): one example at a time, then padded into a batch.

Labels are answer-only: every prompt, image and padding position is IGNORE_INDEX, so the loss (and
every distillation KL) is taken on exactly the tokens the assistant says.
"""

from __future__ import annotations

from typing import Any

import torch

from vlsi_edge.data import VQASample
from vlsi_edge.families.base import IGNORE_INDEX, Family

# Keys whose last dimension is the token sequence; everything else (pixels, grids) is per image.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "labels")


def build_example(family: Family, processor: Any, sample: VQASample, with_answer: bool = True) -> dict:
    """Tensors for one sample, batch dimension 1, unpadded.

    The prompt (with the image) goes through the processor; the answer is tokenized on its own and
    appended. Our templates end the prompt right before the answer's leading space, which a
    byte-level BPE always splits on, so this equals tokenizing the joined text — and it is exactly
    what generation sees: the prompt, then the answer's tokens.
    """
    example = family.process(processor, [sample.image], [family.prompt(sample.question, sample.history)])
    prompt_len = example["input_ids"].shape[1]
    example["labels"] = torch.full((1, prompt_len), IGNORE_INDEX, dtype=torch.long)
    if with_answer:
        tokenizer = family.tokenizer(processor)
        answer = tokenizer(family.answer_text(sample.answer), add_special_tokens=False, return_tensors="pt")
        answer_ids = answer["input_ids"]
        example["input_ids"] = torch.cat([example["input_ids"], answer_ids], dim=1)
        example["labels"] = torch.cat([example["labels"], answer_ids], dim=1)
        for key in ("attention_mask", "mm_token_type_ids"):
            if key in example:
                fill = 1 if key == "attention_mask" else 0
                example[key] = torch.cat([example[key], torch.full_like(answer_ids, fill)], dim=1)
    return example


def collate(examples: list[dict], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad sequence keys to the longest example; concatenate per-image tensors along dim 0.

    Right padding for training (labels line up with logits); left padding for generation (every
    prompt ends at the last position, where the first new token is predicted).
    """
    length = max(ex["input_ids"].shape[1] for ex in examples)
    batch: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        if key not in SEQUENCE_KEYS:
            batch[key] = torch.cat([ex[key] for ex in examples], dim=0)
            continue
        fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}.get(key, 0)
        rows = []
        for ex in examples:
            value = ex[key]
            pad = torch.full((1, length - value.shape[1]), fill, dtype=value.dtype)
            rows.append(torch.cat([value, pad] if padding_side == "right" else [pad, value], dim=1))
        batch[key] = torch.cat(rows, dim=0)
    return batch


def build_batch(
    family: Family, processor: Any, samples: list[VQASample], with_answer: bool = True, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    examples = [build_example(family, processor, s, with_answer) for s in samples]
    return collate(examples, family.tokenizer(processor).pad_token_id, padding_side)


def write_inputs(family: Family, processor: Any, samples: list[VQASample], path) -> None:
    """A program worker's inputs (`vlsi_edge.runtime.worker.read_inputs`): input_ids [1, S] and
    pixel_values (the processor's layout for one image) per item, as one .npz."""
    import numpy as np

    arrays = {}
    for i, sample in enumerate(samples):
        batch = build_batch(family, processor, [sample], with_answer=False)
        arrays[f"ids_{i}"] = batch["input_ids"].numpy()
        arrays[f"pixels_{i}"] = batch["pixel_values"].numpy().astype(np.float32)
    np.savez(path, count=np.array(len(samples)), **arrays)
