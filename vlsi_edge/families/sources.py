"""Where a model comes from: a shipped zoo model, a tiny random model, or a local checkpoint.

    zoo:<name>     a toy model shipped in vlsi_edge/zoo/models (e.g. zoo:teacher)
    tiny:<layers>  a random model of the family, tiny width, <layers> decoder layers — for tests and for
                   dry runs of the real recipes (the paper's layer counts at a width that fits a laptop)
    <path>         a local HF directory (save_pretrained layout: config.json, weights, processor)

Nothing here downloads: a path that is not a directory is an error, never a hub id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import BitsAndBytesConfig, PreTrainedModel

from vlsi_edge.config import ConfigError
from vlsi_edge.families.base import Family, TinySpec
from vlsi_edge.families.tokenizer import family_tokenizer

log = logging.getLogger(__name__)

# The shipped toy models (package data, vlsi_edge/zoo/models/<name>/; `python -m vlsi_edge.zoo build` writes them).
ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo" / "models"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Width of tiny:<layers> models. The vocabulary comes from the ShapesVQA tokenizer, so a teacher and a
# student built this way always share token ids.
TINY_WIDTH = TinySpec(
    text_hidden=64, text_heads=2, text_kv_heads=1, text_intermediate=128,
    vision_layers=1, vision_hidden=64, vision_heads=2, vision_intermediate=128,
    image_size=64, patch_size=16,
)


def zoo_path(name: str) -> Path:
    """The directory of the shipped toy model `name` (zoo:<name>)."""
    path = ZOO_DIR / name
    if not (path / "card.json").is_file():
        known = sorted(p.name for p in ZOO_DIR.glob("*") if (p / "card.json").is_file())
        raise FileNotFoundError(
            f"no zoo model {name!r} in {ZOO_DIR} (known: {', '.join(known) or 'none'}); "
            "rebuild with `python -m vlsi_edge.zoo build`"
        )
    return path


def model_dir(source: str | Path) -> Path:
    """The directory a saved-model source names: zoo:<name> or a local path (not checked here)."""
    source = str(source)
    return zoo_path(source.removeprefix("zoo:")) if source.startswith("zoo:") else Path(source).expanduser()


def quantization_config(mode: str) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for a frozen teacher: 8-bit LLM.int8, or 4-bit NF4 with fp32 compute."""
    if mode == "none":
        return None
    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if mode == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    raise ConfigError(f"quantization {mode!r}: allowed 'none', '8bit', '4bit'")


def load_source(
    family: Family, source: str, dtype: str = "float32", quantization: str = "none", seed: int = 0
) -> tuple[PreTrainedModel, Any, str]:
    """(model, processor, resolved path or description) for a model source string."""
    if source.startswith("zoo:"):
        path = zoo_path(source.removeprefix("zoo:"))
        processor = family.load_processor(path)
        return _load_path(family, path, dtype, quantization), processor, str(path)
    if source.startswith("tiny:"):
        layers_text = source.removeprefix("tiny:")
        if not layers_text.isdigit() or int(layers_text) < 1:
            raise ConfigError(f"model source {source!r}: expected tiny:<layers> with layers >= 1, e.g. tiny:4")
        tokenizer = family_tokenizer(family)
        spec = replace(TINY_WIDTH, text_layers=int(layers_text))
        processor = family.build_processor(tokenizer, spec)
        torch.manual_seed(seed)
        model = family.load(family.tiny_config(tokenizer, spec), DTYPES[dtype])
        if quantization != "none":
            # bitsandbytes quantizes at load time: round-trip the random model through a directory.
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                model = _load_path(family, Path(tmp), dtype, quantization)
        return model, processor, source
    path = Path(source).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"model source {source!r}: not a directory; use a local checkpoint path, zoo:<name> or tiny:<layers> "
            "(nothing is downloaded)"
        )
    processor = family.load_processor(path)  # first: seconds, where the weights may take minutes
    return _load_path(family, path, dtype, quantization), processor, str(path)


def _load_path(family: Family, path: Path, dtype: str, quantization: str) -> PreTrainedModel:
    qconfig = quantization_config(quantization)
    kwargs = {"quantization_config": qconfig} if qconfig is not None else {}
    return family.load(path, DTYPES[dtype], **kwargs)


# Near misses that would otherwise look like a supported family, and why they are not one.
UNSUPPORTED = {
    "llava_onevision": " (LLaVA-OneVision checkpoints are not the `llava` family: their anyres tiling and "
                       "image_newline have no counterpart in it; loading one as llava would drop them)",
    "llava_next": " (LLaVA-NeXT's anyres tiling and image_newline have no counterpart in the `llava` family)",
}


def family_of(model_dir: str | Path) -> Family:
    """The family adapter for a saved model directory, from its config.json `model_type`."""
    from vlsi_edge.families import FAMILIES

    config = Path(model_dir) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such file; expected a transformers model directory (save_pretrained)")
    try:
        saved = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{config}: not valid JSON ({e})") from None
    model_type = saved.get("model_type") if isinstance(saved, dict) else None
    for family in FAMILIES.values():
        if family.model_class.config_class.model_type == model_type:
            return family
    known = ", ".join(f.model_class.config_class.model_type for f in FAMILIES.values())
    hint = UNSUPPORTED.get(model_type, "")
    raise ConfigError(f"{config}: model_type {model_type!r} is not a supported family; supported: {known}{hint}")
