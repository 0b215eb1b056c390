"""One target: model -> programs per scheme -> Hugging Face files -> manifest.

Writes into a directory it is given (the export CLI's staging directory, moved into place after
validation: `vlsi_edge.export.export_target`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from vlsi_edge.config import ConfigError
from vlsi_edge.contracts.manifest import FORMAT_VERSION, file_entry, fixed_prompt_tokens, write_manifest
from vlsi_edge.contracts.run_dir import RunDir, teacher_score
from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample
from vlsi_edge.data.shapes import shapes_config
from vlsi_edge.deploy.app_golden import GOLDEN_INDEX, write_app_golden
from vlsi_edge.deploy.calibration import calibration_items, record_feeds
from vlsi_edge.deploy.executorch_export import runner_metadata
from vlsi_edge.deploy.executorch_job import start_executorch
from vlsi_edge.deploy.hf_files import write_hf_files
from vlsi_edge.deploy.onnx_export import export_onnx
from vlsi_edge.deploy.onnx_fusion import fused_decoder
from vlsi_edge.families.parts import split_model
from vlsi_edge.deploy.quantize import ONNX_GRAPHS, quantize_onnx
from vlsi_edge.deploy.targets import PRECISION, TargetConfig
from vlsi_edge.contracts.quantize_aware import RECORD, quantize_aware_mismatches, read_record
from vlsi_edge.families import Family, build_batch
from vlsi_edge.families.sources import family_of, model_dir

log = logging.getLogger(__name__)


@dataclass
class Source:
    """The float student to export and the data it was trained on."""

    model_dir: Path
    name: str
    data: ShapesConfig = field(default_factory=ShapesConfig)
    quantize_aware: dict | None = None  # the student directory's quantize_aware.json (vlsi_edge.distill.quant_aware)
    teacher: dict | None = None  # the teacher's test accuracy from the training run's report (the report's chain)

    def __post_init__(self):
        if self.quantize_aware is None:
            self.quantize_aware = read_record(self.model_dir)


def resolve_source(run: Path | None, model: str | None, runs_dir: Path = Path("runs")) -> Source:
    """--model (a model directory or zoo:<name>) wins; else --run; else runs/latest; else the shipped student."""
    import json

    if model is not None:
        path = model_dir(model)
        family_of(path)  # a clear error for anything that is not a supported model directory
        card = path / "card.json"
        try:
            data = ShapesConfig(**json.loads(card.read_text(encoding="utf-8"))["data"]) if card.is_file() else ShapesConfig()
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{card}: not a zoo card with a 'data' section ({type(e).__name__}: {e})") from None
        return Source(path, model.removeprefix("zoo:") if model.startswith("zoo:") else path.name, data)
    if run is None:
        latest = runs_dir / "latest"
        if not latest.exists():
            log.warning("no training run under %s; exporting the shipped toy student (zoo:student)", runs_dir)
            return resolve_source(None, "zoo:student")
        run = latest
    finished = RunDir.finished(run)
    return Source(finished.student_path, finished.path.name, shapes_config(finished.load_config().data),
                  teacher=teacher_score(finished.path))


# ------------------------------------------------------------------------------------------------
# What the app needs to feed the model
# ------------------------------------------------------------------------------------------------


def image_size_of(family: Family, processor, image: Image.Image) -> int:
    """The square size the processor resizes images to (what the vision program is fixed at)."""
    return family.processed_image_size(processor, family.process(processor, [image], [family.prompt("?")]))


def fixed_input(family: Family, processor, probe: Image.Image, wanted: int | None) -> tuple[object, int]:
    """(the processor the export ships, the programs' image size): the target's image_size, or by default what
    the model's processor makes of a training image; any image through that processor becomes that size."""
    natural = image_size_of(family, processor, probe)
    size = natural if wanted is None else wanted
    fixed = family.fixed_processor(processor, size)
    for image in (probe, probe.resize((size * 3 // 2 + 1, max(1, size // 2 + 1)))):  # square and odd-sized
        got = image_size_of(family, fixed, image)
        if got != size and wanted is not None and got == natural:
            raise ConfigError(f"image_size: {size}: this {family.name} model takes {natural} px images only (its vision "
                              f"tower's size; the processor resizes every image to it); leave image_size unset")
        if got != size:
            raise ConfigError(f"{family.name}: the processor resizes a {image.width}x{image.height} image to {got} px, "
                              f"not {size}; the exported programs would not take it")
    return fixed, size


def prompt_spec(family: Family, processor, image: Image.Image) -> dict:
    """The prompt as token segments around the image and the question, checked on two questions.

    Special tokens split the byte-level BPE, so the question tokenizes the same alone and in the
    prompt; the app tokenizes only the question and concatenates.
    """
    tokenizer = family.tokenizer(processor)
    image_id = tokenizer.convert_tokens_to_ids(family.image_token)
    specs = []
    for question in ("what color is the circle?", "How many squares are there?"):
        ids = build_batch(family, processor, [VQASample(image, question, "")], with_answer=False)["input_ids"][0].tolist()
        q = tokenizer(question, add_special_tokens=False)["input_ids"]
        at = next((i for i in range(len(ids) - len(q) + 1) if ids[i : i + len(q)] == q), None)
        if at is None:
            raise ValueError(f"{family.name}: the question does not tokenize the same inside the prompt")
        before, after = ids[:at], ids[at + len(q) :]
        first = before.index(image_id)
        count = before.count(image_id)
        if before[first : first + count] != [image_id] * count:
            raise ValueError(f"{family.name}: the image tokens are not one run in the prompt")
        specs.append({
            "before_image": before[:first], "image_tokens": count, "after_image": before[first + count :],
            "after_question": after,
        })
    if specs[0] != specs[1]:
        raise ValueError(f"{family.name}: the prompt around the question depends on the question")
    return {"template": family.prompt("{question}"), "image_placeholder": family.image_token, **specs[0],
            **prompt_text(tokenizer, specs[0])}


def prompt_text(tokenizer, spec: dict) -> dict:
    """The segments as text, for runners that tokenize text themselves (ExecuTorch's LlmModule).

    A leading BOS becomes `num_bos` (the runner prepends it); every segment must tokenize back to
    exactly its ids, or the app would feed the model a different prompt than validation did.
    """
    before = spec["before_image"]
    num_bos = int(bool(before) and before[0] == tokenizer.bos_token_id)
    segments = {"before_image": before[num_bos:], "after_image": spec["after_image"],
                "after_question": spec["after_question"]}
    texts = {}
    for name, ids in segments.items():
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        again = tokenizer(text, add_special_tokens=False)["input_ids"]
        if again != ids:
            raise ValueError(f"prompt segment {name!r}: {text!r} tokenizes to {again}, not {ids}; "
                             "a text-tokenizing runner would see a different prompt")
        texts[f"{name}_text"] = text
    return {"num_bos": num_bos, **texts}


RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
# Each manifest resize rule spelled out, so that a reimplementation gets the processor's pixels exactly
# (android_demo/core implements longest_edge_then_square and is checked bit for bit against it).
RESIZE_STEPS = {
    "longest_edge_then_square": "resize to (h, w) with the longest edge = size and the other = int(size * short / long) "
                                "(truncated), plus 1 if odd, at least 1; then resize to size x size; both with the "
                                "`resample` filter on 8-bit RGB (Pillow's antialiased resampler)",
    "stretch_to_square": "resize to size x size, aspect ratio ignored, with the `resample` filter",
    "shortest_edge_then_center_crop": "resize the shortest edge to size keeping the aspect ratio (the other edge "
                                      "int(size * long / short)), then crop the centre size x size",
    "stretch_to_square_then_patches": "resize to size x size, aspect ratio ignored, with the `resample` filter; then "
                                      "the processor's flattened patches [(size / patch)^2, 3 * 2 * patch^2] (two "
                                      "temporal copies of each patch; min_pixels = max_pixels = size^2 keeps the "
                                      "size); not an app input",
}


def check_context(prompt: dict, target: TargetConfig) -> None:
    """Refuse a KV cache too short for the prompt around the question plus an answer of max_new_tokens."""
    fixed = fixed_prompt_tokens(prompt)
    need = fixed + target.max_new_tokens
    if target.max_context_len < need:
        raise ConfigError(f"max_context_len: {target.max_context_len} is shorter than the prompt around the question "
                          f"({fixed} tokens, {prompt['image_tokens']} of them the image) plus an answer of "
                          f"max_new_tokens = {target.max_new_tokens}; use >= {need} plus the "
                          "longest question")


def image_spec(family: Family, processor, size: int) -> dict:
    ip = processor.image_processor
    resample = getattr(ip, "resample", None)
    return {
        "size": size,
        "channels": "RGB",
        "layout": "CHW float32, batch of one",
        "resize": family.image_resize_rule(processor),  # the rules are in docs/EXPORT.md and android_demo/core
        "resize_steps": RESIZE_STEPS.get(family.image_resize_rule(processor), ""),
        "resample": RESAMPLE.get(int(resample), str(resample)) if resample is not None else None,
        "rescale_factor": float(getattr(ip, "rescale_factor", 1 / 255)),
        "mean": [float(v) for v in ip.image_mean],
        "std": [float(v) for v in ip.image_std],
    }


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What an export of a source for a target will feed its programs, settled before anything is written."""

    family: Family
    processor: object  # the processor the export ships (pinned to `size`)
    size: int          # the programs' square image size
    prompt: dict       # the manifest's prompt segments
    not_trained_for: list[str] = field(default_factory=list)  # 4-bit programs a quantize-aware student was not trained for


def plan_export(source: Source, target: TargetConfig, allow_quant_mismatch: bool = False) -> Plan:
    """Load the processor and check the target against it (image size, context length, the scheme a
    quantize-aware student was trained for): a ConfigError here comes before a weight is loaded or a file
    written."""
    wrong, fixes = quantize_aware_mismatches(source.quantize_aware, target)
    if wrong and not allow_quant_mismatch:
        r = source.quantize_aware
        raise ConfigError(f"{source.model_dir}: trained quantize-aware for {r['scheme']} ({r['runtime']}, group {r['group_size']}, "
                          f"rtn; {RECORD}), but this target also exports {', '.join(wrong)}, which it was not trained "
                          f"through; match the target ({' '.join(fixes)}) or pass --allow-quant-mismatch")
    data = target.onnx.calibration_data
    if target.onnx.int4_method == "gptq" and data and not Path(data).is_file():
        raise ConfigError(f"onnx.calibration_data: {data}: no such file (a conversation JSON file to calibrate GPTQ on)")
    if wrong:
        log.warning("exporting %s although the student was trained quantize-aware for %s", ", ".join(wrong),
                    source.quantize_aware["scheme"])
    family = family_of(source.model_dir)
    processor = family.load_processor(source.model_dir)  # ConfigError naming the directory
    probe = ShapesVQA("test", size=1, config=source.data)[0].image
    processor, size = fixed_input(family, processor, probe, target.image_size)
    prompt = prompt_spec(family, processor, probe)
    check_context(prompt, target)
    return Plan(family, processor, size, prompt, wrong)


def export_programs(source: Source, target: TargetConfig, out_dir: Path, plan: Plan | None = None, jobs: int = 1) -> dict:
    """Export `source` for `target` into the empty directory out_dir: programs, Hugging Face files, the app's
    golden inputs and manifest.json (returned). `vlsi_edge.export.export_target` plans, stages, validates and
    moves it. jobs > 1 lowers the ExecuTorch programs in that many processes, beside the ONNX export."""
    plan = plan or plan_export(source, target)
    family, processor, size, prompt = plan.family, plan.processor, plan.size, plan.prompt
    tokenizer = family.tokenizer(processor)
    try:
        model = family.load(source.model_dir, torch.float32).eval()
    except Exception as e:  # noqa: BLE001 - whatever the loaders raise, the directory is what is wrong
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{source.model_dir}: cannot load the model ({type(e).__name__}: {first}); "
                          "is it a complete save_pretrained directory?") from None

    write_hf_files(model, family, processor, out_dir, target.max_new_tokens)
    parts = split_model(model, family, size, max_cache_len=target.max_context_len)
    metadata = runner_metadata(parts, tokenizer, family.eos_token)
    artifacts: dict[str, dict] = {}
    timings: dict[str, float] = {}
    planned = [*(["executorch"] * len(target.executorch.schemes) if "executorch" in target.formats else []),
               *(["onnx"] * (1 + len(target.onnx.schemes)) if "onnx" in target.formats else [])]
    with tqdm(total=len(planned), desc=f"export {target.name}", unit="artifact") as progress:
        wait = lambda: None  # noqa: E731
        if "executorch" in target.formats:
            wait = start_executorch(model, family, size, target, metadata, out_dir, artifacts, timings, progress,
                                    source.model_dir, jobs)
        if "onnx" in target.formats:
            def calibrate(onnx_dir: Path) -> dict:  # gptq: what the fp32 graphs see answering calibration items
                return record_feeds(onnx_dir, family, processor, calibration_items(source, target), parts.image_token_id,
                                    metadata["get_eos_ids"][0], target.max_new_tokens, parts.mrope_grid)

            onnx_artifacts(model, family, size, target, out_dir, artifacts, timings, progress, calibrate)
        wait()
    artifacts = {name: artifacts[name] for name in sorted(artifacts, key=lambda n: not n.startswith("executorch"))}

    manifest = {
        "format_version": FORMAT_VERSION,
        "family": family.name,
        "model": {"source": str(source.model_dir), "name": source.name},
        "target": target.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "data": asdict(source.data),  # the ShapesVQA world the programs are validated on
        "image": image_spec(family, processor, size),
        "prompt": prompt,
        "tokens": {
            "image_token_id": parts.image_token_id,
            "image_token_count": image_token_count(parts),
            "image_grid": list(parts.mrope_grid) if parts.mrope_grid else None,
            "bos_id": metadata["get_bos_id"],
            "eos_ids": metadata["get_eos_ids"],
            # The runner streams the end-of-answer token's text too; the app cuts it off.
            "eos_texts": [tokenizer.decode([i], skip_special_tokens=False) for i in metadata["get_eos_ids"]],
            "pad_id": tokenizer.pad_token_id,
            "vocab_size": metadata["get_vocab_size"],
        },
        "max_context_len": metadata["get_max_context_len"],
        "max_seq_len": metadata["get_max_seq_len"],
        "tokenizer": file_entry(out_dir, out_dir / "tokenizer.json"),
        "artifacts": artifacts,
        "export_seconds": timings,
    }
    if source.quantize_aware:
        manifest["quantize_aware"] = {**source.quantize_aware, "not_trained_for": plan.not_trained_for}
    if parts.mrope_grid is None:  # the app runs stock-runner families only (not M-RoPE)
        golden = write_app_golden(family, processor, manifest["prompt"], source.data, out_dir)
        manifest["app_golden"] = (golden / GOLDEN_INDEX).relative_to(out_dir).as_posix()
    write_manifest(out_dir, manifest)
    return manifest


EIGHT_BIT = {"method": "onnxruntime quantize_dynamic", "activations": "uint8 dynamic", "ops": ["MatMul", "Gather"]}
ONNX_QUANTIZATION = {
    "q8": {**EIGHT_BIT, "weights": "int8 per-channel (uint8 in a graph with a Conv, transformers.js' q8 rule)"},
    "int8": {**EIGHT_BIT, "weights": "int8 per-channel"},
    "uint8": {**EIGHT_BIT, "weights": "uint8 per-channel"},
    "fp16": {"method": "onnxruntime float16 conversion", "weights": "fp16", "io": "fp32 (keep_io_types)"},
    "int4": {"method": "onnxruntime MatMulNBits", "weights": "int4 symmetric", "ops": ["MatMul", "Gather"]},
    "q4f16": {"method": "onnxruntime MatMulNBits, then float16 conversion", "weights": "int4 symmetric, fp16 scales",
              "ops": ["MatMul", "Gather"], "io": "fp32 (keep_io_types)"},
    "int4_cpu": {"weights": "int4 symmetric", "ops": ["MatMul", "Gather"],
                 "runtime": "onnxruntime CPU only (int8 compute; not a transformers.js dtype: use onnx-int4 there)"},
}


def onnx_artifacts(model, family, size: int, target: TargetConfig, staging: Path, artifacts: dict, timings: dict,
                   progress: tqdm, calibrate=None) -> None:
    """The fp32 graphs, then each quantized variant from them (fp32 files go if fp32 is not a scheme).
    calibrate(onnx_dir) -> each graph's recorded feeds, for onnx.int4_method gptq."""
    progress.set_postfix_str("onnx fp32 graphs")
    t = time.perf_counter()
    fp32 = export_onnx(model, family, size, staging)
    timings["onnx-fp32"] = round(time.perf_counter() - t, 1)
    progress.update()
    feeds = None
    if target.onnx.int4_method == "gptq" and {"int4", "q4f16", "int4_cpu"} & set(target.onnx.schemes):
        log.warning("onnx.int4_method gptq: onnxruntime's GPTQ (1.32) re-quantizes its result with a new symmetric "
                    "scale, a second rounding; on the toy it ended further from fp32 than rtn (docs/BENCHMARKS.md)")
        t = time.perf_counter()
        feeds = calibrate(staging / "onnx")
        timings["onnx-calibration"] = round(time.perf_counter() - t, 1)
    fused, fusion = None, {}
    for scheme in target.onnx.schemes:
        progress.set_postfix_str(f"onnx-{scheme}")
        t = time.perf_counter()
        if scheme == "int4_cpu":  # the decoder with onnxruntime's fused operators (onnx_fusion), then int4
            fused, fusion = fused_decoder(model, family, fp32["decoder_model_merged"], staging)
        paths = fp32 if scheme == "fp32" else quantize_onnx(staging / "onnx", scheme, target.onnx.block_size,
                                                            target.onnx.accuracy_level, target.onnx.int4_method, feeds,
                                                            fused)
        if scheme != "fp32":
            timings[f"onnx-{scheme}"] = round(time.perf_counter() - t, 1)
        quantization = ONNX_QUANTIZATION.get(scheme)
        if scheme == "int4_cpu":
            quantization = {**quantization, **fusion, "method": fusion["method"] + ", then MatMulNBits"}
        if scheme in ("int4", "q4f16", "int4_cpu"):
            weights = {"rtn": "int4 symmetric (round to nearest)",
                       "hqq": "int4: MatMul asymmetric (HQQ), the embedding table symmetric round to nearest",
                       "gptq": f"int4 symmetric: MatMul by GPTQ on {target.onnx.calibration_size} calibration items, "
                               "the embedding table round to nearest"}[target.onnx.int4_method]
            if scheme == "q4f16":
                weights += ", fp16 scales"
            quantization = {**quantization, "weights": weights, "int4_method": target.onnx.int4_method,
                            "block_size": target.onnx.block_size,
                            "accuracy_level": 4 if scheme == "int4_cpu" else target.onnx.accuracy_level}
        artifacts[f"onnx-{scheme}"] = {
            "runtime": "onnx", "scheme": scheme, "precision": PRECISION[scheme], "quantization": quantization,
            "transformers_js_dtype": {"int4": "q4", "int4_cpu": None}.get(scheme, scheme),
            "files": {g: file_entry(staging, paths[g]) for g in ONNX_GRAPHS},
        }
        progress.update()
    if "fp32" not in target.onnx.schemes:
        for path in fp32.values():
            path.unlink()
    log.info("onnx: %s", {k: v for k, v in timings.items() if k.startswith("onnx")})


def image_token_count(parts) -> int:
    with torch.no_grad():
        return int(parts.vision_encoder(parts.vision_encoder.example_pixel_values()).shape[1])


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("vlsi_edge", "torch", "transformers", "executorch", "torchao", "onnx", "onnxruntime")}
