"""The loss of one batch for each VLsI step (and the baselines), as functions of model outputs.

Shapes: B batch, L sequence, N answer positions in the batch (logit positions that predict an answer
token), D hidden size, V vocabulary. Everything is computed at the N answer positions only: the
hidden states are gathered first, so verbalizers and KLs never touch prompt or image positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlsi_edge.distill.losses import TopK, answer_mask, kl_divergence, per_sample_mean, topk_kl
from vlsi_edge.distill.matching import MatchResult
from vlsi_edge.distill.verbalizer import Verbalizers, verbalize
from vlsi_edge.families import Family


@dataclass
class AnswerStates:
    """One model's view of a batch at its N answer positions."""

    hidden: dict[int, Tensor]  # decoder layer -> [N, D] output of that layer
    logits: Tensor  # [N, V] final logits
    targets: Tensor  # [N] the answer token each position predicts
    sample: Tensor  # [N] which sample of the batch each position belongs to


def answer_states(family: Family, model: nn.Module, batch: dict, layers: list[int]) -> AnswerStates:
    """Forward `model` on `batch` and gather the listed layers' hidden states at answer positions."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs, output_hidden_states=bool(layers))
    mask = answer_mask(labels)  # [B, L]
    if not mask.any():
        raise ValueError("the batch has no answer tokens (all labels are -100: answers truncated away?)")
    targets = labels[:, 1:][mask[:, :-1]]
    sample = torch.arange(labels.shape[0]).unsqueeze(1).expand_as(labels)[mask]
    # hidden_states[0] is the embedding output, so decoder layer k's output is hidden_states[k + 1].
    hidden = {k: out.hidden_states[k + 1][mask] for k in layers}
    return AnswerStates(hidden=hidden, logits=out.logits[mask], targets=targets, sample=sample)


# ---- step 1: verbalization ----------------------------------------------------------------------


def verbalization_losses(
    states: AnswerStates, verbalizers: Verbalizers, final_norm: nn.Module, lm_head: nn.Module
) -> dict[int, Tensor]:
    """Per target layer k: CE(lm_head(norm(verb_k(h_k))), next answer token), averaged over answer tokens."""
    return {
        layer: F.cross_entropy(verbalize(verbalizers, layer, states.hidden[layer], final_norm, lm_head).float(), states.targets)
        for layer in verbalizers.layers
    }


# ---- step 2: interaction ------------------------------------------------------------------------


@dataclass
class Heads:
    """A model's frozen output path and its verbalizers."""

    verbalizers: Verbalizers | None
    final_norm: nn.Module
    lm_head: nn.Module

    def verbalize(self, layer: int, h: Tensor) -> Tensor:
        return verbalize(self.verbalizers, layer, h, self.final_norm, self.lm_head)


@dataclass
class KLSettings:
    direction: str = "forward"
    temperature: float = 1.0
    vocab: int | None = None  # common id prefix of teacher and student (check_vocab_compatible)
    chunk_size: int = 0

    def __call__(self, teacher_logits, student_logits: Tensor) -> Tensor:
        """[N, Vt] logits (or a cached top-k teacher), [N, Vs] -> [N] per-position KL."""
        if isinstance(teacher_logits, TopK):
            return topk_kl(teacher_logits, student_logits, self.temperature, self.vocab)
        return kl_divergence(teacher_logits, student_logits, self.direction, self.temperature, self.vocab, self.chunk_size)


