"""Idefics3: the architecture of SmolVLM 256M / 500M / 2.2B — the on-device family and our default.

SigLIP-style vision transformer -> pixel-shuffle connector (scale_factor^2 patches -> one token) ->
Llama decoder. Images are used at one fixed size (no tiling), so the image becomes
`(image_size / patch_size / scale_factor)^2` tokens wrapped as SmolVLM wraps its global image:
`<fake_token_around_image><global-img><image>...<image><fake_token_around_image>`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

from vlsi_edge.families.base import Family, TinySpec, check_image_size, siglip_dims, turn_template

SCALE_FACTOR = 2


class Idefics3Family(Family):
    name = "idefics3"
    model_class = Idefics3ForConditionalGeneration
    image_token = "<image>"
    eos_token = "<end_of_utterance>"
    # resize so the longest edge is the size (aspect kept, the short edge rounded up to even), then to size x size
    resize_rule = "longest_edge_then_square"
    pixel_image_axis = True
    special_tokens = (
        "<fake_token_around_image>",
        "<image>",
        "<global-img>",
        "<end_of_utterance>",
        *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
    )

    def tiny_config(self, tokenizer, spec: TinySpec) -> Idefics3Config:
        ids = tokenizer.convert_tokens_to_ids
        text = dict(model_type="llama", rms_norm_eps=1e-5, **self.text_dims(tokenizer, spec))
        vision = siglip_dims(spec)
        return Idefics3Config(
            text_config=text,
            vision_config=vision,
            scale_factor=SCALE_FACTOR,
            image_token_id=ids(self.image_token),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer, spec: TinySpec) -> Idefics3Processor:
        patches = spec.image_size // spec.patch_size
        image_processor = Idefics3ImageProcessorPil(
            do_image_splitting=False,
            size={"longest_edge": spec.image_size},
            max_image_size={"longest_edge": spec.image_size},
            do_resize=True,
            resample=2,  # bilinear: our renders are flat colours; Lanczos only adds ringing
        )
        return Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_len=(patches // SCALE_FACTOR) ** 2,
        )

    def prompt(self, question, history=()):
        turns = []
        for i, (user, assistant) in enumerate(history):
            image = "<image>" if i == 0 else ""
            turns.append(f"<|im_start|>User:{image}{user}{self.eos_token}\nAssistant: {assistant}{self.eos_token}\n")
        image = "" if history else "<image>"
        turns.append(f"<|im_start|>User:{image}{question}{self.eos_token}\nAssistant:")
        return "".join(turns)

    def chat_template(self):
        return turn_template(
            user="<|im_start|>User:",
            assistant="Assistant: ",
            end=f"{self.eos_token}\n",
            image=self.image_token,
            generation="Assistant:",
        )

    def language_model(self, model):
        return model.model.text_model

    def vision_modules(self, model):
        return [model.model.vision_model]

    def projector_modules(self, model):
        return [model.model.connector]

    def vision_encoder(self, model, image_size: int) -> nn.Module:
        return Idefics3VisionEncoder(model, image_size)


class Idefics3VisionEncoder(nn.Module):
    """SigLIP-style tower + pixel-shuffle connector at one fixed image size.

    The stock embeddings compute patch position ids with `bucketize` from a patch mask (no ExecuTorch
    kernel, data-dependent). For a full, unpadded image of the configured size those ids are simply
    0..num_patches-1, so they are a constant buffer here.
    """

    def __init__(self, model, image_size: int):
        super().__init__()
        check_image_size(model.config.vision_config, image_size)
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
