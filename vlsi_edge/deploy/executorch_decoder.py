"""The text decoder on ExecuTorch's LLM ops: the fast path its own LLM export takes.

`llama.update_cache` writes each layer's new keys and values into a [1, max_len, kv_heads, head_dim] cache
in place, and `llama.custom_sdpa` attends over the cache's filled part only (causal from `start_pos`),
in one optimized kernel. The plain export instead writes the cache with index_put and runs a full-length
masked attention over the whole static cache every step, split into many small XNNPACK islands.

Any Hugging Face decoder whose attention calls `ALL_ATTENTION_FUNCTIONS` (Llama, Qwen2, ... every family
here) runs on these ops: `CustomOpDecoder` hands the model a cache whose `update` calls `update_cache`
and returns the whole cache in ExecuTorch's layout, and switches its attention to `custom_sdpa` (no mask
is built: the op is causal itself). The ops' eager kernels come with ExecuTorch's pip package, so this
module runs in Python too (the parity tests); ExecuTorch's runtime, the Python runner's and the Android
AAR's, links their `.out` kernels.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.configuration_utils import get_head_shapes

ATTENTION = "executorch_custom_sdpa"


def load_custom_ops() -> None:
    """Register `torch.ops.llama.*` (eager kernels and the export meta functions)."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401


def custom_sdpa(module, query, key, value, attention_mask, scaling=None, start_pos=None, **kwargs):
    """Attention over cache positions 0..start_pos+S-1, causal. query: transformers' [1, H, S, D];
    key / value: the whole cache [1, max_len, kv_heads, D] (`CustomOpCache.update`); returns [1, S, H, D]."""
    query = query.transpose(1, 2).contiguous()
    return torch.ops.llama.custom_sdpa(query, key, value, start_pos, None, 0.0, True, scaling), None


AttentionInterface.register(ATTENTION, custom_sdpa)


@contextmanager
def attention_implementation(module: nn.Module, name: str):
    """Run `module`'s Hugging Face attention as `name` ("eager", ATTENTION, ...), restoring it afterwards."""
    configs = {id(m.config): m.config for m in module.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
    saved = {key: c._attn_implementation for key, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = name
    try:
        yield
    finally:
        for key, c in configs.items():
            c._attn_implementation = saved[key]


class CustomOpCache:
    """The decoder's KV cache as transformers' attention sees it: `update` writes at `start_pos`."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], start_pos: int | torch.SymInt):
        self.keys, self.values, self.start_pos = keys, values, start_pos

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        for new, cache in ((key_states, self.keys[layer_idx]), (value_states, self.values[layer_idx])):
            torch.ops.llama.update_cache(new.transpose(1, 2).contiguous(), cache, self.start_pos)
        return self.keys[layer_idx], self.values[layer_idx]


class CustomOpDecoder(nn.Module):
    """`StaticCacheDecoder`'s contract (embeds, cache_position[, position_ids]) -> logits, on ExecuTorch's LLM ops.

    Shares the language model and lm_head with `decoder` (so quantize `decoder`'s parts first or after:
    the same modules); the cache is its own, in ExecuTorch's [1, max_len, kv_heads, head_dim] layout.
    """

    def __init__(self, decoder: nn.Module):
        super().__init__()
        load_custom_ops()
        self.language_model = decoder.language_model
        self.lm_head = decoder.lm_head
        self.max_cache_len = decoder.cache.layers[0].max_cache_len
        config = self.language_model.config
        heads, head_dim = get_head_shapes(config)
        dtype = self.lm_head.weight.dtype
        shape = (1, self.max_cache_len, heads, head_dim)
        for i in range(config.num_hidden_layers):  # buffers: torch.export sees them as mutable state
            self.register_buffer(f"key_cache_{i}", torch.zeros(shape, dtype=dtype), persistent=False)
            self.register_buffer(f"value_cache_{i}", torch.zeros(shape, dtype=dtype), persistent=False)
        self.layers = config.num_hidden_layers

    def forward(
        self, inputs_embeds: torch.Tensor, cache_position: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        start = cache_position[0].item()
        torch._check(start >= 0)
        torch._check(start + inputs_embeds.shape[1] <= self.max_cache_len)
        cache = CustomOpCache([getattr(self, f"key_cache_{i}") for i in range(self.layers)],
                              [getattr(self, f"value_cache_{i}") for i in range(self.layers)], start)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        with attention_implementation(self.language_model, ATTENTION):
            hidden = self.language_model(
                inputs_embeds=inputs_embeds, position_ids=position_ids, cache=cache, use_cache=True, start_pos=start
            ).last_hidden_state
        return self.lm_head(hidden)
