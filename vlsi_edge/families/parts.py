"""A VLM split into the three programs an on-device runtime runs.

    vision_encoder(pixel_values)              -> image embeddings [1, n_image_tokens, D]
    token_embedding(tokens [1, S] int64)      -> embeddings [1, S, D]
    text_decoder(embeds [1, S, D], cache_position [S] int64[, position_ids [3, 1, S] int64])
                                              -> logits [1, S, V], static KV cache inside

Method names follow ExecuTorch's stock multimodal runner (see docs/EXPORT_RESEARCH.md). Each part is
an eager nn.Module over the original model's weights, so it is both what `torch.export` traces and
the reference every exported program is compared with (`vlsi_edge.runtime.eager` runs them through
the same greedy host loop as the exported programs).

The image is one fixed size per export; each family builds its fixed-size vision encoder
(`Family.vision_encoder`) and says whether its decoder takes M-RoPE position ids (`Family.mrope_grid`,
Qwen2-VL: the host computes them in `vlsi_edge.runtime.positions`). ExecuTorch's stock
`MultimodalRunner` only passes (embeds, cache_position), so a Qwen2-VL .pte needs our own host loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import StaticCache
from transformers.configuration_utils import get_head_shapes


class TokenEmbedding(nn.Module):
    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # No padding_idx (it only matters for gradients): ExecuTorch's quantized-embedding fusion
        # matches the two-argument embedding and would leave a dequantize op with no kernel otherwise.
        return F.embedding(tokens, self.embed_tokens.weight)


class StaticCacheDecoder(nn.Module):
    """Language model + lm_head over a static KV cache held as buffers (what transformers'
    `TorchExportableModuleWithStaticCache` does, for any family's decoder stack).

    The cache's write position is set from `cache_position[0]` on every call, so one exported
    program serves any number of independent generations. `position_ids` is for M-RoPE decoders;
    without it the decoder numbers positions from the cache.
    """

    def __init__(self, model, family, max_cache_len: int):
        super().__init__()
        config = model.config.get_text_config()
        self.language_model = family.language_model(model)
        self.lm_head = family.lm_head(model)
        self.cache = StaticCache(max_cache_len=max_cache_len, config=config)
        heads, head_dim = get_head_shapes(config)
        self.cache.early_initialization(1, heads, head_dim, model.dtype, model.device)
        for i, layer in enumerate(self.cache.layers):  # buffers: torch.export sees them as mutable state
            self.register_buffer(f"key_cache_{i}", layer.keys, persistent=False)
            self.register_buffer(f"value_cache_{i}", layer.values, persistent=False)
            self.register_buffer(f"cumulative_length_{i}", layer.cumulative_length, persistent=False)

    def forward(
        self, inputs_embeds: torch.Tensor, cache_position: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self.cache.layers:
            layer.cumulative_length.copy_(cache_position[0])
        hidden = self.language_model(
            inputs_embeds=inputs_embeds, position_ids=position_ids, cache=self.cache, use_cache=True
        ).last_hidden_state
        return self.lm_head(hidden)


@dataclass
class Parts:
    vision_encoder: nn.Module
    token_embedding: nn.Module
    text_decoder: nn.Module
    image_token_id: int
    bos_token_id: int | None
    max_cache_len: int
    mrope_grid: tuple[int, int] | None  # image tokens (rows, cols) when the decoder takes M-RoPE position ids


def split_model(model, family, image_size: int, max_cache_len: int = 256) -> Parts:
    model.eval()
    return Parts(
        vision_encoder=family.vision_encoder(model, image_size).eval(),
        token_embedding=TokenEmbedding(family.embed_tokens(model)).eval(),
        text_decoder=StaticCacheDecoder(model, family, max_cache_len).eval(),
        image_token_id=model.config.image_token_id,
        bos_token_id=model.config.get_text_config().bos_token_id,
        max_cache_len=max_cache_len,
        mrope_grid=family.mrope_grid(model, image_size),
    )


def decode(parts: Parts, embeds: torch.Tensor, start: int, position_ids: torch.Tensor | None) -> torch.Tensor:
    """Logits [1, S, V] of embeds [1, S, D] written at cache positions start..start+S-1."""
    cache_position = torch.arange(start, start + embeds.shape[1])
    if parts.mrope_grid is None:
        return parts.text_decoder(embeds, cache_position)
    return parts.text_decoder(embeds, cache_position, position_ids)
