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
    family: str = option("idefics3", "model family adapter, a name in vlsi_edge.families.FAMILIES")
    teacher: str = option("zoo:teacher", "teacher: 'zoo:<name>' (shipped toy model), 'tiny' (random) or a local path")
    student: str = option("zoo:student", "student base: 'zoo:<name>', 'tiny' or a local path")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "compute dtype of both models")
    teacher_quantization: Literal["none", "8bit", "4bit"] = option(
        "none", "load the teacher with bitsandbytes in 8-bit or 4-bit"
    )
    gradient_checkpointing: bool = option(False, "recompute student activations in backward to save memory")

    def __post_init__(self):
        from vlsi_edge.families import FAMILIES  # the registry is the one list of families

        if self.family not in FAMILIES:
            raise ConfigError(f"model.family: {self.family!r} is not allowed; allowed: {', '.join(FAMILIES)}")


@dataclass
class DataConfig:
    dataset: str = option("shapes", "'shapes' (built-in ShapesVQA) or a LLaVA-style JSON / JSONL file")
    image_root: str | None = option(None, "folder that image paths in the dataset are relative to")
    image_sandbox: bool = option(
        False, "refuse dataset images outside image_root (absolute paths, '..', links leading out): for files "
        "you did not write; off: they are read as written and the loader logs how many there are"
    )
    eval_dataset: str | None = option(None, "with a dataset file: a conversation file scored by exact match")
    seed: int = option(0, "ShapesVQA seed (scenes, questions, splits)")
    image_size: int = option(96, "ShapesVQA rendered image size in pixels")
    noise: float = option(0.04, "ShapesVQA background noise level (0 disables)")
    eval_size: int | None = option(None, "cap on items scored per evaluation split (null: the whole split)")
    labelled: int = option(
        2000, "N_L: ShapesVQA items with ground-truth answers for SFT-only and step 3 (the first N_L train items, "
        "which the zoo student base was trained on); 0: an unlimited stream"
    )
    unlabelled: int = option(
        10000, "N_U: ShapesVQA images + questions for steps 1-2 and the KD baselines, answered by the teacher "
        "(train items disjoint from the labelled ones); 0: an unlimited stream"
    )
    distill_answers: Literal["teacher", "gold"] = option(
        "teacher", "answers steps 1-2 train on: the teacher's greedy answers (pseudo-labels, cached) or the data's own"
    )

    def __post_init__(self):
        for name in ("labelled", "unlabelled"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name}: {getattr(self, name)} must be >= 0 (0: unlimited)")
        if not 0 <= self.seed < 2**31:
            raise ConfigError(f"data.seed: {self.seed} must be in [0, 2^31)")
        if self.image_size < 24:
            raise ConfigError(f"data.image_size: {self.image_size} is too small; use >= 24")
        if self.eval_size is not None and self.eval_size < 1:
            raise ConfigError(f"data.eval_size: {self.eval_size} must be >= 1")


