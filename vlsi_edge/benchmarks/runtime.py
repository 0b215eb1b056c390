"""The runtime benchmark: transformers eager vs ExecuTorch vs onnxruntime (vs llama.cpp), same inputs, one run.

For each model (the toy student; real-size SmolVLM-256M / 500M architectures with random weights) it
exports every scheme once (cached under the work directory), then runs each program in its own worker
process (`vlsi_edge.runtime.worker`; transformers' row: `vlsi_edge.benchmarks.hf_baseline`) over the same ShapesVQA images and questions, decoding a fixed
number of tokens. Per row: image-encode ms, time to first token, decode tokens/s (median and range over
the items), peak RSS, file size, and decode speed as a fraction of the memory-bandwidth roofline
(decoder weight bytes read per token / measured copy bandwidth).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlsi_edge import atomic  # noqa: E402
from vlsi_edge.benchmarks import llamacpp  # noqa: E402
from vlsi_edge.benchmarks.architectures import ARCHITECTURES, OFFICIAL_SMOLVLM_256M_ONNX_MB  # noqa: E402
from vlsi_edge.benchmarks.bandwidth import memory_bandwidth  # noqa: E402
from vlsi_edge.config import ConfigError  # noqa: E402

log = logging.getLogger(__name__)

MODELS = ("toy", *ARCHITECTURES)
ROWS = ("hf", "executorch-fp32", "executorch-8da8w", "executorch-8da4w", "onnx-fp32", "onnx-int8", "onnx-int4")
BENCH_TARGET = ["executorch.schemes=[fp32, 8da8w, 8da4w]", "onnx.schemes=[fp32, int8, int4]",
                "executorch.image_encoder=int8", "executorch.embedding=int8", "max_context_len=256"]




def model_dir_for(model: str, work: Path) -> Path:
    """The model directory for `model`: the shipped toy student, or a real-size architecture built once."""
    from vlsi_edge.families.sources import family_of, zoo_path

    if model == "toy":
        return zoo_path("student")
    from vlsi_edge.benchmarks.architectures import build

    model_dir = work / "models" / model
    if not (model_dir / "config.json").is_file():
        student = zoo_path("student")  # its tokenizer: every real-size architecture shares the toy vocabulary
        family = family_of(student)
        build(model, family.tokenizer(family.load_processor(student)), model_dir)
    return model_dir


def prepare(model: str, work: Path, threads: int, overrides: list[str]) -> tuple[Path, dict[str, Path]]:
    """(model dir, {export name: export dir}) for `model`, exporting only what is not cached yet."""
    from vlsi_edge.contracts.manifest import MANIFEST
    from vlsi_edge.deploy.pipeline import Source
    from vlsi_edge.export import export_target
    from vlsi_edge.deploy.targets import load_target

    model_dir = model_dir_for(model, work)
    base = [*BENCH_TARGET, f"threads={threads}", *overrides]
    target = load_target("x86_64", base)
    # One export per ExecuTorch scheme and one for ONNX, each cached on its own: an interrupted first
    # run keeps the programs it finished.
    restrict = {f"executorch-{s}": ["formats=[executorch]", f"executorch.schemes=[{s}]"]
                for s in target.executorch.schemes if "executorch" in target.formats}
    if "onnx" in target.formats and target.onnx.schemes:
        restrict["onnx"] = ["formats=[onnx]"]
    exports = {}
    for name, extra in restrict.items():
        export_dir = work / "exports" / model / name
        if not (export_dir / MANIFEST).is_file():
            log.info("exporting %s %s (cached in %s)", model, name, export_dir)
            export_target(Source(model_dir, model), load_target("x86_64", [*base, *extra]), export_dir,
                          validate=False)
        exports[name] = export_dir
    return model_dir, exports


def decoder_bytes_per_token(model_dir: Path, manifest: dict, row: str) -> int:
    """Weight bytes a decode step reads: every decoder linear (+ lm_head), once per token.

    ONNX: the decoder graph file itself. ExecuTorch and eager: counted from the model's linear weights
    at the scheme's precision (int4 groups and int8 channels carry one fp32 scale each).
    """
    if row.startswith("onnx-"):
        entry = manifest["artifacts"][row]["files"]["decoder_model_merged"]
        return entry["bytes"]
    config = json.loads((model_dir / "config.json").read_text())["text_config"]
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    shapes = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)] * layers + [(config["vocab_size"], h)]
    weights = sum(o * n for o, n in shapes)
    rows = sum(o for o, _ in shapes)
    if row in ("hf", "executorch-fp32"):
        return 4 * weights
    if row == "executorch-8da8w":
        return weights + 4 * rows
    group = manifest["artifacts"][row]["quantization"]["group_size"]
    return weights // 2 + 4 * weights // group


def write_inputs(model_dir: Path, items: int, path: Path) -> None:
    from vlsi_edge.data import ShapesConfig
    from vlsi_edge.families.sources import family_of
    from vlsi_edge.families.inputs import write_inputs as write
    from vlsi_edge.validate.inputs import validation_items

    family = family_of(model_dir)
    write(family, family.load_processor(model_dir), validation_items(ShapesConfig(), items), path)


def summarize(run: dict) -> dict:
    per_item = run["decode_steps"] / run["decode_s"]

    def stat(values, scale=1.0):
        values = np.asarray(values) * scale
        return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}

    return {"encode_ms": stat(run["encode_s"], 1000), "first_token_ms": stat(run["first_token_s"], 1000),
            "decode_tokens_per_s": stat(per_item), "peak_rss_mb": round(float(run["peak_rss_mb"]), 1)}


def bench_model(model: str, work: Path, threads: int, items: int, decode_tokens: int, bandwidth: float | None,
                overrides: list[str]) -> dict:
    from vlsi_edge.contracts.manifest import load_manifest
    from vlsi_edge.validate.run import run_program

    start = time.perf_counter()
    model_dir, exports = prepare(model, work, threads, overrides)
    prepared_s = time.perf_counter() - start
    manifests = {name: load_manifest(d) for name, d in exports.items()}
    rows, export_seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        write_inputs(model_dir, items, inputs)
        owner = {row: name for name, m in manifests.items() for row in m["artifacts"]}
        for row in [r for r in ROWS if r == "hf" or r in owner]:
            # transformers' row loads the model directory; an export's manifest still sizes its decoder
            name = owner.get(row, next(iter(exports)))
            manifest = manifests[name]
            if row != "hf":
                export_seconds[row] = manifest["export_seconds"][row]
            if row == "hf":
                run, error = hf_row(model_dir, inputs, threads, decode_tokens)
            else:
                run, error = run_program(exports[name], row, inputs, threads, decode_tokens, ignore_eos=True)
            if error:
                rows[row] = {"error": error}
                log.warning("%s %s failed: %s", model, row, error)
                continue
            result = summarize(run)
            if row != "hf":
                result["bytes"] = sum(f["bytes"] for f in manifest["artifacts"][row]["files"].values())
            per_token = decoder_bytes_per_token(model_dir, manifest, row)
            result["decoder_bytes_per_token"] = per_token
            if bandwidth:
                roofline = bandwidth * 1e9 / per_token
                result["roofline_tokens_per_s"] = roofline
                result["roofline_fraction"] = result["decode_tokens_per_s"]["median"] / roofline
            rows[row] = result
            log.info("%s %s: %s", model, row, result)
    onnx_files = sorted((exports["onnx"] / "onnx").glob("*.onnx")) if "onnx" in exports else []
    return {"model": model, "export_seconds": export_seconds, "prepare_s": round(prepared_s, 1), "rows": rows,
            "onnx_files_mb": {f.name: round(f.stat().st_size / 1e6, 1) for f in onnx_files}}


def hf_row(model_dir: Path, inputs: Path, threads: int, decode_tokens: int) -> tuple[dict | None, str | None]:
    """transformers' generate over the same inputs in its own worker: (arrays, None) or (None, error)."""
    from vlsi_edge.worker import spawn_arrays

    job = {"model_dir": str(model_dir), "inputs": str(inputs), "threads": threads, "max_new_tokens": decode_tokens,
           "ignore_eos": True}
    return spawn_arrays("vlsi_edge.benchmarks.hf_baseline", job, threads=threads or None)


