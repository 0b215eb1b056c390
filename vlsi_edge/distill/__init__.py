"""VLsI distillation: verbalizers, distillation losses, adaptive layer matching."""

from vlsi_edge.distill.losses import (
    IGNORE_INDEX,
    answer_mask,
    kl_divergence,
    per_sample_mean,
)
from vlsi_edge.distill.matching import STRATEGIES, MatchResult, adaptive_temperature, match_layers, search_range
from vlsi_edge.distill.verbalizer import (
    VerbFFN,
    Verbalizers,
    check_target_layers,
    load_verbalizers,
    save_verbalizers,
    target_layers,
    verbalize,
)

__all__ = [
    "IGNORE_INDEX",
    "STRATEGIES",
    "MatchResult",
    "VerbFFN",
    "Verbalizers",
    "adaptive_temperature",
    "answer_mask",
    "check_target_layers",
    "kl_divergence",
    "load_verbalizers",
    "match_layers",
    "per_sample_mean",
    "save_verbalizers",
    "search_range",
    "target_layers",
    "verbalize",
]
