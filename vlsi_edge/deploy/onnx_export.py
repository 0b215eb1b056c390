"""ONNX export of a VLM in the layout of the official SmolVLM ONNX exports (fp32; deploy/quantize.py makes int8 / q4).

    onnx/vision_encoder.onnx        pixel_values [1, 1, 3, H, W]             -> image_features [1, n, D]
                                    (LLaVA [1, 3, H, W]; Qwen2-VL flattened patches -> [n, D], as
                                    transformers.js' Qwen2-VL takes them)
    onnx/embed_tokens.onnx          input_ids [1, S] int64                   -> inputs_embeds [1, S, D]
    onnx/decoder_model_merged.onnx  inputs_embeds, attention_mask, position_ids,
                                    past_key_values.{i}.key / .value [1, kv_heads, P, head_dim]
                                    (position_ids [1, S]; Qwen2-VL's M-RoPE [3, 1, S])
                                 -> logits [1, S, V], present.{i}.key / .value [1, kv_heads, P + S, head_dim]

The decoder takes its past keys/values as inputs and returns the updated ones (what optimum-onnx cannot
do for decoder-only VLMs); an empty past (P = 0) starts a generation. Names follow transformers.js
(docs/EXPORT_RESEARCH.md); batch is 1 (one image, one prompt per call).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache



class PastKeyValueDecoder(nn.Module):
    """Language model + lm_head with explicit past keys/values in and present keys/values out."""

    def __init__(self, model, family):
        super().__init__()
        self.config = model.config.get_text_config()
        self.language_model = family.language_model(model)
        self.lm_head = family.lm_head(model)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = DynamicCache(config=self.config)
        for i in range(self.config.num_hidden_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True
        )
        presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        return (self.lm_head(out.last_hidden_state), *presents)


class FoldImageAxis(nn.Module):
    """Takes the processor layout [batch, images, 3, H, W] (Idefics3's; what transformers.js feeds as is)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixel_values.flatten(0, 1))


class DropBatchAxis(nn.Module):
    """Gives image_features [n, D], the layout transformers.js' Qwen2-VL merges (it counts features on axis 0)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixel_values).squeeze(0)


def kv_shape(model) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of the decoder's cache."""
    c = model.config.get_text_config()
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_hidden_layers, c.num_key_value_heads, head_dim


def export_onnx(model, family, image_size: int, out_dir: str | Path) -> dict[str, Path]:
    """Write the three fp32 graphs under out_dir/onnx/; returns their paths by name."""
    out = Path(out_dir) / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    layers, heads, head_dim = kv_shape(model)
    hidden = family.hidden_size(model)
    paths = {name: out / f"{name}.onnx" for name in ("vision_encoder", "embed_tokens", "decoder_model_merged")}
    seq = {1: "sequence_length"}

    encoder = family.vision_encoder(model, image_size).eval()
    pixels = encoder.example_pixel_values()
    if family.pixel_image_axis:
        encoder, pixels = FoldImageAxis(encoder).eval(), pixels.unsqueeze(1)
    if family.flat_image_features:
        encoder = DropBatchAxis(encoder).eval()
    torch.onnx.export(
        encoder, (pixels,), paths["vision_encoder"],
        input_names=["pixel_values"], output_names=["image_features"], dynamo=True, external_data=False,
    )
    torch.onnx.export(
        family.embed_tokens(model), (torch.zeros(1, 3, dtype=torch.long),), paths["embed_tokens"],
        input_names=["input_ids"], output_names=["inputs_embeds"], dynamic_shapes=(seq,), dynamo=True, external_data=False,
    )
    past_names = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    # Qwen2-VL's M-RoPE decoder takes position ids [3, 1, S] (vlsi_edge.runtime.positions), the others [1, S].
    mrope = family.mrope_grid(model, image_size) is not None
    example = (
        torch.zeros(1, 3, hidden),
        torch.ones(1, 5, dtype=torch.long),
        torch.arange(2, 5).repeat(3, 1, 1) if mrope else torch.arange(2, 5).unsqueeze(0),
        *[torch.zeros(1, heads, 2, head_dim) for _ in past_names],
    )
    torch.onnx.export(
        PastKeyValueDecoder(model, family).eval(), example, paths["decoder_model_merged"],
        input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
        output_names=["logits", *present_names],
        dynamic_shapes=(seq, {1: "total_sequence_length"}, {2: "sequence_length"} if mrope else seq,
                        tuple({2: "past_sequence_length"} for _ in past_names)),
        dynamo=True, external_data=False,
    )
    return paths
