"""Qwen2-VL: the paper's family (Qwen2-VL-72B -> 2B / 7B).

Its decoder uses M-RoPE (3-D position ids: time, height, width), computed by the model from
`input_ids`, `image_grid_thw` and `mm_token_type_ids` (required in transformers 5.24). The image
processor resizes to a multiple of patch_size * merge_size; we pin min = max pixels so every image
is the same size and yields `(image_size / patch_size / merge_size)^2` tokens.

Its stock `Qwen2VLProcessor` insists on a video processor, which needs torchvision (not installable
beside CPU torch), so `ImageTextProcessor` below does the processor's image part: expand each
`<|image_pad|>` to the image's token count and mark image tokens in `mm_token_type_ids`.

min = max pixels alone does not fix the grid: the processor keeps the aspect ratio (a 150x112 image
at 64x64 pixels becomes a 2x4 grid of patches — 2 image tokens — not the program's 4x4, 4 tokens). A pinned processor (min = max = S^2, as
the tiny configs and every export have) therefore first stretches any other image to S x S with its
own filter, so every image becomes the one grid the exported programs take.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.image_utils import PILImageResampling
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_position_ids

from vlsi_edge.config import ConfigError
from vlsi_edge.families.base import ChatMLFamily, TinySpec

MERGE_SIZE = 2


class ImageTextProcessor:
    """Qwen2-VL's image processor + tokenizer, saved and loaded like an HF processor."""

    def __init__(self, image_processor: Qwen2VLImageProcessorPil, tokenizer):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.convert_tokens_to_ids(Qwen2VLFamily.image_token)

    @property
    def fixed_side(self) -> int | None:
        """S when the processor is pinned to S x S images (min = max pixels = S^2), else None."""
        size = self.image_processor.size
        low, high = size["shortest_edge"], size["longest_edge"]
        side = math.isqrt(low)
        return side if low == high and side * side == low else None

    def __call__(self, images, text: list[str], return_tensors="pt") -> dict[str, torch.Tensor]:
        if (side := self.fixed_side) is not None:
            resample = PILImageResampling(self.image_processor.resample)
            images = [im if im.size == (side, side) else im.convert("RGB").resize((side, side), resample)
                      for im in images]
        pixels = self.image_processor(images=images, return_tensors="pt")
        merge = self.image_processor.merge_size**2
        counts = iter((pixels["image_grid_thw"].prod(dim=-1) // merge).tolist())
        # One image per "<|image_pad|>" in reading order, each expanded to its token count.
        expanded = []
        for t in text:
            parts = t.split(Qwen2VLFamily.image_token)
            expanded.append(parts[0] + "".join(Qwen2VLFamily.image_token * next(counts) + p for p in parts[1:]))
        tokens = self.tokenizer(expanded, return_tensors=return_tensors, padding=True)
        tokens["mm_token_type_ids"] = (tokens["input_ids"] == self.image_token_id).long()
        return {**tokens, **pixels}

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ImageTextProcessor":
        return cls(Qwen2VLImageProcessorPil.from_pretrained(path), AutoTokenizer.from_pretrained(path))


class Qwen2VLFamily(ChatMLFamily):
    name = "qwen2_vl"
    model_class = Qwen2VLForConditionalGeneration
    image_token = "<|image_pad|>"
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    special_tokens = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    resize_rule = "stretch_to_square_then_patches"  # the program takes flattened patches; not an app input
    flat_image_features = True  # transformers.js' Qwen2VLForConditionalGeneration merges image_features [n, D]

    def tiny_config(self, tokenizer, spec: TinySpec) -> Qwen2VLConfig:
        ids = tokenizer.convert_tokens_to_ids
        head_dim = spec.text_hidden // spec.text_heads
        # M-RoPE splits the head_dim/2 rotary frequencies into (time, height, width) sections in
        # the released models' proportions (128-dim heads: [16, 24, 24]).
        half = head_dim // 2
        height = (half - half // 4) // 2
        mrope_section = [half // 4, height, half - half // 4 - height]
        text = dict(
            **self.text_dims(tokenizer, spec),
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        )
        vision = dict(
            depth=spec.vision_layers,
            embed_dim=spec.vision_hidden,
            hidden_size=spec.text_hidden,
            num_heads=spec.vision_heads,
            mlp_ratio=spec.vision_intermediate // spec.vision_hidden,
            patch_size=spec.patch_size,
            spatial_merge_size=MERGE_SIZE,
            temporal_patch_size=2,
        )
        return Qwen2VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids(self.image_token),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer, spec: TinySpec) -> ImageTextProcessor:
        pixels = spec.image_size * spec.image_size
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=pixels, max_pixels=pixels, patch_size=spec.patch_size, merge_size=MERGE_SIZE
        )
        return ImageTextProcessor(image_processor, tokenizer)

    def read_processor(self, path):
        return ImageTextProcessor.from_pretrained(path)

    def client_preprocessor(self, preprocessor: dict, processor) -> dict:
        """Our ImageTextProcessor is not a ProcessorMixin: name the processor class transformers.js should build."""
        return {**preprocessor, "processor_class": "Qwen2VLProcessor"}

    def client_config(self, config: dict) -> dict:
        """The decoder's keys at the top level too, as the released Qwen2-VL config.json has them: transformers.js
        reads num_hidden_layers / num_key_value_heads there for Qwen2-VL (transformers 5 nests them in text_config
        and reads either)."""
        text = {k: v for k, v in config["text_config"].items() if k not in config and k != "model_type"}
        return {**config, **text}

    def fixed_processor(self, processor: ImageTextProcessor, image_size: int) -> ImageTextProcessor:
        """The processor pinned to image_size x image_size (min = max pixels; other images stretched to it)."""
        image_processor = processor.image_processor
        block = image_processor.patch_size * image_processor.merge_size
        if image_size % block:
            raise ConfigError(f"image_size: {image_size} is not a multiple of patch_size * merge_size = {block} "
                              f"(Qwen2-VL's smallest image block); use {max(block, image_size // block * block)} or "
                              f"{(image_size // block + 1) * block}")
        pinned = copy.deepcopy(image_processor)
        pinned.size = {"shortest_edge": image_size * image_size, "longest_edge": image_size * image_size}
        for key in ("min_pixels", "max_pixels"):  # older processors keep them beside `size` as well
            if getattr(pinned, key, None) is not None:
                setattr(pinned, key, image_size * image_size)
        return ImageTextProcessor(pinned, processor.tokenizer)

    def process(self, processor, images, texts):
        return processor(images=images, text=texts)

    def language_model(self, model):
        return model.model.language_model

    def vision_modules(self, model):
        visual = model.model.visual
        return [m for name, m in visual.named_children() if name != "merger"]

    def projector_modules(self, model):
        return [model.model.visual.merger]

    def vision_encoder(self, model, image_size: int) -> nn.Module:
        return Qwen2VLVisionEncoder(model, image_size)

    def mrope_grid(self, model, image_size: int) -> tuple[int, int]:
        vision = model.config.vision_config
        side = image_size // vision.patch_size // vision.spatial_merge_size
        return side, side

    def processed_image_size(self, processor, batch: dict) -> int:
        return int(batch["image_grid_thw"][0, 1]) * processor.image_processor.patch_size  # patches: the grid says


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
