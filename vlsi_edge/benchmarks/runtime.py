"""The runtime benchmark: transformers eager vs ExecuTorch vs onnxruntime (vs llama.cpp), same inputs, one run.

For each model (the toy student; real-size SmolVLM-256M / 500M architectures with random weights) it
exports every scheme once (cached under the work directory), then runs each program in its own worker
process (`vlsi_edge.runtime.worker`; transformers' row: `vlsi_edge.benchmarks.hf_baseline`) over the
same ShapesVQA images and questions, decoding a fixed number of tokens, and llama.cpp (the `peer` extra)
on the same text-decoder shapes. Rows are interleaved: `repeats` rounds, each running every row once in
a rotated order, so machine noise hits all rows alike. Per row: image-encode ms, time to first token,
decode tokens/s (median and range over the rounds of each round's median over the items), the ratio to
llama.cpp Q4_0's decode speed, peak RSS, file size, and decode speed as a fraction of the
memory-bandwidth roofline (decoder weight bytes read per token / measured copy bandwidth).
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
from vlsi_edge.benchmarks import llamacpp, ortgenai  # noqa: E402
from vlsi_edge.benchmarks.architectures import ARCHITECTURES, OFFICIAL_SMOLVLM_256M_ONNX_MB  # noqa: E402
from vlsi_edge.benchmarks.bandwidth import memory_bandwidth  # noqa: E402
from vlsi_edge.config import ConfigError  # noqa: E402

log = logging.getLogger(__name__)

MODELS = ("toy", *ARCHITECTURES)
ROWS = ("hf", "executorch-fp32", "executorch-8da8w", "executorch-8da4w", "onnx-fp32", "onnx-int8", "onnx-int4",
        "onnx-int4_cpu")
BENCH_TARGET = ["executorch.schemes=[fp32, 8da8w, 8da4w]", "onnx.schemes=[fp32, int8, int4, int4_cpu]",
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


def item_medians(run: dict) -> dict:
    """One pass of a program over the items: the median of each stage."""
    return {"encode_ms": float(np.median(run["encode_s"])) * 1000,
            "first_token_ms": float(np.median(run["first_token_s"])) * 1000,
            "decode_tokens_per_s": float(np.median(run["decode_steps"] / run["decode_s"])),
            "peak_rss_mb": float(run["peak_rss_mb"])}


def across_repeats(passes: list[dict]) -> dict:
    """Median and range over the interleaved repeats of each stage's per-pass median."""
    row = {}
    for key in ("encode_ms", "first_token_ms", "decode_tokens_per_s"):
        values = [p[key] for p in passes if key in p]
        if values:
            row[key] = {"median": float(np.median(values)), "min": min(values), "max": max(values), "runs": values}
    if any("peak_rss_mb" in p for p in passes):  # the peers' workers do not measure it
        row["peak_rss_mb"] = round(max(p["peak_rss_mb"] for p in passes if "peak_rss_mb" in p), 1)
    return row


def bench_model(model: str, work: Path, threads: int, items: int, decode_tokens: int, repeats: int,
                bandwidth: float | None, overrides: list[str]) -> dict:
    """Every row of `model`, interleaved: `repeats` rounds, each running every row once (our programs over
    `items` items, llama.cpp over the same number of decode steps), the order rotated each round, so a
    noisy minute slows every row alike rather than one."""
    from vlsi_edge.contracts.manifest import load_manifest

    start = time.perf_counter()
    model_dir, exports = prepare(model, work, threads, overrides)
    prepared_s = time.perf_counter() - start
    manifests = {name: load_manifest(d) for name, d in exports.items()}
    owner = {row: name for name, m in manifests.items() for row in m["artifacts"]}
    order = [r for r in ROWS if r == "hf" or r in owner]
    peer_error = None
    if model in ARCHITECTURES:
        ok, reason = llamacpp.available()
        order += [f"llama.cpp-{q}" for q in PEER_QUANTS] if ok else []
        peer_error = None if ok else reason
        if ortgenai.available()[0]:
            order.append(GENAI_ROW)
    passes: dict[str, list[dict]] = {row: [] for row in order}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        write_inputs(model_dir, items, inputs)
        for repeat, rotated in enumerate(rounds(order, repeats)):
            for row in rotated:
                if row in errors:
                    continue
                measured, error = one_pass(row, model, model_dir, exports.get(owner.get(row, "")), inputs, threads,
                                           decode_tokens, work)
                if error:
                    errors[row] = error
                    log.warning("%s %s failed: %s", model, row, error)
                else:
                    passes[row].append(measured)
                    log.info("%s %s repeat %d: %s", model, row, repeat + 1, measured)
    rows = {}
    for row in order:
        if row in errors:
            rows[row] = {"error": errors[row]}
            continue
        rows[row] = {**across_repeats(passes[row]), **sizes(row, model, model_dir, manifests.get(owner.get(row, "")),
                                                             passes[row], bandwidth)}
    add_ratios(rows)
    onnx_files = sorted((exports["onnx"] / "onnx").glob("*.onnx")) if "onnx" in exports else []
    return {"model": model, "prepare_s": round(prepared_s, 1), "rows": rows, "peer_error": peer_error,
            "export_seconds": {row: manifests[owner[row]]["export_seconds"][row] for row in order if row in owner},
            "max_context_len": next(iter(manifests.values()))["max_context_len"] if manifests else None,
            "onnx_files_mb": {f.name: round(f.stat().st_size / 1e6, 1) for f in onnx_files}}


