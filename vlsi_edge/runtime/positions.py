"""Host-side M-RoPE position ids for Qwen2-VL decoders (numpy; used by every host loop over exported parts).

Qwen2-VL rotates each query/key by three position ids (time, height, width). Text tokens advance
all three together; the tokens of one image share the time id and take their row / column in the
image's token grid, all offset by the position where the image starts, and the text after the image
continues from that start + max(rows, cols). So positions are not cache positions: a prompt with
an image ends at a position below its length, and every later token sits at
`cache position + delta` with `delta = max(prompt positions) + 1 - prompt length` (transformers'
`rope_deltas`). Other families use plain cache positions and need none of this.
"""

from __future__ import annotations

import numpy as np


def mrope_prompt_positions(input_ids: np.ndarray, image_token_id: int, image_grid: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(position ids [3, 1, S] int64, delta for later tokens) of one unpadded prompt.

    input_ids [S] or [1, S]; each run of image tokens is one image of `image_grid` = (rows, cols)
    tokens. Mirrors `Qwen2VLModel.get_rope_index` for one sequence of text and images.
    """
    ids = np.asarray(input_ids).reshape(-1)
    rows, cols = image_grid
    is_image = ids == image_token_id
    # Boundaries of the runs of text / image tokens.
    starts = np.flatnonzero(np.diff(is_image.astype(np.int8), prepend=np.int8(-1)))
    ends = np.append(starts[1:], len(ids))
    chunks, current = [], 0
    for start, end in zip(starts, ends):
        if not is_image[start]:
            chunks.append(np.broadcast_to(np.arange(current, current + end - start), (3, end - start)))
            current += end - start
            continue
        if end - start != rows * cols:
            raise ValueError(f"an image run has {end - start} tokens; a {rows}x{cols} image grid needs {rows * cols}")
        row, col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        chunks.append(np.stack([np.zeros(rows * cols, np.int64), row.reshape(-1), col.reshape(-1)]) + current)
        current += max(rows, cols)
    positions = np.concatenate(chunks, axis=1).astype(np.int64)[:, None, :]
    return positions, int(positions.max()) + 1 - len(ids)


def mrope_step_positions(start: int, count: int, delta: int) -> np.ndarray:
    """Position ids [3, 1, count] of `count` text tokens at cache positions start.. after a prompt."""
    return np.broadcast_to(np.arange(start, start + count, dtype=np.int64) + delta, (3, 1, count)).copy()