@dataclass
class DistillConfig:
    method: Literal["vlsi", "sft", "final-kd", "hidden-l2"] = option(
        "vlsi", "vlsi: verbalize -> interact -> SFT; final-kd: final-layer KL -> SFT; hidden-l2: projected "
        "hidden-state L2 at uniformly matched target layers + final-layer KL -> SFT; sft: SFT only (same budget)"
    )
    student_layers: list[int] | None = option(None, "student target layers (null: from stride/offset)")
    teacher_layers: list[int] | None = option(None, "teacher target layers (null: from stride/offset)")
    student_stride: int = option(1, "every n-th student decoder layer is a target (paper: 4; the last layer never is)")
    student_offset: int = option(0, "first student target layer (paper: 2)")
    teacher_stride: int = option(1, "every n-th teacher decoder layer is a target (paper: 4; the last layer never is)")
    teacher_offset: int = option(0, "first teacher target layer (paper: 2)")
    verbalizer: Literal["residual", "plain"] = option(
        "residual", "residual: h + ffn(h) with zero-init (starts as the logit lens); plain: the paper's ffn(h)"
    )
    matching: Literal["adaptive", "uniform", "bottom1", "random"] = option("adaptive", "layer matching strategy")
    search_range: bool = option(True, "restrict candidates to the search range")
    order: bool = option(True, "order preservation: each match lies deeper than the previous one")
    match_temperature: float | None = option(None, "fixed sampling temperature (null: adaptive, the paper's)")
    temperature_scale: float = option(2.0, "scale of the adaptive matching temperature (see temperature_rule)")
    temperature_rule: Literal["paper", "scale-invariant"] = option(
        "paper", "paper: T = scale / (max KL - min KL + eps); scale-invariant: T = (max KL - min KL + eps) / scale, "
        "so the best candidate is always e^scale times as likely as the worst"
    )
    match_per: Literal["batch", "sample"] = option("batch", "one matching per batch (batch-mean KLs) or per sample")
    kl: Literal["forward", "reverse"] = option("forward", "forward: KL(teacher || student); reverse: KL(student || teacher)")
    kd_temperature: float = option(1.0, "softmax temperature of the distillation KL")
    layer_weight: float = option(1.0, "weight of the matched-layer KL terms")
    final_weight: float = option(1.0, "weight of the last-layer KL term")
    chunk_size: int = option(0, "compute KLs over chunks of this many positions (0: all at once)")
    teacher_cache: str | None = option(None, "read step 2's teacher distributions from this --cache-teacher dir")
    cache_top_k: int = option(32, "top-k teacher log-probs stored per position by --cache-teacher")
    quantize_aware: Literal["8da4w", "int4"] | None = option(
        None, "train steps 2-3 through the fake quantization of this int4 program (8da4w: ExecuTorch, int4: "
        "onnxruntime MatMulNBits; vlsi_edge.distill.quant_aware); null: float training"
    )
    quantize_group_size: int = option(32, "quantize_aware's weight group (ExecuTorch) / block (ONNX) size")

    def __post_init__(self):
        for name in ("student_stride", "teacher_stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"distill.{name}: {getattr(self, name)} must be >= 1")
        if self.cache_top_k < 1:
            raise ConfigError(f"distill.cache_top_k: {self.cache_top_k} must be >= 1")
        if self.match_temperature is not None and self.match_temperature <= 0:
            raise ConfigError(f"distill.match_temperature: {self.match_temperature} must be > 0 (or null)")
        for name in ("kd_temperature", "temperature_scale"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"distill.{name}: {getattr(self, name)} must be > 0")
        for name in ("layer_weight", "final_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name}: {getattr(self, name)} must be >= 0")
        if self.chunk_size < 0:
            raise ConfigError(f"distill.chunk_size: {self.chunk_size} must be >= 0 (0: all positions at once)")
        if self.quantize_group_size < 16 or self.quantize_group_size & (self.quantize_group_size - 1):
            raise ConfigError(f"distill.quantize_group_size: {self.quantize_group_size} must be a power of two >= 16 "
                              "(what onnxruntime's MatMulNBits and ExecuTorch's int4 kernels take)")


@dataclass
class StageConfig:
    steps: int = option(100, "optimizer steps")
    lr: float = option(1e-3, "peak learning rate (cosine decay to lr_min)")
    lr_min: float = option(1e-5, "final learning rate")
    warmup: int = option(10, "linear warm-up steps")

    def __post_init__(self):
        if self.steps < 0:
            raise ConfigError(f"steps: {self.steps} must be >= 0")
        if self.lr <= 0 or self.lr_min < 0:
            raise ConfigError(f"lr: {self.lr} must be > 0 and lr_min: {self.lr_min} >= 0")
        if self.lr_min > self.lr:
            raise ConfigError(f"lr_min: {self.lr_min} must be <= lr ({self.lr})")
        if self.warmup < 0:
            raise ConfigError(f"warmup: {self.warmup} must be >= 0 (0: no warm-up)")


@dataclass
class TrainConfig:
    verbalize: StageConfig = option(StageConfig(steps=150, lr=2e-3), "step 1: verbalizers (backbones frozen)")
    interact: StageConfig = option(StageConfig(steps=300, lr=5e-4), "step 2: adaptive layer matching")
    sft: StageConfig = option(StageConfig(steps=200, lr=5e-4), "step 3: supervised fine-tuning")
    batch_size: int = option(32, "examples per optimizer step (per process)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "clip the gradient norm (0: off)")
    student_training: Literal["full", "lora"] = option("full", "train the student's LM layers fully or with LoRA")
    lora_r: int = option(64, "LoRA rank (paper: 64)")
    lora_alpha: int = option(64, "LoRA alpha (paper: 64)")
    schedule: Literal["one-cosine", "per-stage"] = option(
        "one-cosine", "one-cosine: every method's student steps (interact + sft) follow one warm-up + cosine "
        "(peak interact.lr, warm-up interact.warmup, floor sft.lr_min); per-stage: each stage its own"
    )
    early_stopping: int = option(
        50, "SFT stages: score val every n steps (and before the first) and keep the best student (0: keep the last)"
    )
    evaluate_after_step2: bool = option(True, "score every split after step 2 / the KD baseline (not only after step 3)")
    checkpoint_every: int = option(100, "save a resumable checkpoint every n steps")
    log_every: int = option(10, "write metrics every n steps")

    def __post_init__(self):
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"train.batch_size ({self.batch_size}) and train.grad_accum ({self.grad_accum}) must be >= 1")
        if self.early_stopping < 0:
            raise ConfigError(f"train.early_stopping: {self.early_stopping} must be >= 0 (0: off)")
        for name in ("checkpoint_every", "log_every", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: {getattr(self, name)} must be >= 1")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: {getattr(self, name)} must be >= 0")


UNLIMITED_SEEDS = 32  # run seeds with their own slice of an unlimited ShapesVQA stream (distill.data.TrainData)


@dataclass
class RunConfig:
    model: ModelConfig = option(ModelConfig(), "teacher / student models")
    data: DataConfig = option(DataConfig(), "training and evaluation data")
    distill: DistillConfig = option(DistillConfig(), "VLsI: verbalizers, matching, losses")
    train: TrainConfig = option(TrainConfig(), "optimisation per step")
    seed: int = option(0, "global random seed: initialisation, matching samples and which training examples a run sees")

    def __post_init__(self):
        if not 0 <= self.seed < 2**31:  # seed + 1 seeds the student: every generator must take it
            raise ConfigError(f"seed: {self.seed} must be in [0, 2^31)")
        if self.distill.quantize_aware and self.train.student_training == "lora":
            raise ConfigError(f"distill.quantize_aware: {self.distill.quantize_aware} needs train.student_training: full "
                              "(LoRA trains adapters beside the fake-quantized weight, so the merged weight is not the one "
                              "the program quantizes)")
        d = self.data
        if d.dataset == "shapes" and 0 in (d.labelled, d.unlabelled) and self.seed >= UNLIMITED_SEEDS:
            raise ConfigError(f"seed: {self.seed} must be < {UNLIMITED_SEEDS} with an unlimited ShapesVQA stream "
                              "(data.labelled=0 or data.unlabelled=0): each seed reads its own slice of the stream")

