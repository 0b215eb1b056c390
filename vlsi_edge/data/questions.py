"""ShapesVQA questions: one generator per question family, each returning a single unambiguous answer.

A generator looks at a scene and returns (question, answer), or None when the family cannot ask a
well-defined question about this scene (the caller then draws a new scene). `focus`, when given, is
the set of (colour, shape) pairs the question must be about — the hold-out split passes the held-out
pairs so that its questions test the unseen combinations, not just any object in the picture.

Relations are on grid cells: "left of" = strictly smaller column, "above" = strictly smaller row.
"""

from __future__ import annotations

import random
from typing import Callable, Collection, Optional

from vlsi_edge.data.scenes import COLORS, SHAPES, TRAIN_PAIRS, Scene, SceneObject

QUESTION_FAMILIES: tuple[str, ...] = ("color", "count", "exist", "spatial", "caption")

RELATIONS: dict[str, Callable[[SceneObject, SceneObject], bool]] = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}

# Every template, so that `answer_vocabulary` can list the words without generating items.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("What color is the {shape}?", "What color is the {size} {shape}?"),
    "count": (
        "How many objects are there?",
        "How many {color} objects are there?",
        "How many {shape}s are there?",
        "How many {color} {shape}s are there?",
    ),
    "exist": ("Is there {article} {color} {shape}?",),
    "spatial": (
        "What color is the {shape} {relation} the {color} {shape}?",
        "Is the {color} {shape} {relation} the {color} {shape}?",
    ),
    "caption": ("Describe the image.", "List the objects."),
}

QA = Optional[tuple[str, str]]
Focus = Optional[Collection[tuple[str, str]]]


def _in_focus(obj: SceneObject, focus: Focus) -> bool:
    return focus is None or obj.pair in focus


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def ask_color(scene: Scene, rng: random.Random, focus: Focus) -> QA:
    """"What color is the [size] shape?" — only for a description that picks exactly one object."""
    targets = [o for o in scene.objects if _in_focus(o, focus)]
    rng.shuffle(targets)
    for target in targets:
        options = []
        if len(scene.find(shape=target.shape)) == 1:
            options.append(f"What color is the {target.shape}?")
        if len(scene.find(shape=target.shape, size=target.size)) == 1:
            options.append(f"What color is the {target.size} {target.shape}?")
        if options:
            return rng.choice(options), target.color
    return None


def ask_count(scene: Scene, rng: random.Random, focus: Focus) -> QA:
    """Count by colour, by shape, by (colour, shape) or in total; the answer is a digit "0".."6".

    For a by-attribute count, the answer is drawn uniformly from the distinct counts the scene offers
    and then an attribute with that count is named — otherwise "1" would be the answer half the time
    and a blind model would score well. Training questions only name training pairs; under a focus
    the attribute comes from a focus object (so the count involves it).
    """
    kind = rng.choice(("total", "color", "shape", "pair"))
    if kind == "total":
        return "How many objects are there?", str(len(scene.objects))
    attribute: Callable[[SceneObject], object] = {
        "color": lambda o: o.color,
        "shape": lambda o: o.shape,
        "pair": lambda o: o.pair,
    }[kind]
    if focus is None:
        values: list = list({"color": tuple(COLORS), "shape": SHAPES, "pair": TRAIN_PAIRS}[kind])
    else:
        values = sorted({attribute(o) for o in scene.objects if o.pair in focus})
    by_count: dict[int, list] = {}
    for value in values:
        by_count.setdefault(sum(attribute(o) == value for o in scene.objects), []).append(value)
    if not by_count:
        return None
    count = rng.choice(sorted(by_count))
    value = rng.choice(by_count[count])
    if kind == "color":
        question = f"How many {value} objects are there?"
    elif kind == "shape":
        question = f"How many {value}s are there?"
    else:
        question = f"How many {value[0]} {value[1]}s are there?"
    return question, str(count)


def ask_exist(scene: Scene, rng: random.Random, focus: Focus) -> QA:
    """"Is there a colour shape?" with yes/no drawn 50/50 before picking the pair."""
    present = scene.pairs()
    if rng.random() < 0.5:
        pool = [p for p in present if focus is None or p in focus]
        answer = "yes"
    else:
        universe = TRAIN_PAIRS if focus is None else sorted(focus)
        pool = [p for p in universe if p not in present]
        answer = "no"
    if not pool:
        return None
    color, shape = rng.choice(pool)
    article = "an" if color[0] in "aeiou" else "a"
    return f"Is there {article} {color} {shape}?", answer


def ask_spatial(scene: Scene, rng: random.Random, focus: Focus) -> QA:
    """Either "What color is the S <rel> the C S'?" or "Is the C S <rel> the C' S'?".

    Objects are named by colour + shape, so only objects unique under that description take part.
    For the colour query the relation must single out exactly one object of shape S; queries where
    the relation actually matters (two or more objects of shape S) are preferred when there are any.
    """
    named = [o for o in scene.objects if len(scene.find(color=o.color, shape=o.shape)) == 1]
    if rng.random() < 0.5:
        return _spatial_query(scene, named, rng, focus)
    return _spatial_verify(named, rng, focus)


def _spatial_query(scene: Scene, named: list[SceneObject], rng: random.Random, focus: Focus) -> QA:
    decisive, trivial = [], []
    for ref in named:
        for relation, holds in RELATIONS.items():
            for shape in SHAPES:
                fits = [o for o in scene.objects if o.shape == shape and holds(o, ref)]
                if len(fits) != 1 or not (_in_focus(ref, focus) or _in_focus(fits[0], focus)):
                    continue
                option = (f"What color is the {shape} {relation} the {ref.color} {ref.shape}?", fits[0].color)
                (decisive if len(scene.find(shape=shape)) > 1 else trivial).append(option)
    options = decisive or trivial
    return rng.choice(options) if options else None


def _spatial_verify(named: list[SceneObject], rng: random.Random, focus: Focus) -> QA:
    couples = [(a, b) for a in named for b in named if a is not b and (_in_focus(a, focus) or _in_focus(b, focus))]
    if not couples:
        return None
    a, b = rng.choice(couples)
    want = rng.random() < 0.5
    # Two objects sit in different cells, so at least one relation holds and at least two do not.
    relation = rng.choice([r for r, holds in RELATIONS.items() if holds(a, b) == want])
    return f"Is the {a.color} {a.shape} {relation} the {b.color} {b.shape}?", _yes_no(want)


def ask_caption(scene: Scene, rng: random.Random, focus: Focus) -> QA:
    """All objects in reading order, each as "size colour shape", joined with ", "."""
    return rng.choice(TEMPLATES["caption"]), scene.caption()


ASK: dict[str, Callable[[Scene, random.Random, Focus], QA]] = {
    "color": ask_color,
    "count": ask_count,
    "exist": ask_exist,
    "spatial": ask_spatial,
    "caption": ask_caption,
}