PEER_QUANTS = ("Q8_0", "Q4_0")  # the last one is what every row's speed is compared with
GENAI_ROW = "onnxruntime-genai-int4"


def rounds(order: list[str], repeats: int) -> list[list[str]]:
    """The rows' order in each round: rotated by one each round, so no row always runs first (or last)."""
    return [order[r % len(order):] + order[:r % len(order)] for r in range(repeats)]


def add_ratios(rows: dict) -> None:
    """Each row's median decode speed over llama.cpp Q4_0's (`vs_llamacpp_q4_0`), where both exist."""
    reference = rows.get(f"llama.cpp-{PEER_QUANTS[-1]}", {}).get("decode_tokens_per_s", {}).get("median")
    for r in rows.values():
        if reference and "decode_tokens_per_s" in r:
            r["vs_llamacpp_q4_0"] = r["decode_tokens_per_s"]["median"] / reference


def one_pass(row: str, model: str, model_dir: Path, export_dir: Path | None, inputs: Path, threads: int,
             decode_tokens: int, work: Path) -> tuple[dict | None, str | None]:
    """One measurement of `row`: (stage medians, None) or (None, why it failed)."""
    from vlsi_edge.validate.run import run_program

    if row == GENAI_ROW:
        result = ortgenai.ortgenai_decode(llamacpp.TEXT_DECODERS[model], threads, tokens=decode_tokens, repeats=1,
                                          workdir=work / "genai")
        return {"decode_tokens_per_s": result["tokens_per_s"], "file_bytes": result["file_bytes"],
                "weight_bytes": result["file_bytes"]}, None
    if row.startswith("llama.cpp-"):
        result = llamacpp.llamacpp_decode(llamacpp.TEXT_DECODERS[model], row.split("-", 1)[1], threads,
                                          tokens=decode_tokens, repeats=1, workdir=work / "gguf")
        if "tokens_per_s" not in result:
            return None, result.get("reason", "llama.cpp failed")
        return {"decode_tokens_per_s": result["tokens_per_s"], "file_bytes": result["file_bytes"], "weight_bytes": result["weight_bytes"],
                "n_ctx": result.get("n_ctx"), "extra_buffers": result.get("extra_buffers")}, None
    if row == "hf":
        run, error = hf_row(model_dir, inputs, threads, decode_tokens)
    else:
        run, error = run_program(export_dir, row, inputs, threads, decode_tokens, ignore_eos=True)
    return (None, error) if error else (item_medians(run), None)


def sizes(row: str, model: str, model_dir: Path, manifest: dict | None, passes: list[dict],
          bandwidth: float | None) -> dict:
    """File size, weight bytes a decode step reads, and the roofline fraction of the median speed."""
    out = {}
    if row.startswith("llama.cpp-") or row == GENAI_ROW:
        out = {"bytes": passes[0]["file_bytes"], "decoder_bytes_per_token": passes[0]["weight_bytes"],
               "peer": row.split("-")[0] + " (text decoder only)"}
        if "extra_buffers" in passes[0]:
            out["extra_buffers"] = passes[0]["extra_buffers"]
    else:
        if row != "hf":
            out["bytes"] = sum(f["bytes"] for f in manifest["artifacts"][row]["files"].values())
        out["decoder_bytes_per_token"] = decoder_bytes_per_token(model_dir, manifest, row)
    if bandwidth and passes:
        roofline = bandwidth * 1e9 / out["decoder_bytes_per_token"]
        out["roofline_tokens_per_s"] = roofline
        out["roofline_fraction"] = float(np.median([p["decode_tokens_per_s"] for p in passes])) / roofline
    return out


def hf_row(model_dir: Path, inputs: Path, threads: int, decode_tokens: int) -> tuple[dict | None, str | None]:
    """transformers' generate over the same inputs in its own worker: (arrays, None) or (None, error)."""
    from vlsi_edge.worker import spawn_arrays

    job = {"model_dir": str(model_dir), "inputs": str(inputs), "threads": threads, "max_new_tokens": decode_tokens,
           "ignore_eos": True}
    return spawn_arrays("vlsi_edge.benchmarks.hf_baseline", job, threads=threads or None)