def peer_rows(model: str, work: Path, threads: int, decode_tokens: int, bandwidth: float | None) -> dict:
    """llama.cpp on the same text decoder dimensions (Q8_0, Q4_0), or why it could not run."""
    ok, reason = llamacpp.available()
    if not ok:
        return {"error": reason}
    rows = {}
    for quant in ("Q8_0", "Q4_0"):
        result = llamacpp.llamacpp_decode(llamacpp.TEXT_DECODERS[model], quant, threads, tokens=decode_tokens,
                                          workdir=work / "gguf")
        if bandwidth and result.get("file_bytes"):
            result["roofline_fraction"] = result["tokens_per_s"] / (bandwidth * 1e9 / result["weight_bytes"])
        rows[f"llama.cpp-{quant}"] = result
    return rows


def check(models: list[str], threads: int, overrides: list[str]) -> None:
    """Known models and a valid target, before minutes of measuring bandwidth and exporting."""
    from vlsi_edge.deploy.targets import load_target

    known = ["toy", *ARCHITECTURES]
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; known: {', '.join(known)}")
    load_target("x86_64", [*BENCH_TARGET, f"threads={threads}", *overrides])


def run(out: Path, work: Path, models: list[str], threads: int, items: int, decode_tokens: int, command: str,
        overrides: list[str] = ()) -> dict:
    """Benchmark `models`; write runtime.json / .md / .png into out. `overrides` adjust the export target."""
    check(models, threads, list(overrides))
    start = time.perf_counter()
    # The roofline uses the copy bandwidth at the runtimes' own thread count.
    # 2 GB arrays: far beyond the last-level cache (480 MiB of L3 on this machine's CPU).
    measured = memory_bandwidth(size_mb=2048, threads=tuple(sorted({1, threads})))
    bandwidth = measured["by_threads"][str(threads)]["median_gb_s"]
    result = {"command": command, "threads": threads, "items": items, "decode_tokens": decode_tokens,
              "cpu_count": os.cpu_count(), "bandwidth": measured, "models": {}}
    for model in models:
        result["models"][model] = bench_model(model, work, threads, items, decode_tokens, bandwidth, list(overrides))
        if model in ARCHITECTURES:
            result["models"][model]["peer"] = peer_rows(model, work, threads, decode_tokens, bandwidth)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    atomic.write_json(out / "runtime.json", result)
    atomic.write_text(out / "runtime.md", markdown(result))
    atomic.write_figure(out / "runtime.png", plot(result))
    return result


