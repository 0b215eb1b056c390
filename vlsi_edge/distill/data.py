"""Training data streams: which examples a given optimizer step sees, as a pure function of the step.

Because a batch is computed from (stream, step, rank) alone, a resumed run sees exactly the batches
the uninterrupted run would have, and every method trains its student on the same examples in the
same order. Three streams, drawn from two pools of ShapesVQA train items (the distillation world of
docs/TRAINING.md: labels are scarce, images are not):

    labelled     SFT-only and step 3: the first `data.labelled` (N_L) train items, ground-truth answers
    unlabelled   step 2 and the KD baselines: `data.unlabelled` (N_U) other train items, whose answers
                 the trainer replaces with the teacher's (`PseudoLabels`), never ground truth
    verbalizer   step 1: the unlabelled pool in its own order

A pool of size 0 is an unlimited stream of fresh items. A finite pool is served in epochs, each in a
fresh order seeded by (data seed, run seed, stream, epoch). With a dataset file, every stream reads the
file (its own answers, or the teacher's with `data.distill_answers=teacher`).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from pathlib import Path

from vlsi_edge.data import DatasetError, ShapesVQA, VQASample, load_conversations
from vlsi_edge.data.shapes import shapes_config
from vlsi_edge.config import ConfigError
from vlsi_edge.recipes import UNLIMITED_SEEDS, DataConfig

STREAMS = ("labelled", "unlabelled", "verbalizer")
_POOL = {"labelled": "labelled", "unlabelled": "unlabelled", "verbalizer": "unlabelled"}
_POOL_START = {"labelled": 0, "unlabelled": 2**30}  # ShapesVQA train indices: the two pools never overlap
_UNLIMITED_START = {"labelled": 0, "unlabelled": 2**30, "verbalizer": 2**30 + 2**29}


def teacher_answered(stream: str) -> bool:
    """Streams whose answers come from the teacher (when `data.distill_answers` is 'teacher')."""
    return _POOL[stream] == "unlabelled"


class TrainData:
    """Examples of the training set, served by (stream, step, micro-batch, rank)."""

    # Items per (unlimited stream, run seed): the run's seed picks its own slice of the stream, so runs
    # with different seeds see different examples in a different order, and the splits stay fixed.
    SLICE = 2**29 // UNLIMITED_SEEDS  # 2^24: the verbalizer stream's 2^29 indices shared by the seeds

    def __init__(self, data: DataConfig, batch_size: int, grad_accum: int = 1, rank: int = 0, world: int = 1,
                 order_seed: int = 0):
        self.batch_size, self.grad_accum, self.rank, self.world = batch_size, grad_accum, rank, world
        self.seed, self.order_seed = data.seed, order_seed
        if data.dataset == "shapes":
            self.dataset: Sequence[VQASample] = ShapesVQA("train", size=2**31 - 1, config=shapes_config(data))
            self.pool_size = {"labelled": data.labelled, "unlabelled": data.unlabelled}
            if 0 in self.pool_size.values() and not 0 <= order_seed < UNLIMITED_SEEDS:
                raise ConfigError(f"seed {order_seed}: use 0..{UNLIMITED_SEEDS - 1} with an unlimited stream")
        else:
            path = Path(data.dataset)
            self.dataset = load_conversations(path, image_root=data.image_root, sandbox=data.image_sandbox)
            if len(self.dataset) == 0:
                raise DatasetError(f"{path}: the dataset is empty")
            self.pool_size = None

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def batch(self, stream: str, step: int, micro: int = 0) -> list[VQASample]:
        """This rank's micro-batch `micro` of optimizer step `step` of `stream` (answers as stored)."""
        if stream not in STREAMS:
            raise ValueError(f"unknown data stream {stream!r}; known: {', '.join(STREAMS)}")
        first = step * self.examples_per_step + (micro * self.world + self.rank) * self.batch_size
        return [self.dataset[self._index(stream, first + i)] for i in range(self.batch_size)]

    def _index(self, stream: str, position: int) -> int:
        if self.pool_size is None:  # a dataset file: every stream reads it, each in its own order
            epoch, offset = divmod(position, len(self.dataset))
            return self._order(len(self.dataset), stream, epoch)[offset]
        pool = _POOL[stream]
        size = self.pool_size[pool]
        if size == 0:
            if position >= self.SLICE:
                raise ValueError(f"training example {position} is beyond the {self.SLICE} a run may draw per stream")
            return _UNLIMITED_START[stream] + self.order_seed * self.SLICE + position
        epoch, offset = divmod(position, size)
        return _POOL_START[pool] + self._order(size, stream, epoch)[offset]

    @functools.lru_cache(maxsize=8)
    def _order(self, size: int, stream: str, epoch: int) -> list[int]:
        """A fresh seeded permutation of range(size) per (data seed, run seed, stream, epoch)."""
        order = list(range(size))
        random.Random(f"{self.seed}/{self.order_seed}/{stream}/{epoch}").shuffle(order)
        return order