def check(models: list[str], threads: int, overrides: list[str]) -> None:
    """Known models and a valid target, before minutes of measuring bandwidth and exporting."""
    from vlsi_edge.deploy.targets import load_target

    known = ["toy", *ARCHITECTURES]
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; known: {', '.join(known)}")
    load_target("x86_64", [*BENCH_TARGET, f"threads={threads}", *overrides])


def run(out: Path, work: Path, models: list[str], threads: int, items: int, decode_tokens: int, command: str,
        overrides: list[str] = (), repeats: int = 5) -> dict:
    """Benchmark `models`; write runtime.json / .md / .png into out. `overrides` adjust the export target."""
    check(models, threads, list(overrides))
    start = time.perf_counter()
    # The roofline uses the copy bandwidth at the runtimes' own thread count.
    # 2 GB arrays: far beyond the last-level cache (480 MiB of L3 on this machine's CPU).
    measured = memory_bandwidth(size_mb=2048, threads=tuple(sorted({1, threads})))
    bandwidth = measured["by_threads"][str(threads)]["median_gb_s"]
    result = {"command": command, "threads": threads, "items": items, "decode_tokens": decode_tokens,
              "repeats": repeats, "cpu_count": os.cpu_count(), "bandwidth": measured, "models": {}}
    for model in models:
        result["models"][model] = bench_model(model, work, threads, items, decode_tokens, repeats, bandwidth,
                                              list(overrides))
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
                  "| runtime / scheme | encode ms | TTFT ms | decode tok/s | x llama.cpp Q4_0 | peak RSS MB | size MB | "
                  "roofline |", "|---|---|---|---|---|---|---|---|"]
        for row, r in m["rows"].items():
            name = LABELS.get(row, row) + (" (text decoder only)" if "peer" in r else "")
            if "error" in r:
                lines.append(f"| {name} | failed: {r['error'][:120]} | | | | | | |")
                continue
            cells = [_range(r[k], ".1f") if k in r else "" for k in ("encode_ms", "first_token_ms", "decode_tokens_per_s")]
            ratio = f"{r['vs_llamacpp_q4_0']:.2f}" if "vs_llamacpp_q4_0" in r else ""
            size = f"{r['bytes'] / 1e6:.1f}" if "bytes" in r else ""
            rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else ""
            roof = f"{r['roofline_fraction']:.0%}" if "roofline_fraction" in r else ""
            lines.append(f"| {name} | {' | '.join(cells)} | {ratio} | {rss} | {size} | {roof} |")
        if m.get("peer_error"):
            lines.append(f"| llama.cpp | not run: {m['peer_error']} | | | | | | |")
        lines.append("")
    if "smolvlm-256m" in result["models"]:
        lines += ["Our SmolVLM-256M-size ONNX files beside the official SmolVLM-256M ONNX exports:", "",
                  size_comparison(result)]
    bw = result["bandwidth"]
    contexts = sorted({m["max_context_len"] for m in result["models"].values() if m.get("max_context_len")})
    lines += [f"{result['repeats']} interleaved repeats (every row once per round, the order rotated each round); a "
              f"row's cell is the median over the repeats (range in brackets) of its per-repeat median over "
              f"{result['items']} items, each decoding {result['decode_tokens']} tokens after the prompt (llama.cpp: "
              f"the same number of single-token decode steps after a 16-token prompt, n_ctx 256). "
              f"{result['threads']} threads everywhere. KV cache: our programs' static cache of "
              f"{', '.join(map(str, contexts)) or '?'} positions. Roofline: decode tokens/s as a fraction of (copy "
              f"bandwidth {bw['by_threads'][str(result['threads'])]['median_gb_s']:.1f} GB/s at {result['threads']} "
              "threads) / (decoder weight bytes per token). "
              f"Wall time {result['wall_s']:.0f} s. Measured by `{result['command']}`.", ""]
    return "\n".join(lines)


def plot(result: dict):
    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = {row: r for row, r in result["models"][model]["rows"].items() if "decode_tokens_per_s" in r}
        names = [LABELS.get(row, row) for row in rows]
        medians = [r["decode_tokens_per_s"]["median"] for r in rows.values()]
        low = [m - r["decode_tokens_per_s"]["min"] for m, r in zip(medians, rows.values())]
        high = [r["decode_tokens_per_s"]["max"] - m for m, r in zip(medians, rows.values())]
        ax.barh(names, medians, xerr=[low, high], color="#2a9d8f")
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