LABELS = {"hf": "transformers eager fp32"}


def _range(stat: dict, fmt: str) -> str:
    return f"{stat['median']:{fmt}} ({stat['min']:{fmt}}–{stat['max']:{fmt}})"


def markdown(result: dict) -> str:
    lines = []
    for model, m in result["models"].items():
        lines += [f"### {model}", "",
                  "| runtime / scheme | encode ms | TTFT ms | decode tok/s | peak RSS MB | size MB | roofline |",
                  "|---|---|---|---|---|---|---|"]
        for row, r in m["rows"].items():
            if "error" in r:
                lines.append(f"| {LABELS.get(row, row)} | failed: {r['error'][:120]} | | | | | |")
                continue
            size = f"{r['bytes'] / 1e6:.1f}" if "bytes" in r else ""
            roof = f"{r['roofline_fraction']:.0%}" if "roofline_fraction" in r else ""
            lines.append(f"| {LABELS.get(row, row)} | {_range(r['encode_ms'], '.1f')} | {_range(r['first_token_ms'], '.1f')} | "
                         f"{_range(r['decode_tokens_per_s'], '.1f')} | {r['peak_rss_mb']:.0f} | {size} | {roof} |")
        for row, r in m.get("peer", {}).items():
            if row == "error" or "error" in r:
                lines.append(f"| llama.cpp | not run: {r if row == 'error' else r['error']} | | | | | |")
                continue
            roof = f"{r['roofline_fraction']:.0%}" if "roofline_fraction" in r else ""
            lines.append(f"| {row} (text decoder only) | | | {r['tokens_per_s']:.1f} | {r.get('peak_rss_mb', '')} | "
                         f"{r['file_bytes'] / 1e6:.1f} | {roof} |")
        lines.append("")
    if "smolvlm-256m" in result["models"]:
        lines += ["Our SmolVLM-256M-size ONNX files beside the official SmolVLM-256M ONNX exports:", "",
                  size_comparison(result)]
    bw = result["bandwidth"]
    lines += [f"Decode: {result['decode_tokens']} tokens after the prompt, {result['items']} items (median and range), "
              f"{result['threads']} threads. Roofline: decode tokens/s as a fraction of (copy bandwidth "
              f"{bw['by_threads'][str(result['threads'])]['median_gb_s']:.1f} GB/s at {result['threads']} threads) / "
              "(decoder weight bytes per token). "
              f"Wall time {result['wall_s']:.0f} s. Measured by `{result['command']}`.", ""]
    return "\n".join(lines)


def plot(result: dict):
    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        m = result["models"][model]
        names, values = [], []
        for row, r in {**m["rows"], **{k: v for k, v in m.get("peer", {}).items() if isinstance(v, dict)}}.items():
            if "error" in r:
                continue
            names.append(LABELS.get(row, row))
            values.append(r["decode_tokens_per_s"]["median"] if "decode_tokens_per_s" in r else r["tokens_per_s"])
        ax.barh(names, values, color="#2a9d8f")
        ax.invert_yaxis()
        ax.set_title(f"{model}: decode tokens/s ({result['threads']} threads)")
    fig.tight_layout()
    return fig


def size_comparison(result: dict) -> str:
    """Our SmolVLM-256M-size ONNX files beside the official SmolVLM-256M exports (MB)."""
    ours = result["models"].get("smolvlm-256m", {}).get("onnx_files_mb", {})
    official = OFFICIAL_SMOLVLM_256M_ONNX_MB
    lines = ["| file | scheme | ours (MB) | official SmolVLM-256M (MB) |", "|---|---|---|---|"]
    for graph, schemes in official.items():
        for scheme, mb in schemes.items():
            name = f"{graph}{'' if scheme == 'fp32' else '_' + scheme}.onnx"
            lines.append(f"| {graph} | {scheme} | {ours.get(name, '—')} | {mb} |")
    return "\n".join(lines) + "\n"
