"""A VLM split into the three programs an on-device runtime runs.

    vision_encoder(pixel_values)              -> image embeddings [1, n_image_tokens, D]
    token_embedding(tokens [1, S] int64)      -> embeddings [1, S, D]
    text_decoder(embeds [1, S, D], cache_position [S] int64[, position_ids [3, 1, S] int64])
                                              -> logits [1, S, V], static KV cache inside

Method names follow ExecuTorch's stock multimodal runner (see docs/EXPORT_RESEARCH.md). Each part is
an eager nn.Module over the original model's weights, so it is both what `torch.export` traces and
the reference every exported program is compared with (`vlsi_edge.runtime.eager` runs them through
the same greedy host loop as the exported programs).

The image is one fixed size per export, so data-dependent vision code becomes constants. Input
layouts of `vision_encoder` (what the family's processor gives for one image):
    idefics3  [1, 3, H, W]                              (processor's [1, 1, 3, H, W] without the image axis)
    llava     [1, 3, H, W]
    qwen2_vl  [rows * cols * merge^2, 3 * T * P * P]    (processor's flattened patches, merge-block order)

Qwen2-VL's decoder uses M-RoPE: it takes `position_ids` [3, 1, S] (time, height, width) that differ
from cache positions for image tokens and everything after them. The host computes them
(`vlsi_edge.runtime.positions`). ExecuTorch's stock `MultimodalRunner` only passes
(embeds, cache_position), so a Qwen2-VL .pte needs our own host loop, not the stock runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import StaticCache
from transformers.configuration_utils import get_head_shapes
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_position_ids



def _check_image_size(config, image_size: int) -> None:
    """Towers with a learned position table work at their configured size only."""
    if image_size != config.image_size:
        raise ValueError(f"image size {image_size}: this vision tower is built for {config.image_size}")


class Idefics3VisionEncoder(nn.Module):
    """SigLIP-style tower + pixel-shuffle connector at one fixed image size.

    The stock embeddings compute patch position ids with `bucketize` from a patch mask (no ExecuTorch
    kernel, data-dependent). For a full, unpadded image of the configured size those ids are simply
    0..num_patches-1, so they are a constant buffer here.
    """

    def __init__(self, model, image_size: int):
        super().__init__()
        _check_image_size(model.config.vision_config, image_size)
        self.vision = model.model.vision_model
        self.connector = model.model.connector
        self.image_size = image_size
        self.register_buffer("position_ids", torch.arange(self.vision.embeddings.num_patches).unsqueeze(0), persistent=False)

    def example_pixel_values(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.image_size, self.image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.vision.embeddings
        patches = embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [1, P, Dv]
        hidden = patches + embeddings.position_embedding(self.position_ids)
        hidden = self.vision.encoder(inputs_embeds=hidden).last_hidden_state
        hidden = self.vision.post_layernorm(hidden)
        return self.connector(hidden)  # [1, P / scale^2, D]


class LlavaVisionEncoder(nn.Module):
    """Vision tower -> configured feature layer(s) -> MLP projector (LlavaModel.get_image_features for one image)."""

    def __init__(self, model, image_size: int):
        super().__init__()
        config = model.config
        _check_image_size(config.vision_config, image_size)
        self.tower = model.model.vision_tower
        self.projector = model.model.multi_modal_projector
        self.image_size = image_size
        layers = config.vision_feature_layer
        self.feature_layers = [layers] if isinstance(layers, int) else list(layers)
        self.drop_cls = config.vision_feature_select_strategy == "default"

    def example_pixel_values(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.image_size, self.image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.tower(pixel_values, output_hidden_states=True).hidden_states
        features = torch.cat([hidden_states[i] for i in self.feature_layers], dim=-1)
        if self.drop_cls:
            features = features[:, 1:]
        return self.projector(features)  # [1, P, D]


class Qwen2VLVisionEncoder(nn.Module):
    """Qwen2-VL's ViT + patch merger for one image of a fixed size.

    The stock tower derives its 2-D rotary angles and the attention segments (`cu_seqlens`) from
    `grid_thw` at run time (`.tolist()`, per-segment splits). One image of a fixed grid has fixed
    angles — buffers here — and a single segment covering every patch, i.e. plain full attention,
    so the program takes only the processor's flattened patches [rows*cols*merge^2, 3*T*P*P]
    (T = temporal_patch_size copies of the frame, P = patch_size).
    """

    def __init__(self, model, image_size: int):
        super().__init__()
        self.visual = model.model.visual
        config = self.visual.config
        block = config.patch_size * config.spatial_merge_size
        if image_size % block:
            raise ValueError(f"image size {image_size} must be a multiple of patch_size * spatial_merge_size = {block}")
        side = image_size // config.patch_size
        self.patch_dim = config.in_channels * config.temporal_patch_size * config.patch_size**2
        position_ids = get_vision_position_ids(torch.tensor([[1, side, side]]), config.spatial_merge_size)
        cos, sin = self.visual.rotary_pos_emb(self.visual.patch_embed.proj.weight, position_ids)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def example_pixel_values(self) -> torch.Tensor:
        return torch.zeros(self.cos.shape[0], self.patch_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # PatchEmbed's Conv3d has kernel = stride = one patch: a matmul over the flattened patch
        # (no ExecuTorch kernel or XNNPACK delegate takes a 5-D convolution).
        hidden = F.linear(pixel_values, self.visual.patch_embed.proj.weight.flatten(1))  # [N, Dv]
        for block in self.visual.blocks:
            hidden = hidden + self._attention(block.attn, block.norm1(hidden))
            hidden = hidden + block.mlp(block.norm2(hidden))
        return self.visual.merger(hidden).unsqueeze(0)  # [1, N / merge^2, D]

    def _attention(self, attn, hidden: torch.Tensor) -> torch.Tensor:
        """VisionAttention over one segment holding all N patches."""
        n = hidden.shape[0]
        q, k, v = attn.qkv(hidden).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)  # [N, H, hd]
        q, k = apply_rotary_pos_emb_vision(q, k, self.cos, self.sin)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [H, N, hd]
        # Plain attention, not SDPA: SDPA's decomposition adds a safe softmax (any / where over the scores)
        # that XNNPACK does not take, leaving it to ExecuTorch's one-thread portable kernels.
        out = ((q @ k.transpose(1, 2)) * attn.scaling).softmax(dim=-1) @ v
        return attn.proj(out.transpose(0, 1).reshape(n, -1))


# family name -> the module that encodes one image of the export's fixed size
VISION_ENCODERS: dict[str, type[nn.Module]] = {
    "idefics3": Idefics3VisionEncoder,
    "llava": LlavaVisionEncoder,
    "qwen2_vl": Qwen2VLVisionEncoder,
}


def vision_encoder(model, family, image_size: int) -> nn.Module:
    if family.name not in VISION_ENCODERS:
        raise NotImplementedError(f"no export vision encoder for family {family.name}; known: {', '.join(VISION_ENCODERS)}")
    return VISION_ENCODERS[family.name](model, image_size).eval()


def mrope_grid(model, family, image_size: int) -> tuple[int, int] | None:
    """(rows, cols) of an image's tokens when the decoder takes M-RoPE position ids, else None."""
    if family.name != "qwen2_vl":
        return None
    vision = model.config.vision_config
    side = image_size // vision.patch_size // vision.spatial_merge_size
    return side, side


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
    max_cache_len: int
    mrope_grid: tuple[int, int] | None  # image tokens (rows, cols) when the decoder takes M-RoPE position ids