def interaction_loss(
    teacher_layer: Callable[[int], Tensor | TopK],
    teacher_final: Tensor | TopK,
    student: AnswerStates,
    student_heads: Heads,
    kl: KLSettings,
    match: Callable[[Callable[[int, list[int]], Tensor]], MatchResult],
    per_sample: bool = False,
    batch_size: int = 1,
    reduce_kls: Callable[[Tensor], Tensor] = lambda x: x,
    layer_weight: float = 1.0,
    final_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float], list[MatchResult]]:
    """VLsI step 2 for one batch: adaptive layer matching + matched-layer KLs + last-layer KL.

        loss = layer_weight * sum_{i_s} KL(verb_T[m(i_s)] || verb_S[i_s]) + final_weight * KL(T || S)

    `teacher_layer(i_l)` gives teacher target i_l's verbalized logits [N, V] (or a cached top-k); it is
    called lazily, only for the targets some student target considers, and at most once per target.
    `match(candidate_kl)` runs `match_layers` with the configured strategy and generator. Candidate
    KLs are computed without grad from detached student logits. `reduce_kls` averages candidate KLs
    across DDP ranks so that every rank samples from the same distribution and, with the same
    generator, takes the same decision. Returns (loss, each term as a float, the matchings).
    """
    s_layers = student_heads.verbalizers.layers
    student_logits = [student_heads.verbalize(layer, student.hidden[layer]) for layer in s_layers]  # with grad
    teacher_logits: dict[int, Tensor | TopK] = {}

    def teacher_at(i_l: int) -> Tensor | TopK:
        if i_l not in teacher_logits:
            with torch.no_grad():
                teacher_logits[i_l] = teacher_layer(i_l)
        return teacher_logits[i_l]

    kl_cache: dict[tuple[int, int], Tensor] = {}

    def position_kl(i_s: int, i_l: int) -> Tensor:
        """[N] KL of every answer position for the pair (i_s, i_l), no grad, cached."""
        if (i_s, i_l) not in kl_cache:
            with torch.no_grad():
                kl_cache[i_s, i_l] = kl(teacher_at(i_l), student_logits[i_s].detach())
        return kl_cache[i_s, i_l]

    if per_sample:
        matches = []
        for b in range(batch_size):
            def candidate_kl(i_s: int, cands: list[int], b=b) -> Tensor:
                return torch.stack([per_sample_mean(position_kl(i_s, c), student.sample, batch_size)[b] for c in cands])
            matches.append(match(candidate_kl))
    else:
        def candidate_kl(i_s: int, cands: list[int]) -> Tensor:
            return reduce_kls(torch.stack([position_kl(i_s, c).mean() for c in cands]))
        matches = [match(candidate_kl)]

    terms: dict[str, Tensor] = {}
    n = student.targets.shape[0]
    for i_s, s_layer in enumerate(s_layers):
        # Teacher target chosen for each answer position (its sample's match in per-sample mode).
        chosen = torch.tensor([m.pairs[i_s][1] for m in matches])
        per_position = chosen[student.sample] if per_sample else chosen.expand(n)
        total = student_logits[i_s].new_zeros(())
        for i_l in per_position.unique().tolist():
            rows = per_position == i_l
            total = total + kl(teacher_at(i_l)[rows], student_logits[i_s][rows]).sum()
        terms[f"kl_layer{s_layer}"] = total / n
    final = kl(teacher_final, student.logits).mean()
    loss = layer_weight * sum(terms.values()) + final_weight * final
    logged = {name: value.item() for name, value in terms.items()}
    logged["kl_final"] = final.item()
    return loss, logged, matches


# ---- baselines and step 3 -----------------------------------------------------------------------


def final_kd_loss(teacher_final: Tensor | TopK, student: AnswerStates, kl: KLSettings) -> Tensor:
    """Final-layer KD: KL(teacher logits || student logits) at answer positions."""
    return kl(teacher_final, student.logits).mean()


def hidden_l2_loss(
    teacher: AnswerStates,
    student: AnswerStates,
    pairs: list[tuple[int, int]],
    projections: nn.ModuleDict,
    final: Tensor,
    layer_weight: float = 1.0,
    final_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """The hidden-state baseline: L2 between projected student and teacher hidden states, plus the final KL.

        loss = layer_weight * sum_{(s, t)} mean_n ||P_s rms(h_s[n]) - rms(h_t[n])||^2 / D_t + final_weight * final

    `pairs` are (student layer, teacher layer); `P_s` a learned Linear(D_s, D_t) per student layer;
    rms(h) = h / sqrt(mean(h^2)) removes each layer's scale (residual streams grow with depth), so the
    term compares directions, as the KL between verbalized distributions does. `final` is the same
    last-layer KL term VLsI adds; only the intermediate-layer term differs between the two methods.
    """
    terms = {}
    for s_layer, t_layer in pairs:
        projected = projections[str(s_layer)](_rms(student.hidden[s_layer]))
        terms[f"l2_layer{s_layer}"] = (projected.float() - _rms(teacher.hidden[t_layer]).float()).pow(2).mean(-1).mean()
    loss = layer_weight * sum(terms.values()) + final_weight * final
    logged = {name: value.item() for name, value in terms.items()}
    logged["kl_final"] = final.item()
    return loss, logged


def _rms(h: Tensor) -> Tensor:
    return h * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(h.dtype)


def sft_loss(student: AnswerStates) -> Tensor:
    """Step 3 / SFT baseline: next-token cross-entropy on answer tokens."""
    return F.cross_entropy(student.logits.float(), student.targets)
