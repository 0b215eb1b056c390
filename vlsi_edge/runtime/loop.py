"""The greedy host loop every exported VLM runs through, whatever the runtime.

    encode the image -> embed the prompt -> put the image embeddings at the image-token positions
    -> prefill -> decode one token at a time until the end-of-turn token or the length cap

A runtime supplies four calls (`encode_image`, `embed`, `prefill`, `step`); the loop times them, so
image-encode time, time to first token and decode speed mean the same thing for every runtime.
Qwen2-VL decoders also take M-RoPE position ids; `Positions` computes them on the host (the other
families use cache positions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vlsi_edge.runtime.positions import mrope_prompt_positions, mrope_step_positions


@dataclass
class Generation:
    tokens: list[int]            # answer token ids, without the end-of-turn token
    first_logits: np.ndarray     # [V] logits of the first answer token (after prefill)
    encode_s: float              # image encoder
    first_token_s: float         # image in -> first token: encode + embed + prefill
    decode_s: float              # all decode steps after the first token
    decode_steps: int            # decoder calls after prefill (each yields one token)


class HostRuntime(Protocol):
    image_token_id: int

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray: ...  # [1, n, D]
    def embed(self, ids: np.ndarray) -> np.ndarray: ...  # [1, S] int64 -> [1, S, D]
    def prefill(self, embeds: np.ndarray, positions: np.ndarray | None) -> np.ndarray: ...  # -> [V] last logits
    def step(self, embeds: np.ndarray, cache_position: int, positions: np.ndarray | None) -> np.ndarray: ...


@dataclass
class Positions:
    """M-RoPE position ids for Qwen2-VL (image_grid = image-token rows, cols); None elsewhere."""

    image_token_id: int
    image_grid: tuple[int, int] | None = None
    delta: int = 0

    def prompt(self, input_ids: np.ndarray) -> np.ndarray | None:
        if self.image_grid is None:
            return None
        positions, self.delta = mrope_prompt_positions(input_ids, self.image_token_id, self.image_grid)
        return positions

    def step(self, cache_position: int) -> np.ndarray | None:
        return None if self.image_grid is None else mrope_step_positions(cache_position, 1, self.delta)


def fixed_pixels(pixel_values: np.ndarray, shape) -> np.ndarray:
    """pixel_values as the vision program's one fixed input shape, or a ValueError saying what it takes."""
    pixels = np.asarray(pixel_values, np.float32)
    if pixels.size != int(np.prod(shape)):
        raise ValueError(f"pixel_values {list(pixels.shape)}: this vision_encoder takes {list(shape)}, one image at "
                         "the export's size; make pixels with the export's own processor")
    return pixels.reshape(shape)


def insert_image(embeds: np.ndarray, input_ids: np.ndarray, image: np.ndarray, image_token_id: int) -> np.ndarray:
    """embeds [1, S, D] of input_ids [1, S] with the image embeddings [1, n, D] at the n image tokens (in place)."""
    is_image = np.asarray(input_ids)[0] == image_token_id
    if int(is_image.sum()) != image.shape[1]:
        raise ValueError(f"prompt has {int(is_image.sum())} image tokens but the encoder gives {image.shape[1]}")
    embeds[0, is_image] = image[0]
    return embeds


def greedy(
    runtime: HostRuntime,
    input_ids: np.ndarray,
    pixel_values: np.ndarray,
    eos_id: int | None,
    max_new_tokens: int = 40,
    max_context_len: int | None = None,
    image_grid: tuple[int, int] | None = None,
) -> Generation:
    """Greedy answer for one prompt: input_ids [1, S] (with the image tokens), pixel_values as the encoder takes them.

    eos_id None decodes exactly max_new_tokens (benchmarks: random weights must not stop early).
    """
    input_ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)
    positions = Positions(runtime.image_token_id, image_grid)
    start = time.perf_counter()
    image = runtime.encode_image(pixel_values)
    encoded = time.perf_counter()
    embeds = insert_image(runtime.embed(input_ids).copy(), input_ids, image, runtime.image_token_id)
    first_logits = runtime.prefill(embeds, positions.prompt(input_ids))
    first = time.perf_counter()
    length = input_ids.shape[1]
    limit = max_context_len if max_context_len is not None else length + max_new_tokens + 1
    tokens: list[int] = []
    next_id = int(first_logits.argmax())
    while next_id != eos_id and len(tokens) < max_new_tokens and length < limit:
        tokens.append(next_id)
        if len(tokens) == max_new_tokens:
            break
        logits = runtime.step(runtime.embed(np.array([[next_id]], np.int64)), length, positions.step(length))
        length += 1
        next_id = int(logits.argmax())
    end = time.perf_counter()
    return Generation(tokens, np.asarray(first_logits, np.float32), encoded - start, first - start, end - first,
                      length - input_ids.shape[1])
