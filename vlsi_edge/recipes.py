"""The training recipe schema: what `python -m vlsi_edge.train` reads (one dataclass per concern).

Recipes under `train/` hold only what differs from these defaults; `describe(RunConfig)` lists
every key with its default and help text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlsi_edge.config import ConfigError, option


@dataclass
class ModelConfig:
    family: Literal["idefics3", "qwen2_vl", "llava"] = option(
        "idefics3", "model family adapter (vlsi_edge.families.FAMILIES)"
    )
    teacher: str = option("zoo:teacher", "teacher: 'zoo:<name>' (shipped toy model), 'tiny' (random) or a local path")
    student: str = option("zoo:student", "student base: 'zoo:<name>', 'tiny' or a local path")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "compute dtype of both models")
    teacher_quantization: Literal["none", "8bit", "4bit"] = option(
        "none", "load the teacher with bitsandbytes in 8-bit or 4-bit"
    )
    gradient_checkpointing: bool = option(False, "recompute student activations in backward to save memory")


@dataclass
class DataConfig:
    dataset: str = option("shapes", "'shapes' (built-in ShapesVQA) or a LLaVA-style JSON / JSONL file")
    image_root: str | None = option(None, "folder that image paths in the dataset are relative to")
    seed: int = option(0, "ShapesVQA seed (scenes, questions, splits)")
    image_size: int = option(96, "ShapesVQA rendered image size in pixels")
    noise: float = option(0.04, "ShapesVQA background noise level (0 disables)")
    eval_size: int | None = option(None, "cap on items scored per evaluation split (null: the whole split)")

    def __post_init__(self):
        if self.image_size < 24:
            raise ConfigError(f"data.image_size: {self.image_size} is too small; use >= 24")
        if self.eval_size is not None and self.eval_size < 1:
            raise ConfigError(f"data.eval_size: {self.eval_size} must be >= 1")


@dataclass
class RunConfig:
    model: ModelConfig = option(ModelConfig(), "teacher / student models")
    data: DataConfig = option(DataConfig(), "training and evaluation data")
    batch_size: int = option(32, "evaluation batch size")
    seed: int = option(0, "global random seed")

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: {self.batch_size} must be >= 1")
