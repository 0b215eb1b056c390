"""Real-size architectures with random weights, from the public configs (dimensions as data; no download).

Latency and memory depend on shapes, not weight values, so a random SmolVLM-256M tells a user what the
real one costs on their machine. The dimensions are those of the `config.json` files of
HuggingFaceTB/SmolVLM-256M-Instruct and SmolVLM-500M-Instruct (Idefics3: a SigLIP-B/16 tower at 512 px,
pixel shuffle with scale factor 4 -> 64 image tokens, and a SmolLM / SmolLM2 Llama decoder).
The toy tokenizer supplies the special-token ids; the vocabulary is the real one (49,280 rows), so the
embedding and lm_head cost what they cost in the real model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

SIGLIP_B16_512 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=512, patch_size=16)
ARCHITECTURES: dict[str, dict] = {
    "smolvlm-256m": {
        "text": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=49280, rope_theta=100000.0, rms_norm_eps=1e-5,
                     max_position_embeddings=8192),
        "vision": SIGLIP_B16_512,
        "scale_factor": 4,
    },
    "smolvlm-500m": {
        "text": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                     num_key_value_heads=5, vocab_size=49280, rope_theta=100000.0, rms_norm_eps=1e-5,
                     max_position_embeddings=8192),
        "vision": SIGLIP_B16_512,
        "scale_factor": 4,
    },
}
# The official ONNX exports of SmolVLM-256M-Instruct on the hub (MB), for the size comparison.
OFFICIAL_SMOLVLM_256M_ONNX_MB = {
    "decoder_model_merged": {"fp32": 541.0, "int8": 138.0, "q4": 86.9, "bnb4": 78.5},
    "embed_tokens": {"fp32": 114.0},
}


def build(name: str, tokenizer, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a random-weight model of architecture `name` with an Idefics3 processor into out_dir."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    ids = tokenizer.convert_tokens_to_ids
    text = dict(model_type="llama", bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<end_of_utterance>"),
                pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **arch["text"])
    config = Idefics3Config(text_config=text, vision_config=arch["vision"], scale_factor=arch["scale_factor"],
                            image_token_id=ids("<image>"), pad_token_id=tokenizer.pad_token_id,
                            tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    size = arch["vision"]["image_size"]
    tokens_per_side = size // arch["vision"]["patch_size"] // arch["scale_factor"]
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            do_image_splitting=False, size={"longest_edge": size}, max_image_size={"longest_edge": size},
            do_resize=True, resample=2,
        ),
        tokenizer=tokenizer,
        image_seq_len=tokens_per_side**2,
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
