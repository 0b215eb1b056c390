"""Answer scoring: normalisation, exact match, per-family accuracy, and the chance levels to beat.

Generated answers differ from the gold ones in harmless ways ("Two." vs "2", "the red" vs "red");
normalisation removes exactly those differences and nothing else. Caption answers are lists, and the
order is part of the answer (reading order), so each comma-separated part is normalised in place.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Protocol, Sequence

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_EDGE_PUNCTUATION = ".!?,;:'\"` "


class Scorable(Protocol):
    answer: str
    family: str


def _normalize_part(part: str) -> str:
    words = part.strip(_EDGE_PUNCTUATION).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(text: str) -> str:
    """Lowercase, trim, drop edge punctuation and articles, number words -> digits, collapse spaces.

    Comma-separated lists keep their order: "Small red circle, a large blue square." ->
    "small red circle, large blue square". Empty parts (a trailing comma) are dropped.
    """
    text = text.lower().strip().strip(_EDGE_PUNCTUATION)
    parts = (_normalize_part(p) for p in text.split(","))
    return ", ".join(p for p in parts if p)


def exact_match(pred: str, gold: str) -> bool:
    """True when the two answers are equal after `normalize_answer`."""
    return normalize_answer(pred) == normalize_answer(gold)


def score(preds: Sequence[str], samples: Sequence[Scorable]) -> dict:
    """Exact-match accuracy over all samples and per question family.

    Returns {"accuracy", "correct", "total", "per_family": {family: {"accuracy", "correct", "total"}}},
    families in sorted order.
    """
    if len(preds) != len(samples):
        raise ValueError(f"score: {len(preds)} predictions for {len(samples)} samples")
    if not samples:
        raise ValueError("score: no samples to score")
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for pred, sample in zip(preds, samples):
        total[sample.family] += 1
        correct[sample.family] += exact_match(pred, sample.answer)
    n_correct = sum(correct.values())
    return {
        "accuracy": n_correct / len(samples),
        "correct": n_correct,
        "total": len(samples),
        "per_family": {
            family: {"accuracy": correct[family] / total[family], "correct": correct[family], "total": total[family]}
            for family in sorted(total)
        },
    }


def chance_levels(samples: Sequence[Scorable]) -> dict[str, float]:
    """Majority baseline: per family, the accuracy of always giving its most common (normalised) answer.

    This is the floor a model must clear to show it looks at the image. It is measured on `samples`,
    so it reflects that split's answer balance. For reference, uniform guessing on ShapesVQA gives:
    color 1/6 (six colours); count 1/7 (answers "0".."6"); exist 1/2; spatial 1/2 for the yes/no
    questions and 1/6 for the colour questions (about 1/3 over the default mix); caption ~0 (the
    answer is a whole ordered list of objects).
    """
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        answers[sample.family][normalize_answer(sample.answer)] += 1
    return {family: max(c.values()) / sum(c.values()) for family, c in sorted(answers.items())}
