"""The float model's three eager parts behind the host-loop interface.

This is the reference every exported program is compared with, run through the very loop the
programs run through (`vlsi_edge.runtime.loop.greedy`), and the PyTorch baseline row of the reports.
"""

from __future__ import annotations

import numpy as np
import torch

from vlsi_edge.families.parts import Parts, decode
from vlsi_edge.runtime.loop import fixed_pixels, greedy


class EagerRuntime:
    def __init__(self, parts: Parts):
        self.parts = parts
        self.image_token_id = parts.image_token_id
        self.vision_shape = tuple(parts.vision_encoder.example_pixel_values().shape)

    @torch.no_grad()
    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.parts.vision_encoder(torch.from_numpy(fixed_pixels(pixel_values, self.vision_shape))).numpy()

    @torch.no_grad()
    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.parts.token_embedding(torch.as_tensor(ids, dtype=torch.long)).numpy()

    def prefill(self, embeds: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
        return self.step(embeds, 0, positions)

    @torch.no_grad()
    def step(self, embeds: np.ndarray, cache_position: int, positions: np.ndarray | None) -> np.ndarray:
        position_ids = None if positions is None else torch.from_numpy(positions)
        return decode(self.parts, torch.from_numpy(embeds), cache_position, position_ids)[0, -1].numpy()


def generate(parts: Parts, input_ids: torch.Tensor, pixel_values: torch.Tensor, eos_id: int,
             max_new_tokens: int = 40) -> tuple[list[int], torch.Tensor]:
    """Greedy answer token ids and the first answer token's logits, through the eager parts."""
    out = greedy(EagerRuntime(parts), input_ids.numpy(), pixel_values.numpy(), eos_id, max_new_tokens,
                 parts.max_cache_len, parts.mrope_grid)
    return out.tokens, torch.from_numpy(out.first_logits)
