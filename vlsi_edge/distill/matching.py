"""Adaptive layer matching (VLsI step 2): which teacher target layer each student target layer imitates.

Indices here are positions in the target lists (i_s in [0, t_s), i_l in [0, t_l)), not layer numbers;
`MatchResult.layer_pairs` maps them back for logging. The paper's loop (arXiv 2412.01822, Sec. 3.2):

    start = 0
    for i_s in 0 .. t_s-1:
        cand = [start .. t_l - t_s + i_s]          # search range: leaves one teacher target for each
                                                   # remaining student target, so it is never empty
        kld[c] = KL(teacher_verbalized[c] || student_verbalized[i_s])   for c in cand   (no grad)
        T = scale / (max(kld) - min(kld) + eps)    # adaptive temperature
        m ~ Multinomial(softmax(-kld / T))         # exploration: lower KL -> more likely
        start = cand[m] + 1                        # order preservation

Ablation strategies (paper's table): `uniform` (i_l = i_s * floor(t_l / t_s)), `bottom1` (argmin KL over
all teacher targets, no range/order), `random` (uniform over teacher targets), and the `adaptive` loop
with `ranged` / `order` / fixed `temperature` switched off one by one.

The KLs come from the caller (`candidate_kl`), computed without grad; this module only decides. Under
DDP each rank must reach the same decision: give every rank a generator with the same seed *and* the same
KLs (all-reduce them inside `candidate_kl`), or match on rank 0 and broadcast `pairs`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)

STRATEGIES = ("adaptive", "uniform", "bottom1", "random")
CandidateKL = Callable[[int, list[int]], Tensor]


@dataclass
class MatchResult:
    pairs: list[tuple[int, int]]  # (i_s, i_l): indices into the student / teacher target lists
    temperatures: list[float]  # sampling temperature per student target (nan where none is used)
    candidates: list[list[int]]  # teacher target indices considered for each i_s
    candidate_kls: list[list[float]]  # their KLs (empty where the strategy computes none)
    entropies: list[float]  # entropy (nats) of the distribution each match was drawn from (0 if deterministic)

    def layer_pairs(self, student_layers: Sequence[int], teacher_layers: Sequence[int]) -> list[tuple[int, int]]:
        """The matched pairs as (student decoder layer, teacher decoder layer), for logs and heat maps."""
        return [(student_layers[i_s], teacher_layers[i_l]) for i_s, i_l in self.pairs]


def search_range(i_s: int, start: int, t_s: int, t_l: int) -> list[int]:
    """Teacher candidates for student target i_s: [start .. t_l - t_s + i_s] (inclusive).

    The upper end leaves t_s - 1 - i_s teacher targets for the remaining student targets, so with order
    preservation every later search range is non-empty; the last student target's range ends at t_l - 1.
    """
    end = t_l - t_s + i_s
    if not 0 <= i_s < t_s <= t_l:
        raise ValueError(f"search_range needs 0 <= i_s < t_s <= t_l, got i_s={i_s}, t_s={t_s}, t_l={t_l}")
    if not 0 <= start <= end:
        raise ValueError(f"search_range start={start} outside [0, {end}] for i_s={i_s}, t_s={t_s}, t_l={t_l}")
    return list(range(start, end + 1))


TEMPERATURE_RULES = ("paper", "scale-invariant")


def adaptive_temperature(kls: Tensor, scale: float = 2.0, eps: float = 1e-6, rule: str = "paper") -> float:
    """The matching temperature from the candidates' KLs, kls [C].

    paper (scale 2, eps 1e-6):  T = scale / (max - min + eps), used as softmax(-kls / T) =
      softmax(-kls * (max - min + eps) / scale): a wide KL spread samples sharply around the best
      candidate, near-equal KLs almost uniformly. The logit gap best-to-worst is spread^2 / scale, so
      it depends on the KLs' units: spreads of 0.1-0.5 nats give near-uniform sampling.
    scale-invariant:  T = (max - min + eps) / scale: the logit gap best-to-worst is always `scale`
      (the best candidate e^scale times as likely as the worst), whatever the KLs' magnitude.
    """
    if kls.ndim != 1 or kls.numel() == 0:
        raise ValueError(f"adaptive_temperature needs a non-empty 1-D tensor of KLs, got shape {tuple(kls.shape)}")
    if rule not in TEMPERATURE_RULES:
        raise ValueError(f"temperature rule {rule!r} is not allowed; allowed: {', '.join(TEMPERATURE_RULES)}")
    spread = float(kls.max() - kls.min())
    return scale / (spread + eps) if rule == "paper" else (spread + eps) / scale


def entropy(probs: Tensor) -> float:
    """Shannon entropy (nats) of a probability vector."""
    p = probs[probs > 0]
    return float(-(p * p.log()).sum())


def _candidate_kls(candidate_kl: CandidateKL, i_s: int, cand: list[int]) -> Tensor:
    # CPU float64: the caller's device/dtype must not change the sampled index (multinomial with a CPU
    # generator, identical on every rank given identical KLs).
    kld = candidate_kl(i_s, cand).detach().to("cpu", torch.float64).reshape(-1)
    if kld.numel() != len(cand):
        raise ValueError(f"candidate_kl returned {kld.numel()} KLs for {len(cand)} candidates (i_s={i_s})")
    if not torch.isfinite(kld).all():
        raise ValueError(f"candidate_kl returned non-finite KLs for i_s={i_s}: {kld.tolist()}")
    return kld


def _check_sizes(t_s: int, t_l: int, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"matching strategy {strategy!r} is not allowed; allowed: {', '.join(STRATEGIES)}")
    if t_s < 1 or t_l < 1:
        raise ValueError(f"need at least one target layer per model, got t_s={t_s}, t_l={t_l}")
    if t_s > t_l:
        raise ValueError(
            f"t_s={t_s} student targets > t_l={t_l} teacher targets: each student target needs its own "
            "teacher target; choose fewer student or more teacher target layers"
        )


def match_layers(
    candidate_kl: CandidateKL,
    t_s: int,
    t_l: int,
    strategy: str = "adaptive",
    generator: torch.Generator | None = None,
    order: bool = True,
    ranged: bool = True,
    temperature: float | None = None,
    scale: float = 2.0,
    eps: float = 1e-6,
    rule: str = "paper",
) -> MatchResult:
    """Match each student target i_s in [0, t_s) to a teacher target i_l in [0, t_l).

    candidate_kl(i_s, cands) -> Tensor [len(cands)]: KL(teacher_verbalized[c] || student_verbalized[i_s])
    for each candidate c, computed by the caller without grad (called only by `adaptive` and `bottom1`).

    adaptive (defaults = the paper): candidates from `search_range`; T = adaptive_temperature(kld) or the
      fixed `temperature`; i_l ~ softmax(-kld / T) drawn with `generator`; with `order` the next search
      starts after the match, so teacher indices strictly increase.
      ranged=False, order=False: candidates are all teacher targets (the "sampling" ablation row).
      ranged=False, order=True: [start, t_l) is capped to [start, t_l - t_s + i_s] so the remaining student
      targets can still be matched in strictly increasing order — the same set as ranged=True.
      ranged=True, order=False: [0 .. t_l - t_s + i_s] for every i_s.
      `rule` picks the adaptive temperature's form (see `adaptive_temperature`).
    uniform: i_l = i_s * (t_l // t_s).   bottom1: argmin KL over all teacher targets (ties: lowest index).
    random: i_l uniform over [0, t_l), independently per i_s, drawn with `generator`.
    """
    _check_sizes(t_s, t_l, strategy)
    if temperature is not None and not temperature > 0:
        raise ValueError(f"fixed matching temperature must be > 0 (or None for adaptive), got {temperature}")
    nan = math.nan
    result = MatchResult(pairs=[], temperatures=[], candidates=[], candidate_kls=[], entropies=[])

    if strategy == "uniform":
        step = t_l // t_s
        for i_s in range(t_s):
            result.pairs.append((i_s, i_s * step))
            result.temperatures.append(nan)
            result.candidates.append([i_s * step])
            result.candidate_kls.append([])
            result.entropies.append(0.0)
        return result

    if strategy == "random":
        draws = torch.randint(t_l, (t_s,), generator=generator).tolist()
        for i_s, i_l in enumerate(draws):
            result.pairs.append((i_s, i_l))
            result.temperatures.append(nan)
            result.candidates.append(list(range(t_l)))
            result.candidate_kls.append([])
            result.entropies.append(math.log(t_l))
        return result

    if strategy == "bottom1":
        everything = list(range(t_l))
        for i_s in range(t_s):
            kld = _candidate_kls(candidate_kl, i_s, everything)
            result.pairs.append((i_s, int(torch.argmin(kld))))
            result.temperatures.append(nan)
            result.candidates.append(everything)
            result.candidate_kls.append(kld.tolist())
            result.entropies.append(0.0)
        return result

    start = 0
    for i_s in range(t_s):
        if ranged or order:  # order without range is capped to the same set (see docstring)
            cand = search_range(i_s, start, t_s, t_l)
        else:
            cand = list(range(t_l))
        kld = _candidate_kls(candidate_kl, i_s, cand)
        T = adaptive_temperature(kld, scale, eps, rule) if temperature is None else float(temperature)
        probs = torch.softmax(-kld / T, dim=0)
        m = int(torch.multinomial(probs, 1, generator=generator))
        result.pairs.append((i_s, cand[m]))
        result.temperatures.append(T)
        result.candidates.append(cand)
        result.candidate_kls.append(kld.tolist())
        result.entropies.append(entropy(probs))
        if order:
            start = cand[m] + 1
    log.debug("matched layers %s (temperatures %s)", result.pairs, result.temperatures)
    return result