def split_model(model, family, image_size: int, max_cache_len: int = 256) -> Parts:
    model.eval()
    return Parts(
        vision_encoder=vision_encoder(model, family, image_size),
        token_embedding=TokenEmbedding(family.embed_tokens(model)).eval(),
        text_decoder=StaticCacheDecoder(model, family, max_cache_len).eval(),
        image_token_id=model.config.image_token_id,
        max_cache_len=max_cache_len,
        mrope_grid=mrope_grid(model, family, image_size),
    )


def decode(parts: Parts, embeds: torch.Tensor, start: int, position_ids: torch.Tensor | None) -> torch.Tensor:
    """Logits [1, S, V] of embeds [1, S, D] written at cache positions start..start+S-1."""
    cache_position = torch.arange(start, start + embeds.shape[1])
    if parts.mrope_grid is None:
        return parts.text_decoder(embeds, cache_position)
    return parts.text_decoder(embeds, cache_position, position_ids)


def prompt_embeds(parts: Parts, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Embeddings [1, S, D] of the prompt with the image embeddings at its image tokens."""
    embeds = parts.token_embedding(input_ids)
    image = parts.vision_encoder(pixel_values)
    is_image = input_ids[0] == parts.image_token_id
    if int(is_image.sum()) != image.shape[1]:
        raise ValueError(f"prompt has {int(is_image.sum())} image tokens but the encoder gives {image.shape[1]}")
    embeds[0, is_image] = image[0].to(embeds.dtype)
    return embeds
