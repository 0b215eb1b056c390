"""One process or many (torchrun): the same training loop, with these few collective operations.

Under `torchrun --nproc_per_node N` every rank holds the teacher and the student, takes its own slice
of each batch, and averages gradients after backward (a plain all-reduce: the student's trainable set
changes per step and may be LoRA, which is simpler to sync by hand than to re-wrap in DDP per stage).
Layer matching is made identical on every rank by averaging the candidate KLs across ranks and
sampling with generators that share a seed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class Parallel:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Parallel":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")  # CPU; a GPU cluster would pass nccl here
        return cls(rank=int(os.environ.get("RANK", "0")), world=world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks (identity in one process)."""
        if self.world == 1:
            return tensor
        tensor = tensor.detach().clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor / self.world

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast_object(self, obj):
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_agreement(self, value: torch.Tensor, what: str) -> None:
        """Raise unless every rank holds the same `value` (e.g. a checksum of the student weights)."""
        if self.world == 1:
            return
        values = [torch.zeros_like(value) for _ in range(self.world)]
        dist.all_gather(values, value)
        if any(not torch.equal(v, values[0]) for v in values):
            raise RuntimeError(f"ranks disagree on {what}: {[v.tolist() for v in values]}")
        log.info("all %d ranks agree on %s", self.world, what)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
