"""Tests for vlsi_edge.data: ShapesVQA (determinism, splits, hold-out, answers, pixels), scoring, loaders.

Answers are checked against a small independent re-implementation (`_solve`) that parses each
question and recomputes its answer from the scene objects.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vlsi_edge.data import (
    COLORS,
    HELDOUT_PAIRS,
    QUESTION_FAMILIES,
    SHAPES,
    SIZES,
    Scene,
    ShapesConfig,
    ShapesVQA,
    VQASample,
    answer_vocabulary,
    corpus,
)
from vlsi_edge.data.scenes import BACKGROUND

REPO = Path(__file__).resolve().parents[1]


def _digest(sample: VQASample) -> str:
    payload = sample.image.tobytes() + f"|{sample.question}|{sample.answer}|{sample.family}".encode()
    return hashlib.sha256(payload).hexdigest()


# --------------------------------------------------------------------------------------------------
# An independent solver: parse the question, recompute the answer and the objects it is about.
# --------------------------------------------------------------------------------------------------

_REL = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}


def _only(objects: list) -> object:
    assert len(objects) == 1, f"description is ambiguous or empty: {objects}"
    return objects[0]


def _solve(question: str, scene: Scene) -> tuple[str, list]:
    """(answer, objects the question is about) computed from the scene alone."""
    objs = list(scene.objects)

    def named(color: str, shape: str) -> object:
        return _only([o for o in objs if o.color == color and o.shape == shape])

    if question in ("Describe the image.", "List the objects."):
        ordered = sorted(objs, key=lambda o: o.row * 3 + o.col)
        return ", ".join(f"{o.size} {o.color} {o.shape}" for o in ordered), objs
    if question == "How many objects are there?":
        return str(len(objs)), objs
    if m := re.fullmatch(r"What color is the (?:(small|large) )?(\w+)\?", question):
        size, shape = m.groups()
        target = _only([o for o in objs if o.shape == shape and size in (None, o.size)])
        return target.color, [target]
    if m := re.fullmatch(r"How many (\w+) objects are there\?", question):
        hits = [o for o in objs if o.color == m[1]]
        return str(len(hits)), hits
    if m := re.fullmatch(r"How many (\w+)s are there\?", question):
        hits = [o for o in objs if o.shape == m[1]]
        return str(len(hits)), hits
    if m := re.fullmatch(r"How many (\w+) (\w+)s are there\?", question):
        hits = [o for o in objs if o.color == m[1] and o.shape == m[2]]
        return str(len(hits)), hits
    if m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", question):
        hits = [o for o in objs if o.color == m[1] and o.shape == m[2]]
        return ("yes" if hits else "no"), hits
    if m := re.fullmatch(r"Is the (\w+) (\w+) (left of|right of|above|below) the (\w+) (\w+)\?", question):
        a, b = named(m[1], m[2]), named(m[4], m[5])
        return ("yes" if _REL[m[3]](a, b) else "no"), [a, b]
    if m := re.fullmatch(r"What color is the (\w+) (left of|right of|above|below) the (\w+) (\w+)\?", question):
        ref = named(m[3], m[4])
        target = _only([o for o in objs if o.shape == m[1] and _REL[m[2]](o, ref)])
        return target.color, [ref, target]
    raise AssertionError(f"unrecognised question: {question!r}")


# --------------------------------------------------------------------------------------------------
# ShapesVQA
# --------------------------------------------------------------------------------------------------


def test_same_seed_same_item_and_other_seed_differs():
    a, b = ShapesVQA("test"), ShapesVQA("test")
    for i in (0, 7, 999):
        assert _digest(a[i]) == _digest(b[i])
        assert a[i].uid == f"test/{i:05d}"
    other = ShapesVQA("test", config=ShapesConfig(seed=1))
    assert sum(_digest(a[i]) != _digest(other[i]) for i in range(20)) == 20
    # The split name is part of the seed too.
    assert ShapesVQA("val").scene(3) != ShapesVQA("test").scene(3)


def test_items_are_identical_in_a_fresh_process():
    """Different PYTHONHASHSEED on purpose: a salted hash() anywhere in seeding would show here."""
    script = (
        "import hashlib\n"
        "from vlsi_edge.data import ShapesVQA\n"
        "for split, i in [('train', 5), ('train', 1234), ('test', 42), ('holdout', 9)]:\n"
        "    s = ShapesVQA(split, size=2000)[i] if split == 'train' else ShapesVQA(split)[i]\n"
        "    p = s.image.tobytes() + f'|{s.question}|{s.answer}|{s.family}'.encode()\n"
        "    print(hashlib.sha256(p).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    expected = [
        _digest(ShapesVQA("train", size=2000)[5]),
        _digest(ShapesVQA("train", size=2000)[1234]),
        _digest(ShapesVQA("test")[42]),
        _digest(ShapesVQA("holdout")[9]),
    ]
    assert result.stdout.split() == expected


def test_split_sizes_and_family_shares():
    assert len(ShapesVQA("test")) == 1000
    assert len(ShapesVQA("val")) == 500
    assert len(ShapesVQA("holdout")) == 500
    assert len(ShapesVQA("train", size=123)) == 123
    assert len(ShapesVQA("val", size=10)) == 10
    test = ShapesVQA("test")
    families = Counter(test.text(i)[0] for i in range(len(test)))
    assert set(families) == set(QUESTION_FAMILIES)
    for family, n in families.items():
        assert 0.14 <= n / len(test) <= 0.26, (family, n)
    # A prefix of a fixed split is the same items.
    assert _digest(ShapesVQA("val", size=10)[9]) == _digest(ShapesVQA("val")[9])
    with pytest.raises(IndexError):
        ShapesVQA("val", size=10)[10]
    assert ShapesVQA("val", size=10)[-1].uid == "val/00009"


def test_bad_split_size_and_config_are_rejected():
    with pytest.raises(ValueError, match=r"'dev'.*train, val, test, holdout"):
        ShapesVQA("dev")
    with pytest.raises(ValueError, match="size: 0"):
        ShapesVQA("train", size=0)
    with pytest.raises(ValueError, match=r"1001.*test_size"):
        ShapesVQA("test", size=1001)
    with pytest.raises(ValueError, match=r"'colour'.*color, count, exist, spatial, caption"):
        ShapesConfig(family_weights={"colour": 1.0})
    with pytest.raises(ValueError, match="noise"):
        ShapesConfig(noise=-0.1)


def test_family_weights_select_families():
    only_count = ShapesVQA("val", size=50, config=ShapesConfig(family_weights={"count": 1.0}))
    assert {only_count.text(i)[0] for i in range(50)} == {"count"}


def test_heldout_pairs_only_in_holdout_and_every_attribute_still_trained():
    heldout = set(HELDOUT_PAIRS)
    assert 4 <= len(heldout) <= 6 and heldout <= {(c, s) for c in COLORS for s in SHAPES}
    train = ShapesVQA("train", size=3000)
    train_pairs = Counter(o.pair for i in range(3000) for o in train.scene(i).objects)
    assert not heldout & set(train_pairs)
    for split in ("val", "test"):
        ds = ShapesVQA(split)
        assert not any(o.pair in heldout for i in range(len(ds)) for o in ds.scene(i).objects)
    holdout = ShapesVQA("holdout")
    assert all(any(o.pair in heldout for o in holdout.scene(i).objects) for i in range(len(holdout)))
    # Every colour and every shape still appears in training, each with several partners.
    assert {c for c, _ in train_pairs} == set(COLORS)
    assert {s for _, s in train_pairs} == set(SHAPES)
    for color in COLORS:
        assert len({s for c, s in train_pairs if c == color}) >= 3
    # Train questions never even name a held-out pair.
    for i in range(3000):
        question = train.text(i)[1]
        assert not any(f"{c} {s}" in question for c, s in heldout), question


def test_train_never_reproduces_a_val_or_test_scene():
    reserved = set()
    for split in ("val", "test"):
        ds = ShapesVQA(split)
        reserved.update(tuple(sorted((o.row, o.col, o.size, o.color, o.shape) for o in ds.scene(i).objects)) for i in range(len(ds)))
    assert len(reserved) > 1000
    train = ShapesVQA("train", size=4000)
    for i in range(4000):
        assert train.scene(i).signature() not in reserved


@pytest.mark.parametrize("split,n", [("test", 1000), ("holdout", 500), ("train", 500)])
def test_answers_match_an_independent_solver(split, n):
    ds = ShapesVQA(split, size=n if split == "train" else None)
    heldout = set(HELDOUT_PAIRS)
    for i in range(n):
        scene = ds.scene(i)
        family, question, answer = ds.text(i)
        assert "<image>" not in question
        expected, about = _solve(question, scene)
        assert answer == expected, (split, i, question, scene)
        assert 1 <= len(scene.objects) <= 6
        assert len({(o.row, o.col) for o in scene.objects}) == len(scene.objects)
        if split == "holdout" and not (family == "exist" and answer == "no"):
            assert any(o.pair in heldout for o in about), (i, question, answer)
        if split == "holdout" and family == "exist" and answer == "no":
            assert any(f"{c} {s}" in question for c, s in heldout), question


def test_answer_balance_on_test():
    ds = ShapesVQA("test")
    answers = {f: Counter() for f in QUESTION_FAMILIES}
    for i in range(len(ds)):
        family, _, answer = ds.text(i)
        answers[family][answer] += 1
    yes = answers["exist"]["yes"] / sum(answers["exist"].values())
    assert 0.4 <= yes <= 0.6
    assert set(answers["color"]) == set(COLORS)
    assert set(answers["count"]) == {str(n) for n in range(7)}
    # No constant answer gets most of a family right.
    for family in ("color", "count", "exist", "spatial"):
        assert max(answers[family].values()) / sum(answers[family].values()) < 0.6, family


def _nearest_color(rgb: np.ndarray) -> str:
    palette = {**COLORS, "background": BACKGROUND}
    return min(palette, key=lambda name: float(np.sum((rgb - np.array(palette[name])) ** 2)))


@pytest.mark.parametrize("noise", [0.0, 0.04])
def test_pixels_show_the_objects(noise):
    config = ShapesConfig(noise=noise)
    ds = ShapesVQA("val", size=60, config=config)
    cell = config.image_size / 3
    for i in range(60):
        scene, pixels = ds.scene(i), np.asarray(ds[i].image, dtype=np.float64)
        assert pixels.shape == (96, 96, 3)
        occupied = {(o.row, o.col): o for o in scene.objects}
        for row in range(3):
            for col in range(3):
                obj = occupied.get((row, col))
                if obj is None:
                    x, y = (col + 0.5) * cell, (row + 0.5) * cell
                else:
                    x, y = (col + 0.5 + obj.dx) * cell, (row + 0.5 + obj.dy) * cell
                patch = pixels[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3).mean(axis=0)
                assert _nearest_color(patch) == (obj.color if obj else "background"), (i, row, col)
                if noise == 0:
                    expected = COLORS[obj.color] if obj else BACKGROUND
                    assert tuple(pixels[int(y), int(x)].astype(int)) == expected


def test_shapes_have_their_expected_area():
    """Clean render: pixels of the object's colour inside its cell match the area of its shape."""
    ds = ShapesVQA("val", size=40, config=ShapesConfig(noise=0.0, image_size=192))
    cell = 192 / 3
    area = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5}
    for i in range(40):
        pixels = np.asarray(ds[i].image)
        for o in ds.scene(i).objects:
            block = pixels[int(o.row * cell) : int((o.row + 1) * cell), int(o.col * cell) : int((o.col + 1) * cell)]
            n = int(np.all(block == COLORS[o.color], axis=-1).sum())
            side = SIZES[o.size] * cell
            assert n == pytest.approx(area[o.shape] * side * side, rel=0.2), (i, o)


def test_noise_is_mild_and_optional():
    clean = np.asarray(ShapesVQA("val", size=5, config=ShapesConfig(noise=0.0))[4].image, dtype=float)
    noisy = np.asarray(ShapesVQA("val", size=5)[4].image, dtype=float)
    diff = noisy - clean
    assert 5 < diff.std() < 20  # ~0.04 * 255 = 10 plus a small background tint
    assert ShapesVQA("val", size=5, config=ShapesConfig(noise=0.0))[4].image.mode == "RGB"


def test_vocabulary_covers_every_question_and_answer():
    vocabulary = set(answer_vocabulary())
    assert {"red", "circles", "left", "?", ",", "0", "6", "yes", "What"} <= vocabulary
    texts = list(corpus(1500))
    assert len(texts) == 1500
    holdout = ShapesVQA("holdout")
    texts += [" ".join(holdout.text(i)[1:]) for i in range(len(holdout))]
    used = {word for text in texts for word in re.findall(r"\w+|[^\w\s]", text)}
    assert used == vocabulary, (used ^ vocabulary)  # covers everything, and lists no stray words
