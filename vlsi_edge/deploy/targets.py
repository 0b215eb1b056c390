"""Export target profiles: what to produce for a device class, and the gate it must pass.

A profile is a YAML file under `export/` (overrides of the defaults below, like training recipes):

    python -m vlsi_edge.export --target android-arm64          # export/android-arm64.yaml
    python -m vlsi_edge.export --target my.yaml --set onnx.block_size=64

Scheme names and what they quantize:

    ExecuTorch (XNNPACK)  fp32   nothing
                          8da8w  decoder + lm_head linears: int8 dynamic activations, int8 per-channel weights
                          8da4w  decoder + lm_head linears: int8 dynamic activations, int4 weights in groups
                                 of `group_size`
                          (quantized schemes also quantize the token embedding (`embedding`) and, when
                          `image_encoder: int8`, the vision tower and projector linears as 8da8w)
    ONNX (onnxruntime)    fp32   nothing
                          int8   onnxruntime dynamic quantization (int8 weights, dynamic int8 activations)
                          int4   MatMulNBits: int4 weights in blocks of `block_size`, fp32 activations

The gate compares each program's test accuracy with the float student's on the same items: a program
passes when the upper end of the 95% paired interval of its loss is at most `gate.<precision>` points,
where fp32 / 8da8w / int8 / 8da4w / int4 map to the precisions fp32 / int8 / int8 / int4 / int4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlsi_edge.config import ConfigError, load_config, option

# The shipped profiles: package data (the repository's export/ links to them), found wherever vlsi_edge is installed.
TARGETS_DIR = Path(__file__).resolve().parent / "profiles"

ExecutorchScheme = Literal["fp32", "8da8w", "8da4w"]
# transformers.js dtype names (int4: q4), and int4_cpu: onnxruntime's CPU only
OnnxScheme = Literal["fp32", "fp16", "q8", "int8", "uint8", "int4", "q4f16", "int4_cpu"]
PRECISION = {"fp32": "fp32", "fp16": "fp16", "8da8w": "int8", "q8": "int8", "int8": "int8", "uint8": "int8", "8da4w": "int4",
             "int4": "int4", "q4f16": "int4", "int4_cpu": "int4"}  # the weights' precision, which also picks the gate


@dataclass
class ExecutorchTarget:
    schemes: list[ExecutorchScheme] = option(["fp32", "8da8w", "8da4w"], "one .pte per scheme")
    group_size: int = option(32, "8da4w weight group size (must divide every quantized linear's input size)")
    embedding: Literal["int8", "int4"] = option("int8", "token embedding weights in the quantized schemes")
    embedding_group_size: int = option(0, "int4/int8 embedding group size (0: one scale per row)")
    image_encoder: Literal["int8", "fp32"] = option("int8", "vision tower + projector in the quantized schemes")
    int4_method: Literal["hqq", "rtn"] = option(
        "hqq", "how 8da4w picks its weight scales: hqq (HQQ's scale search, ExecuTorch's default) or rtn "
        "(round-to-nearest; what a distill.quantize_aware=8da4w student was trained through)"
    )
    llm_ops: bool = option(
        True, "text decoder on ExecuTorch's LLM ops (llama.update_cache writes the KV cache, llama.custom_sdpa "
        "attends over its filled part: ExecuTorch's own LLM fast path; the stock runner, the Python runtime and the "
        "Android AAR link them); false: plain aten ops, for a runtime built without EXECUTORCH_BUILD_KERNELS_LLM"
    )

    def __post_init__(self):
        if self.group_size < 1:
            raise ConfigError(f"executorch.group_size: {self.group_size} must be >= 1")
        if self.embedding_group_size < 0:
            raise ConfigError(f"executorch.embedding_group_size: {self.embedding_group_size} must be >= 0")


@dataclass
class OnnxTarget:
    schemes: list[OnnxScheme] = option(
        ["fp32", "fp16", "q8", "int8", "uint8", "int4", "q4f16", "int4_cpu"], "one set of graphs per scheme, named "
        "as transformers.js expects: fp32 '', fp16 '_fp16', q8 '_quantized' (its WASM default), int8 '_int8', uint8 "
        "'_uint8', int4 '_q4', q4f16 '_q4f16' (fp16 and q4f16: WebGPU's); and int4_cpu '_q4_cpu', onnxruntime's CPU "
        "only (the decoder by onnxruntime-genai's builder: fused attention and RMSNorms; int8 compute: the fastest CPU "
        "program, not one transformers.js loads)"
    )
    block_size: int = option(32, "int4 (MatMulNBits) block size: a power of two >= 16")
    accuracy_level: Literal[0, 1, 2, 3, 4] = option(
        0, "int4 / q4f16 MatMulNBits compute type (onnxruntime's accuracy_level; int4_cpu is always 4): 0 unset (fp32 activations), 1 fp32, "
        "2 fp16, 3 bf16, 4 int8 activations (dot-product / VNNI CPUs; what onnxruntime-genai's CPU builder sets)"
    )
    int4_method: Literal["rtn", "hqq", "gptq"] = option(
        "rtn", "how int4 / q4f16 weights are chosen (onnxruntime's MatMulNBitsQuantizer): rtn (round-to-nearest, "
        "symmetric; what a distill.quantize_aware=int4 student was trained through), hqq (HQQ: asymmetric, zero "
        "points fitted to each block), gptq (GPTQ, calibrated on what the fp32 graphs see answering "
        "`calibration_size` training questions)"
    )
    calibration_size: int = option(64, "gptq: calibration items (ShapesVQA train split, or calibration_data)")
    calibration_data: str | None = option(
        None, "gptq: a conversation file (JSON, as data.dataset takes) to calibrate on instead of ShapesVQA's train split"
    )

    def __post_init__(self):
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ConfigError(f"onnx.block_size: {self.block_size} must be a power of two >= 16")
        if self.calibration_size < 1:
            raise ConfigError(f"onnx.calibration_size: {self.calibration_size} must be >= 1")


@dataclass
class GateConfig:
    fp32: float = option(0.5, "max test-accuracy loss (points; the paired 95% upper bound) of fp32 programs vs the float student")
    fp16: float = option(0.5, "max loss (points) of fp16 programs (onnx fp16)")
    int8: float = option(1.0, "max loss (points) of int8 programs (8da8w, onnx q8 / int8 / uint8)")
    int4: float = option(2.0, "max loss (points) of int4 programs (8da4w, onnx int4 / q4f16)")

    def __post_init__(self):
        for name in ("fp32", "fp16", "int8", "int4"):
            if getattr(self, name) < 0:
                raise ConfigError(f"gate.{name}: {getattr(self, name)} must be >= 0 (points of accuracy lost)")


@dataclass
class ValidationConfig:
    size: int = option(1000, "ShapesVQA test items scored per program (real rendered images; 1000: the whole split, "
                             "enough to see a 1.5-point loss)")
    timing_size: int = option(100, "items of the speed pass (encode, TTFT, decode tok/s, peak RSS): the first N of "
                                   "the validation items, one program at a time with `threads` threads")
    jobs: int = option(0, "programs answering side by side in the accuracy pass, one thread each (0: one per core; "
                          "each job holds one program in memory)")

    def __post_init__(self):
        for key in ("size", "timing_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"validation.{key}: {getattr(self, key)} must be >= 1")
        if self.jobs < 0:
            raise ConfigError(f"validation.jobs: {self.jobs} must be >= 0 (0: one per core)")


@dataclass
class TargetConfig:
    name: str = option("custom", "target name (used in the export directory name)")
    description: str = option("", "the devices this profile is for")
    formats: list[Literal["executorch", "onnx"]] = option(["executorch", "onnx"], "runtimes to export for")
    max_context_len: int = option(128, "KV-cache length: prompt (with image tokens) + answer")
    max_new_tokens: int = option(
        40, "answer length cap: validation's greedy answers, and generation_config.json (what transformers.js and "
        "transformers generate when the caller sets no length); prompt + this must fit max_context_len"
    )
    threads: int = option(4, "CPU threads the runtimes use when validating (0: runtime default)")
    image_size: int | None = option(
        None, "the programs' square image size in pixels (null: what the model's processor makes of a training "
        "image). Idefics3 and LLaVA towers take one size only; for Qwen2-VL it pins the exported processor "
        "(min = max pixels = size^2; other images stretched to it)"
    )
    executorch: ExecutorchTarget = option(ExecutorchTarget(), "ExecuTorch (.pte, XNNPACK) programs")
    onnx: OnnxTarget = option(OnnxTarget(), "ONNX graphs (onnxruntime, transformers.js)")
    gate: GateConfig = option(GateConfig(), "accuracy-loss thresholds")
    validation: ValidationConfig = option(ValidationConfig(), "how programs are validated")

    def __post_init__(self):
        if self.max_context_len < 16:
            raise ConfigError(f"max_context_len: {self.max_context_len} is too small; use >= 16")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: {self.max_new_tokens} must be >= 1")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"image_size: {self.image_size} must be >= 1 (or null)")
        if not self.formats:
            raise ConfigError("formats: name at least one of 'executorch', 'onnx'")

    def threshold(self, scheme: str) -> float:
        return getattr(self.gate, PRECISION[scheme])


def known_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.yaml"))


def load_target(target: str, overrides: list[str] | tuple[str, ...] = ()) -> TargetConfig:
    """A shipped profile by name (export/<name>.yaml) or a YAML path, with --set overrides."""
    path = Path(target)
    if path.suffix not in (".yaml", ".yml") and not path.is_file():
        path = TARGETS_DIR / f"{target}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown target {target!r}; known targets: {', '.join(known_targets())} "
                              f"(or pass a YAML file)")
    return load_config(TargetConfig, path, overrides)
