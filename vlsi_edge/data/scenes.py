"""ShapesVQA scenes: what can be in a picture, how a scene is sampled, and how it is drawn.

A scene is 1-6 objects on a 3x3 grid, at most one per cell. Each object has a shape, a colour and
a size; its centre may be jittered a little inside its cell. Questions are asked about grid cells
(row, column), never about pixels, so jitter and noise change the picture but not the answers.

Sampling and rendering take their random generators from the caller, which is what makes every
item a pure function of (seed, split, index) — see `shapes.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

GRID = 3  # the scene is a GRID x GRID board of cells
MAX_OBJECTS = 6

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
# Saturated colours far apart in RGB and from the light grey background, so that a few-MB vision
# encoder can tell them apart even under the default noise.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 205, 0),
    "purple": (140, 40, 170),
    "orange": (250, 130, 0),
}
# Side of the object's bounding box as a fraction of the cell side.
SIZES: dict[str, float] = {"small": 0.35, "large": 0.75}
BACKGROUND: tuple[int, int, int] = (225, 225, 225)

# Compositional hold-out: these (colour, shape) pairs never appear in a train/val/test scene. Every
# colour misses at most one shape and every shape misses at most two colours, so each colour and each
# shape is still seen in training — only the combination is new.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "diamond"),
    ("blue", "circle"),
    ("yellow", "square"),
    ("purple", "triangle"),
)
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)

# How far (fraction of a cell) a centre may move: 80% of the room between the object and the cell
# border, so a jittered object never leaves its cell and never touches a neighbour.
_MAX_JITTER: dict[str, float] = {size: 0.8 * (1.0 - frac) / 2 for size, frac in SIZES.items()}

Signature = tuple[tuple[int, int, str, str, str], ...]


@dataclass(frozen=True)
class SceneObject:
    """One object; `dx`, `dy` are the centre's jitter in fractions of a cell (not part of its identity)."""

    row: int
    col: int
    size: str
    color: str
    shape: str
    dx: float = 0.0
    dy: float = 0.0

    @property
    def pair(self) -> tuple[str, str]:
        return (self.color, self.shape)

    @property
    def key(self) -> tuple[int, int, str, str, str]:
        return (self.row, self.col, self.size, self.color, self.shape)

    def describe(self) -> str:
        """The caption phrase, e.g. "small red circle"."""
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Objects in reading order (top row first, left to right)."""

    objects: tuple[SceneObject, ...]

    def signature(self) -> Signature:
        """Canonical identity of the scene: the sorted (row, col, size, color, shape) tuples."""
        return tuple(sorted(o.key for o in self.objects))

    def find(self, *, color: str | None = None, shape: str | None = None, size: str | None = None) -> list[SceneObject]:
        """Objects matching every given attribute, in reading order."""
        return [
            o
            for o in self.objects
            if (color is None or o.color == color)
            and (shape is None or o.shape == shape)
            and (size is None or o.size == size)
        ]

    def pairs(self) -> list[tuple[str, str]]:
        """Distinct (colour, shape) pairs present, sorted (never iterate a set: its order is salted)."""
        return sorted({o.pair for o in self.objects})

    def caption(self) -> str:
        return ", ".join(o.describe() for o in self.objects)


def sample_scene(
    rng: random.Random,
    pairs: Sequence[tuple[str, str]],
    required_pairs: Sequence[tuple[str, str]] = (),
) -> Scene:
    """Draw a scene whose objects use `pairs`; with `required_pairs`, the first object uses one of them.

    Jitter is always drawn (and ignored later when switched off) so that the same seed gives the same
    layout whether jitter is on or not.
    """
    n = rng.randint(1, MAX_OBJECTS)
    cells = rng.sample(range(GRID * GRID), n)
    sizes = tuple(SIZES)
    objects = []
    for k, cell in enumerate(cells):
        size = rng.choice(sizes)
        color, shape = rng.choice(required_pairs if (k == 0 and required_pairs) else pairs)
        room = _MAX_JITTER[size]
        dx, dy = rng.uniform(-room, room), rng.uniform(-room, room)
        objects.append(SceneObject(cell // GRID, cell % GRID, size, color, shape, dx, dy))
    objects.sort(key=lambda o: (o.row, o.col))
    return Scene(tuple(objects))


def object_center(obj: SceneObject, image_size: int, jitter: bool = True) -> tuple[float, float]:
    """Pixel (x, y) of the object's centre in an image of `image_size` pixels."""
    cell = image_size / GRID
    dx, dy = (obj.dx, obj.dy) if jitter else (0.0, 0.0)
    return ((obj.col + 0.5 + dx) * cell, (obj.row + 0.5 + dy) * cell)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, image_size: int, jitter: bool) -> None:
    cx, cy = object_center(obj, image_size, jitter)
    half = SIZES[obj.size] * image_size / GRID / 2
    left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((left, top, right, bottom), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((left, top, right, bottom), fill=fill)
    elif obj.shape == "triangle":  # apex up, base at the bottom of the box
        draw.polygon([(cx, top), (right, bottom), (left, bottom)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, top), (right, cy), (cx, bottom), (left, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; known shapes: {', '.join(SHAPES)}")


def render_scene(
    scene: Scene,
    image_size: int,
    noise: float,
    rng: np.random.Generator,
    jitter: bool = True,
) -> Image.Image:
    """Draw `scene` as an RGB image.

    With `noise` > 0 the background gets a random tint of up to +-1.5*noise*255 per channel and every
    pixel gets gaussian noise of std noise*255 — enough that a model cannot key on exact pixel values,
    mild enough that colours stay far apart. `noise=0` gives exact flat colours.
    """
    background = BACKGROUND
    if noise > 0:
        tint = rng.uniform(-1.5, 1.5, size=3) * noise * 255
        background = tuple(int(np.clip(round(b + t), 0, 255)) for b, t in zip(BACKGROUND, tint))
    image = Image.new("RGB", (image_size, image_size), background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, image_size, jitter)
    if noise > 0:
        pixels = np.asarray(image, dtype=np.float32)
        pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(noise * 255)
        image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")
    return image
