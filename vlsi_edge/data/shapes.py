"""ShapesVQA: the project's built-in visual-question task, as seeded splits of `VQASample`s.

Every item is a pure function of (seed, split, index): its random generators are seeded from a
blake2b hash of those three values (Python's `hash()` is salted per process, so it is not used), so
the same config gives byte-identical images and identical text in any process, in any order.

Splits:
- `train`: any size, generated on the fly; never contains a held-out (colour, shape) pair and never
  reproduces the layout of a val/test scene (a train scene that would is redrawn).
- `val`, `test`: fixed sizes (`ShapesConfig.val_size`, `.test_size`); same distribution as train.
- `holdout`: compositional hold-out — every scene contains at least one of `HELDOUT_PAIRS`, and the
  question is about a held-out object whenever its family allows (captions and total counts always
  involve every object).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import numpy as np
from PIL import Image

from vlsi_edge.data.questions import ASK, QUESTION_FAMILIES, RELATIONS, TEMPLATES
from vlsi_edge.data.sample import VQASample
from vlsi_edge.data.scenes import (
    ALL_PAIRS,
    COLORS,
    HELDOUT_PAIRS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    Scene,
    Signature,
    render_scene,
    sample_scene,
)

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test", "holdout")
_MAX_ATTEMPTS = 200  # scene redraws per item; in practice a handful at most
_WORD = re.compile(r"\w+|[^\w\s]")  # the tokenisation `answer_vocabulary` lists words for


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that decides which items a split contains and how they look."""

    image_size: int = 96  # pixels per side; a grid cell is image_size / 3
    seed: int = 0
    noise: float = 0.04  # gaussian pixel noise std and background tint, as a fraction of 255; 0 = clean
    jitter: bool = True  # move object centres a little inside their cells
    family_weights: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(QUESTION_FAMILIES, 1.0))
    train_size: int = 50_000  # length of ShapesVQA("train") when no size is given
    val_size: int = 500
    test_size: int = 1000
    holdout_size: int = 500

    def __post_init__(self) -> None:
        if self.image_size < 24:
            raise ValueError(f"image_size: {self.image_size} is too small; use >= 24")
        if self.noise < 0:
            raise ValueError(f"noise: {self.noise} must be >= 0 (0 disables noise)")
        for name in ("train_size", "val_size", "test_size", "holdout_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 1")
        weights = dict(self.family_weights)
        unknown = sorted(set(weights) - set(QUESTION_FAMILIES))
        if unknown:
            raise ValueError(f"family_weights: unknown families {unknown}; allowed: {', '.join(QUESTION_FAMILIES)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"family_weights: {weights} must be >= 0 with a positive sum")
        object.__setattr__(self, "family_weights", weights)  # a private copy: the config stays frozen

    def split_size(self, split: str) -> int:
        """Default length of `split` (the fixed size of val/test/holdout)."""
        return getattr(self, f"{_check_split(split)}_size")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def _stable_seed(*parts: object) -> int:
    """A 64-bit seed from `parts` that is the same in every process (unlike `hash()`)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class _Item:
    scene: Scene
    family: str
    question: str
    answer: str


def _make_item(config: ShapesConfig, split: str, index: int, reserved: frozenset[Signature]) -> _Item:
    """Scene + question for one index, without pixels (rendering uses its own generator)."""
    rng = random.Random(_stable_seed(config.seed, split, index))
    families = [f for f in QUESTION_FAMILIES if config.family_weights.get(f, 0) > 0]
    family = rng.choices(families, weights=[config.family_weights[f] for f in families])[0]
    holdout = split == "holdout"
    for _ in range(_MAX_ATTEMPTS):
        if holdout:
            scene = sample_scene(rng, ALL_PAIRS, required_pairs=HELDOUT_PAIRS)
        else:
            scene = sample_scene(rng, TRAIN_PAIRS)
            if reserved and scene.signature() in reserved:
                continue
        qa = ASK[family](scene, rng, HELDOUT_PAIRS if holdout else None)
        if qa is not None:
            return _Item(scene, family, *qa)
    raise RuntimeError(f"ShapesVQA: no well-defined {family!r} question for {split}/{index} after {_MAX_ATTEMPTS} scenes")


# Signatures of every val + test scene, per config that decides them; built once per process.
_RESERVED: dict[tuple, frozenset[Signature]] = {}


def _reserved_signatures(config: ShapesConfig) -> frozenset[Signature]:
    key = (config.seed, tuple(sorted(config.family_weights.items())), config.val_size, config.test_size)
    if key not in _RESERVED:
        start = time.perf_counter()
        _RESERVED[key] = frozenset(
            _make_item(config, split, i, frozenset()).scene.signature()
            for split in ("val", "test")
            for i in range(config.split_size(split))
        )
        logger.debug("ShapesVQA: %d val/test scene signatures in %.2fs", len(_RESERVED[key]), time.perf_counter() - start)
    return _RESERVED[key]


class ShapesVQA:
    """One split of ShapesVQA as a map-style dataset (`len`, `[i]`); usable as a torch Dataset.

    >>> ShapesVQA("test")[0].question  # doctest: +SKIP
    'How many red objects are there?'
    """

    def __init__(self, split: str, size: int | None = None, config: ShapesConfig | None = None):
        self.split = _check_split(split)
        self.config = config if config is not None else ShapesConfig()
        limit = self.config.split_size(split)
        if size is None:
            size = limit
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size: {size!r} must be a positive integer")
        if split != "train" and size > limit:
            raise ValueError(
                f"size: {size} is larger than the fixed {split} split ({limit}); "
                f"raise ShapesConfig.{split}_size instead (allowed: 1..{limit})"
            )
        self.size = size
        # Only train needs the val/test signatures; build them on first access, not here.
        self._reserved: frozenset[Signature] | None = None if split == "train" else frozenset()

    def __len__(self) -> int:
        return self.size

    def _item(self, index: int) -> tuple[int, _Item]:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"ShapesVQA index must be an int, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.split} split of size {self.size}")
        if self._reserved is None:
            self._reserved = _reserved_signatures(self.config)
        return index, _make_item(self.config, self.split, index, self._reserved)

    def scene(self, index: int) -> Scene:
        """The objects of item `index` (what the question is about), without rendering."""
        return self._item(index)[1].scene

    def _render(self, scene: Scene, index: int) -> Image.Image:
        rng = np.random.default_rng(_stable_seed(self.config.seed, self.split, index, "pixels"))
        return render_scene(scene, self.config.image_size, self.config.noise, rng, self.config.jitter)

    def __getitem__(self, index: int) -> VQASample:
        index, item = self._item(index)
        return VQASample(
            image=self._render(item.scene, index),
            question=item.question,
            answer=item.answer,
            family=item.family,
            uid=f"{self.split}/{index:05d}",
        )

    def text(self, index: int) -> tuple[str, str, str]:
        """(family, question, answer) of item `index`, without rendering — cheap, for corpora and stats."""
        item = self._item(index)[1]
        return item.family, item.question, item.answer

    def __repr__(self) -> str:
        return f"ShapesVQA(split={self.split!r}, size={self.size}, seed={self.config.seed})"


def answer_vocabulary() -> list[str]:
    """Every word that can appear in a ShapesVQA question or answer, sorted.

    Words are what `re.findall(r"\\w+|[^\\w\\s]", text)` yields, case kept ("What", "?", ",", "3"),
    so a word-level tokenizer built from this list covers every item.
    """
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for template in templates:
            words.update(_WORD.findall(re.sub(r"\{\w+\}\w*", " ", template)))
    for relation in RELATIONS:
        words.update(_WORD.findall(relation))
    words.update(COLORS)
    words.update(SHAPES)
    words.update(f"{shape}s" for shape in SHAPES)
    words.update(SIZES)
    words.update(("a", "an", "yes", "no", ","))
    words.update(str(n) for n in range(MAX_OBJECTS + 1))
    return sorted(words)


def corpus(n: int, config: ShapesConfig | None = None) -> Iterator[str]:
    """Text of the first `n` train items, one "question answer" string each, for tokenizer training."""
    dataset = ShapesVQA("train", size=max(n, 1), config=config)
    for i in range(n):
        _, question, answer = dataset.text(i)
        yield f"{question} {answer}"


def shapes_config(data) -> ShapesConfig:
    """The ShapesVQA world of a recipe's `data` section (a `recipes.DataConfig`)."""
    return ShapesConfig(image_size=data.image_size, seed=data.seed, noise=data.noise)
