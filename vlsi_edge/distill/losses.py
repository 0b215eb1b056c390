"""Distillation losses as pure functions: KL over the vocabulary, on rows of answer positions.

VLsI (arXiv 2412.01822) uses two losses:
  step 1 (verbalization) and step 3 (SFT):  CE = -1/N sum_{answer t} log p_student(y_{t+1} | x_{<=t})
  step 2 (interaction):                     KL(p_teacher || p_student) at answer positions, averaged over
                                            answer tokens, one term per matched layer pair + the final layer.
`vlsi_edge.distill.steps` gathers each model's answer positions once (`answer_states`: rows [N, V]) and
combines the terms (cross-entropy is torch's on those rows); each function here returns one term.

Shapes: B batch, L sequence length, V vocabulary size, N number of (answer) positions.
Conventions:
  - labels follow Hugging Face causal LMs: `labels[b, t]` is the token at position t, -100 where no loss
    is taken (prompt, image, padding); logits at position t predict token t+1 (the causal shift).
  - maths runs in float32 whatever the logits' dtype (bf16 log-softmax over 150k tokens is too coarse),
    one chunk of positions at a time when `chunk_size > 0`.
  - the teacher is expected to come from a `no_grad` forward; nothing here detaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # same value as vlsi_edge.families.IGNORE_INDEX (HF's); kept here so losses stay torch-only
Direction = Literal["forward", "reverse"]
DIRECTIONS = ("forward", "reverse")


def answer_mask(labels: Tensor) -> Tensor:
    """labels [..., L] (long) -> mask [..., L] (bool): True at logit positions that predict an answer token.

    mask[..., t] = labels[..., t+1] != -100 (causal shift); the last position predicts nothing -> False.
    """
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[..., :-1] = labels[..., 1:] != IGNORE_INDEX
    return mask


def _common_vocab(teacher_width: int, student_width: int, vocab: int | None) -> int:
    if vocab is None:
        if teacher_width != student_width:
            raise ValueError(
                f"teacher logits have {teacher_width} columns but student logits {student_width}; pass "
                "vocab=<shared token count> (see check_vocab_compatible) to compare on the common prefix"
            )
        return teacher_width
    if not 1 <= vocab <= min(teacher_width, student_width):
        raise ValueError(
            f"vocab={vocab} must be in [1, {min(teacher_width, student_width)}] (teacher width "
            f"{teacher_width}, student width {student_width})"
        )
    return vocab


def _kl_rows(teacher: Tensor, student: Tensor, direction: str, temperature: float) -> Tensor:
    """teacher [n, V], student [n, V] -> KL per row [n], float32, times T^2."""
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    if direction == "forward":  # KL(p_t || p_s) = sum_v p_t (log p_t - log p_s)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    else:  # KL(p_s || p_t) = sum_v p_s (log p_s - log p_t)
        kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    # T^2 keeps gradient magnitudes comparable across temperatures (Hinton et al., 2015): the softened
    # gradients scale as 1/T^2.
    return kl * temperature**2


def kl_divergence(
    teacher_logits: Tensor,
    student_logits: Tensor,
    direction: Direction = "forward",
    temperature: float = 1.0,
    vocab: int | None = None,
    chunk_size: int = 0,
) -> Tensor:
    """Per-position KL divergence over the vocabulary.

    teacher_logits [..., Vt], student_logits [..., Vs] (same leading shape) -> KL [...] (float32).

        forward: T^2 * KL(p_t || p_s) = T^2 * sum_v p_t(v) (log p_t(v) - log p_s(v))
        reverse: T^2 * KL(p_s || p_t)
        with p_t = softmax(teacher[:vocab] / T), p_s = softmax(student[:vocab] / T).

    `vocab` truncates both to the common prefix of real token ids (widths may differ by padding rows);
    None requires equal widths. `chunk_size > 0` processes that many positions at a time to bound peak
    memory (float32 [chunk, V] instead of [N, V]); under autograd each chunk is checkpointed, so the
    backward pass also holds one chunk's softmax at a time. Result equals chunk_size=0 up to float error.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"KL direction {direction!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0 (0 = no chunking), got {chunk_size}")
    if teacher_logits.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)} "
            "differ in their leading (position) dims"
        )
    width = _common_vocab(teacher_logits.shape[-1], student_logits.shape[-1], vocab)
    lead = teacher_logits.shape[:-1]
    teacher = teacher_logits[..., :width].reshape(-1, width)
    student = student_logits[..., :width].reshape(-1, width)
    n = teacher.shape[0]
    if chunk_size == 0 or chunk_size >= n:
        return _kl_rows(teacher, student, direction, temperature).reshape(lead)
    needs_grad = torch.is_grad_enabled() and (teacher.requires_grad or student.requires_grad)
    pieces = []
    for i in range(0, n, chunk_size):
        t, s = teacher[i : i + chunk_size], student[i : i + chunk_size]
        if needs_grad:
            pieces.append(checkpoint(_kl_rows, t, s, direction, temperature, use_reentrant=False))
        else:
            pieces.append(_kl_rows(t, s, direction, temperature))
    return torch.cat(pieces).reshape(lead)


def per_sample_mean(values: Tensor, sample: Tensor, batch_size: int) -> Tensor:
    """values [N], sample ids [N] -> [B] mean per sample (NaN for a sample with no values)."""
    total = torch.zeros(batch_size, dtype=values.dtype, device=values.device).index_add(0, sample, values)
    count = torch.zeros(batch_size, dtype=values.dtype, device=values.device).index_add(0, sample, torch.ones_like(values))
    return total / count


@dataclass
class TopK:
    """A sparse teacher distribution: [N, k] log-probs and ids (rows = answer positions)."""

    logprobs: torch.Tensor
    ids: torch.Tensor

    def __getitem__(self, rows) -> "TopK":
        return TopK(self.logprobs[rows], self.ids[rows])

    @classmethod
    def of(cls, logits: torch.Tensor, k: int, vocab: int) -> "TopK":
        logprobs = F.log_softmax(logits[..., :vocab].float(), dim=-1)
        values, ids = logprobs.topk(min(k, vocab), dim=-1)
        return cls(values, ids)


def topk_kl(teacher: TopK, student_logits: torch.Tensor, temperature: float, vocab: int | None) -> torch.Tensor:
    """[N] forward KL of a top-k teacher (renormalised on its support) against full student logits."""
    width = vocab or student_logits.shape[-1]
    log_s = F.log_softmax(student_logits[..., :width].float() / temperature, dim=-1).gather(-1, teacher.ids.long())
    log_t = F.log_softmax(teacher.logprobs.float() / temperature, dim=-1)  # renormalise on the support
    return (log_t.exp() * (log_t - log_s)).sum(-1) * temperature**2
