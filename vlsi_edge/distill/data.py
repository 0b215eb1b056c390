"""Training data streams: which examples a given optimizer step sees, as a pure function of the step.

Because a batch is computed from (stream, step, rank) alone, a resumed run sees exactly the batches
the uninterrupted run would have, and every method (vlsi, final-kd, sft) trains its student on the
same examples in the same order: the student stream starts at 0 for the first student-training step
of every method. Verbalizers use a separate stream, so adding step 1 does not shift the student data.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from pathlib import Path

from vlsi_edge.data import DatasetError, ShapesConfig, ShapesVQA, VQASample, load_conversations
from vlsi_edge.recipes import DataConfig

STREAMS = {"student": 0, "verbalizer": 1}


def shapes_config(data: DataConfig) -> ShapesConfig:
    return ShapesConfig(image_size=data.image_size, seed=data.seed, noise=data.noise)


class TrainData:
    """Examples of the training set, served by (stream, step, micro-batch, rank)."""

    # ShapesVQA train items per (stream, run seed): the run's seed picks its own slice of the stream, so
    # runs with different seeds see different examples in a different order, and the splits stay fixed.
    SLICE = 2**24

    def __init__(self, data: DataConfig, batch_size: int, grad_accum: int = 1, rank: int = 0, world: int = 1,
                 order_seed: int = 0):
        self.batch_size, self.grad_accum, self.rank, self.world = batch_size, grad_accum, rank, world
        self.seed, self.order_seed = data.seed, order_seed
        if not 0 <= order_seed < 2**30 // self.SLICE:
            raise ValueError(f"seed {order_seed}: use 0..{2**30 // self.SLICE - 1}")
        if data.dataset == "shapes":
            # Train items are generated on demand; each stream gets its own disjoint index range.
            self.dataset: Sequence[VQASample] = ShapesVQA("train", size=2**31 - 1, config=shapes_config(data))
            self.infinite = True
        else:
            path = Path(data.dataset)
            self.dataset = load_conversations(path, image_root=data.image_root)
            if len(self.dataset) == 0:
                raise DatasetError(f"{path}: the dataset is empty")
            self.infinite = False

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def batch(self, stream: str, step: int, micro: int = 0) -> list[VQASample]:
        """This rank's micro-batch `micro` of optimizer step `step` of `stream`."""
        first = step * self.examples_per_step + (micro * self.world + self.rank) * self.batch_size
        return [self._item(stream, first + i) for i in range(self.batch_size)]

    def _item(self, stream: str, position: int) -> VQASample:
        if self.infinite:
            if position >= self.SLICE:
                raise ValueError(f"training example {position} is beyond the {self.SLICE} a run may draw per stream")
            return self.dataset[STREAMS[stream] * 2**30 + self.order_seed * self.SLICE + position]
        # A finite dataset: a fresh seeded permutation per epoch and stream.
        epoch, offset = divmod(position, len(self.dataset))
        return self.dataset[self._order(stream, epoch)[offset]]

    @functools.lru_cache(maxsize=4)
    def _order(self, stream: str, epoch: int) -> list[int]:
        """A fresh seeded permutation per (run seed, stream, epoch)."""
        order = list(range(len(self.dataset)))
        random.Random(f"{self.seed}/{self.order_seed}/{stream}/{epoch}").shuffle(order)
        return order
