"""The onnxruntime-genai peer: decode tokens/s of onnxruntime-genai's own CPU int4 decoder, same shapes.

onnxruntime-genai's model builder writes the decoders Microsoft ships for CPUs: int4 MatMulNBits with
int8 compute (accuracy_level 4), fused SkipSimplifiedLayerNormalization, RotaryEmbedding and
GroupQueryAttention over a KV buffer it owns, run by its C++ generation loop. It is what onnxruntime can
do for this text decoder at best, beside llama.cpp (`llamacpp.py`) and our own ONNX programs (which keep
transformers.js' decoder layout). Random weights: decode cost depends on shapes and formats.

Stages (files cached under `workdir`, so a re-run only times):

    build_hf      random `LlamaForCausalLM` with the dims (`llamacpp.build_llama`), saved with the toy
                  student's tokenizer (the builder reads a tokenizer for the special-token ids)
    build_genai   `python -m onnxruntime_genai.models.builder -p int4 -e cpu` on it
    time_decode   a 16-token prompt, then N `generate_next_token` calls (greedy, no EOS: the ids are
                  fixed in the prompt, and N is far below the context); median over repeats

A core dependency now (its builder also writes the onnx-int4_cpu decoder: deploy/onnx_fusion.py); `available()` says why
it does not import where the install is broken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vlsi_edge.worker import serve, spawn

log = logging.getLogger(__name__)

_PROMPT_TOKENS = 16
_VERSION = 1  # bump when the build changes, so cached models are rebuilt


def available() -> tuple[bool, str]:
    """(True, version) when onnxruntime-genai imports, else (False, the reason)."""
    try:
        import onnxruntime_genai
    except Exception as e:  # ImportError, or an OSError from its shared library
        return False, f"{type(e).__name__}: {e} (it is a dependency of vlsi_edge: pip install -e .)"
    return True, f"onnxruntime-genai {onnxruntime_genai.__version__}"


def genai_path(dims: dict, workdir: Path, seed: int = 0) -> Path:
    """The cached onnxruntime-genai int4 CPU model of `dims`, built if missing."""
    key = hashlib.sha256(json.dumps([dims, seed, _VERSION], sort_keys=True).encode()).hexdigest()[:12]
    out = Path(workdir) / f"genai-{key}-int4-cpu"
    if (out / "genai_config.json").is_file():
        return out
    from vlsi_edge.benchmarks.llamacpp import build_llama
    from vlsi_edge.families.sources import zoo_path

    hf = Path(workdir) / f"genai-{key}-hf"
    start = time.perf_counter()
    build_llama(dims, seed).save_pretrained(hf)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(zoo_path("student") / name, hf / name)
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(staging),
                           "-p", "int4", "-e", "cpu", "-c", str(Path(workdir) / "genai-cache")],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0 or not (staging / "genai_config.json").is_file():
        raise RuntimeError(f"onnxruntime-genai's builder failed: {proc.stderr.strip().splitlines()[-3:]}")
    staging.rename(out)
    shutil.rmtree(hf)
    log.info("built %s in %.0f s", out, time.perf_counter() - start)
    return out


def time_decode(path: Path, threads: int, tokens: int, repeats: int, prompt_tokens: int = _PROMPT_TOKENS) -> dict:
    """Prefill `prompt_tokens` fixed ids, then time `tokens` single-token steps; `repeats` timed runs after
    one warm-up run. Runs in a process of its own (no torch)."""
    import onnxruntime_genai as og

    config = og.Config(str(path))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads,
                                                                          "inter_op_num_threads": 1}}}}))
    model = og.Model(config)
    vocab = json.loads((path / "genai_config.json").read_text())["model"]["vocab_size"]
    prompt = [(7919 * i + 13) % vocab for i in range(prompt_tokens)]
    decode_rates, prefill_rates = [], []
    for r in range(repeats + 1):  # run 0 is a warm-up
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=prompt_tokens + tokens + 1, min_length=0)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(prompt)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(tokens):
            generator.generate_next_token()
        elapsed = time.perf_counter() - start
        if r:
            prefill_rates.append(prompt_tokens / prefill)
            decode_rates.append(tokens / elapsed)
        del generator
    return {"tokens_per_s": statistics.median(decode_rates), "tokens_per_s_runs": decode_rates,
            "prefill_tokens_per_s": statistics.median(prefill_rates)}


def ortgenai_decode(dims: dict, threads: int, tokens: int = 64, repeats: int = 3, *, workdir: Path,
                    seed: int = 0, timeout_s: float = 1800) -> dict:
    """Decode tokens/s of onnxruntime-genai's int4 CPU build of a random Llama with `dims` on `threads` threads.
    Returns {"available", "reason", "runtime", "threads", "tokens", "repeats", "tokens_per_s",
    "tokens_per_s_runs", "prefill_tokens_per_s", "file_bytes" (the ONNX weights: what a step reads), "path"};
    only the first two keys when onnxruntime-genai is not available."""
    ok, reason = available()
    result = {"available": ok, "reason": reason}
    if not ok:
        return result
    path = genai_path(dims, Path(workdir), seed)
    job = {"path": str(path), "threads": threads, "tokens": tokens, "repeats": repeats}
    timing = spawn("vlsi_edge.benchmarks.ortgenai", job, threads=threads, timeout_s=timeout_s)
    weights = sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".onnx", ".data"))
    return {**result, "runtime": reason, "threads": threads, "tokens": tokens, "repeats": repeats, **timing,
            "file_bytes": weights, "path": str(path)}


def _work(job: dict) -> dict:
    return time_decode(Path(job["path"]), job["threads"], job["tokens"], job["repeats"])


if __name__ == "__main__":  # the worker: time one model's decode per process
    sys.exit(serve(_work))
