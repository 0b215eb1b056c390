"""A VLM split into the three programs an on-device runtime runs (work in progress for the export issue).

    vision_encoder(pixel_values [1, 3, H, W]) -> image embeddings [1, n_image_tokens, D]
    token_embedding(tokens [1, S] int64)      -> embeddings [1, S, D]
    text_decoder(embeds [1, S, D], cache_position [S] int64) -> logits [1, S, V], static KV cache inside

Method names follow ExecuTorch's stock multimodal runner (see docs/EXPORT_RESEARCH.md). Each part is
an eager nn.Module over the original model's weights, so it is both what `torch.export` traces and
the reference every exported program is compared with. `generate` is the host loop over the parts:
encode the image, embed the prompt, put the image embeddings at the image-token positions, prefill,
then decode greedily one token at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.integrations.executorch import TorchExportableModuleWithStaticCache


class Idefics3VisionEncoder(nn.Module):
    """SigLIP-style tower + pixel-shuffle connector at one fixed image size.

    The stock embeddings compute patch position ids with `bucketize` from a patch mask (no ExecuTorch
    kernel, data-dependent). For a full, unpadded image of the configured size those ids are simply
    0..num_patches-1, so they are a constant buffer here.
    """

    def __init__(self, model):
        super().__init__()
        self.vision = model.model.vision_model
        self.connector = model.model.connector
        self.register_buffer("position_ids", torch.arange(self.vision.embeddings.num_patches).unsqueeze(0), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.vision.embeddings
        patches = embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [1, P, Dv]
        hidden = patches + embeddings.position_embedding(self.position_ids)
        hidden = self.vision.encoder(inputs_embeds=hidden).last_hidden_state
        hidden = self.vision.post_layernorm(hidden)
        return self.connector(hidden)  # [1, P / scale^2, D]


class TokenEmbedding(nn.Module):
    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(tokens)


def text_decoder(model, family, max_cache_len: int) -> nn.Module:
    """The decoder + lm_head with a static KV cache (transformers' ExecuTorch wrapper).

    The wrapper expects a causal LM; we view the VLM's language model and lm_head as one, sharing
    the weights (nothing is copied).
    """
    text_config = model.config.get_text_config()
    causal = LlamaForCausalLM(LlamaConfig(**{**text_config.to_dict(), "model_type": "llama"}))
    causal.model = family.language_model(model)
    causal.lm_head = family.lm_head(model)
    causal.eval()
    causal.generation_config = GenerationConfig(
        use_cache=True, cache_implementation="static", cache_config={"batch_size": 1, "max_cache_len": max_cache_len}
    )
    return TorchExportableModuleWithStaticCache(causal, batch_size=1, max_cache_len=max_cache_len)


@dataclass
class Parts:
    vision_encoder: nn.Module
    token_embedding: nn.Module
    text_decoder: nn.Module
    image_token_id: int
    max_cache_len: int


def split_model(model, family, max_cache_len: int = 256) -> Parts:
    if family.name != "idefics3":
        raise NotImplementedError(f"splitting {family.name} for export is not implemented yet")
    model.eval()
    return Parts(
        vision_encoder=Idefics3VisionEncoder(model).eval(),
        token_embedding=TokenEmbedding(family.embed_tokens(model)).eval(),
        text_decoder=text_decoder(model, family, max_cache_len),
        image_token_id=model.config.image_token_id,
        max_cache_len=max_cache_len,
    )


@torch.no_grad()
def generate(parts: Parts, input_ids: torch.Tensor, pixel_values: torch.Tensor, eos_id: int, max_new_tokens: int = 40):
    """Greedy answer token ids and the prefill's last-position logits, through the three parts.

    input_ids [1, S] with the processor's image tokens; pixel_values [1, 3, H, W].
    """
    embeds = parts.token_embedding(input_ids)
    image = parts.vision_encoder(pixel_values)
    is_image = input_ids[0] == parts.image_token_id
    if int(is_image.sum()) != image.shape[1]:
        raise ValueError(f"prompt has {int(is_image.sum())} image tokens but the encoder gives {image.shape[1]}")
    embeds[0, is_image] = image[0].to(embeds.dtype)
    length = input_ids.shape[1]
    logits = parts.text_decoder(inputs_embeds=embeds, cache_position=torch.arange(length))
    first_logits = logits[0, -1]
    tokens: list[int] = []
    next_id = int(first_logits.argmax())
    while next_id != eos_id and len(tokens) < max_new_tokens and length < parts.max_cache_len:
        tokens.append(next_id)
        step = parts.token_embedding(torch.tensor([[next_id]]))
        logits = parts.text_decoder(inputs_embeds=step, cache_position=torch.tensor([length]))
        length += 1
        next_id = int(logits[0, -1].argmax())
    return tokens, first_logits
