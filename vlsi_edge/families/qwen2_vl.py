"""Qwen2-VL: the paper's family (Qwen2-VL-72B -> 2B / 7B).

Its decoder uses M-RoPE (3-D position ids: time, height, width), computed by the model from
`input_ids`, `image_grid_thw` and `mm_token_type_ids` (required in transformers 5.24). The image
processor resizes to a multiple of patch_size * merge_size; we pin min = max pixels so every image
is the same size and yields `(image_size / patch_size / merge_size)^2` tokens.

Its stock `Qwen2VLProcessor` insists on a video processor, which needs torchvision (not installable
beside CPU torch), so `ImageTextProcessor` below does the processor's image part: expand each
`<|image_pad|>` to the image's token count and mark image tokens in `mm_token_type_ids`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlsi_edge.families.base import ChatMLFamily, TinySpec

MERGE_SIZE = 2


class ImageTextProcessor:
    """Qwen2-VL's image processor + tokenizer, saved and loaded like an HF processor."""

    def __init__(self, image_processor: Qwen2VLImageProcessorPil, tokenizer):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.convert_tokens_to_ids(Qwen2VLFamily.image_token)

    def __call__(self, images, text: list[str], return_tensors="pt") -> dict[str, torch.Tensor]:
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

    def load_processor(self, path):
        return ImageTextProcessor.from_pretrained(path)

    def process(self, processor, images, texts):
        return processor(images=images, text=texts)

    def language_model(self, model):
        return model.model.language_model

    def vision_modules(self, model):
        visual = model.model.visual
        return [m for name, m in visual.named_children() if name != "merger"]

    def projector_modules(self, model):
        return [model.model.visual.merger]
