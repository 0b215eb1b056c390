"""LLaVA: vision tower -> MLP projector -> decoder; the paper's ablation family (LLaVA-OneVision).

The tiny config uses LLaVA-OneVision's stack — a SigLIP vision tower, a 2-layer GELU projector and
a Qwen2 decoder — at one fixed resolution, so every image is `(image_size / patch_size)^2` tokens.
(LLaVA-OneVision's any-resolution tiling is an image-processor feature that adds tokens per tile;
the distillation and export code see the same three module groups either way.) Real LLaVA-1.5 /
LLaVA-OneVision checkpoints load through the same class from a local path.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from vlsi_edge.families.base import ChatMLFamily, TinySpec, check_image_size, siglip_dims


class LlavaFamily(ChatMLFamily):
    name = "llava"
    model_class = LlavaForConditionalGeneration
    image_token = "<image>"
    image_placeholder = "<image>\n"
    special_tokens = ("<image>",)

    def image_resize_rule(self, processor) -> str:
        """What this checkpoint's image processor does: CLIP's (LLaVA-1.5) resizes the shortest edge and crops
        the centre; SigLIP's (LLaVA-OneVision, the tiny config) resizes to size x size, aspect ratio ignored."""
        ip = processor.image_processor
        return "shortest_edge_then_center_crop" if getattr(ip, "do_center_crop", False) else "stretch_to_square"

    def client_preprocessor(self, preprocessor: dict, processor) -> dict:
        """transformers.js has no `LlavaImageProcessor` (it warns and falls back to its base class): name the
        class of the tower the rule comes from, which both libraries have. transformers' LlavaProcessor keeps
        loading its own image processor class whatever this says."""
        tower = {"stretch_to_square": "SiglipImageProcessor", "shortest_edge_then_center_crop": "CLIPImageProcessor"}
        return {**preprocessor, "image_processor_type": tower[self.image_resize_rule(processor)]}

    def tiny_config(self, tokenizer, spec: TinySpec) -> LlavaConfig:
        ids = tokenizer.convert_tokens_to_ids
        text = dict(model_type="qwen2", **self.text_dims(tokenizer, spec))
        vision = dict(model_type="siglip_vision_model", **siglip_dims(spec))
        return LlavaConfig(
            text_config=text,
            vision_config=vision,
            image_token_index=ids(self.image_token),
            image_seq_length=(spec.image_size // spec.patch_size) ** 2,
            vision_feature_select_strategy="full",  # SigLIP has no CLS token to drop
            vision_feature_layer=-1,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer, spec: TinySpec) -> LlavaProcessor:
        image_processor = LlavaImageProcessorPil(
            size={"height": spec.image_size, "width": spec.image_size},
            crop_size={"height": spec.image_size, "width": spec.image_size},
            do_center_crop=False,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
            resample=2,
        )
        return LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=spec.patch_size,
            vision_feature_select_strategy="full",
            image_token=self.image_token,
        )

    def process(self, processor, images, texts):
        return dict(processor(images=images, text=texts, return_tensors="pt"))

    def language_model(self, model):
        return model.model.language_model

    def vision_modules(self, model):
        return [model.model.vision_tower]

    def projector_modules(self, model):
        return [model.model.multi_modal_projector]

    def vision_encoder(self, model, image_size: int) -> nn.Module:
        return LlavaVisionEncoder(model, image_size)


class LlavaVisionEncoder(nn.Module):
    """Vision tower -> configured feature layer(s) -> MLP projector (LlavaModel.get_image_features for one image)."""

    def __init__(self, model, image_size: int):
        super().__init__()
        config = model.config
        check_image_size(config.vision_config, image_size)
        self.tower = model.model.vision_tower
        self.projector = model.model.multi_modal_projector
        self.image_size = image_size
        layers = config.vision_feature_layer
        self.feature_layers = [layers] if isinstance(layers, int) else list(layers)
        self.drop_cls = config.vision_feature_select_strategy == "default"

    def example_pixel_values(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.image_size, self.image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # A SigLIP tower may carry an attention-pooling head (`use_head`) whose output LLaVA never reads; it is
        # switched off while tracing, because its nn.MultiheadAttention uses out_proj's weight functionally,
        # which fails once the image encoder's linears are quantized (8da8w).
        head = getattr(self.tower, "use_head", False)
        if head:
            self.tower.use_head = False
        try:
            hidden_states = self.tower(pixel_values, output_hidden_states=True).hidden_states
        finally:
            if head:
                self.tower.use_head = True
        features = torch.cat([hidden_states[i] for i in self.feature_layers], dim=-1)
        if self.drop_cls:
            features = features[:, 1:]
        return self.projector(features)  # [1, P, D]
