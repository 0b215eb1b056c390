"""The llama.cpp peer: decode tokens/s of llama.cpp on a real-size random-weight Llama text decoder.

What the number means: the speed llama.cpp (through llama-cpp-python, built from source for this CPU)
decodes with a decoder of exactly our text models' shapes, so our runtimes can be put beside the
runtime most people reach for. Random weights are enough: decode cost depends on shapes and formats,
not values. Optional: needs the `peer` extra (`pip install -e .[peer]`); without it `available()`
says why and `llamacpp_decode` returns `available: False`.

Stages (one function each; files cached under `workdir`, so a re-run only times):

    build_llama     random `LlamaForCausalLM` from the dims (`torch.manual_seed`)
    write_gguf      F32 GGUF with the `gguf` package: llama.cpp's tensor names, Q/K rows permuted to
                    llama.cpp's RoPE layout, a small byte-level BPE padded to the vocab size
    quantize_gguf   F16 / Q8_0 / Q4_0 from the F32 file with llama.cpp's own quantizer
                    (`llama_model_quantize`, default mixture: see `tensor_types` in the result)
    time_decode     a short prompt, then N single-token `llama_decode` calls of fixed ids (no
                    sampling, so EOS cannot end a run early); median over repeats

Why not llama.cpp's `convert_hf_to_gguf.py`: the wheel does not ship it, and it only accepts BPE
tokenizers whose pre-tokenizer it recognises by hash, which an in-code tokenizer never matches. For a
Llama the conversion is a name map plus the Q/K permutation, which `tests/test_bench_peer.py` checks by
comparing llama.cpp's logits with transformers' on the F32 file.

Quantizing and timing run in a child process (`python -m vlsi_edge.benchmarks.llamacpp`) that imports
llama_cpp and numpy only: torch's OpenMP threads, spinning after the conversion, would otherwise
compete with llama.cpp's for the same cores, and a llama.cpp crash cannot take the caller down.

Install. `pip install -e .[peer]` compiles llama.cpp for this CPU (`-march=native`; ~6.5 min on 2
cores). On a CPU with AMX (Sapphire Rapids and later, as here) that build's AMX int8 kernels segfault
on every quantized model (upstream ggml-org/llama.cpp#20824), so `time_decode` then turns llama.cpp's
extra buffer types off, which also drops the REPACK kernels. For the fastest honest llama.cpp on such
a machine build without AMX instead:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON \
      -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
      pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36

Those flags are for Intel: on AMD Zen 4 (AVX-512 VNNI but no AVX-VNNI, the machine of 2026-12-04) that build
dies with "Illegal instruction" at the first decode. There, and on any CPU without AMX, build natively:
`CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from vlsi_edge.benchmarks.architectures import ARCHITECTURES
from vlsi_edge.worker import serve, spawn

log = logging.getLogger(__name__)

# Text decoders of the real-size architectures (SmolLM-135M / SmolLM2-360M shapes), as
# transformers.LlamaConfig keyword arguments: the same dimensions the runtime benchmark exports. The
# embedding is tied to the LM head here, as in SmolLM; a decode step reads that matrix once either way.
TEXT_DECODERS = {name: {**arch["text"], "tie_word_embeddings": True} for name, arch in ARCHITECTURES.items()}

# llama.cpp file types (enum llama_ftype); the F32 file is written here, the others quantized from it
QUANTS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}
_GGUF_VERSION = 2  # bump when write_gguf changes, so cached files are rebuilt
_PROMPT_TOKENS = 16


def available() -> tuple[bool, str]:
    """(True, versions) when llama-cpp-python and gguf import, else (False, the reason)."""
    try:
        import gguf  # noqa: F401
        import llama_cpp
    except Exception as e:  # ImportError, or an OSError from a broken shared library
        return False, f"{type(e).__name__}: {e} (install the optional extra: pip install -e .[peer])"
    from importlib.metadata import version

    return True, f"llama-cpp-python {llama_cpp.__version__}, gguf {version('gguf')}"


# ---------------------------------------------------------------- build and convert


def build_llama(dims: dict, seed: int = 0):
    """A random-weight `LlamaForCausalLM` with `dims` (LlamaConfig keyword arguments), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**dims)).eval()


def _byte_level_vocab(vocab_size: int) -> tuple[list[str], list[int], list[str], int]:
    """(tokens, token types, merges, eos id) of a small byte-level BPE, padded with unused tokens.

    llama.cpp's "gpt2" tokenizer needs the 256 byte symbols (it looks up the newline one at load)
    and a merge list; the padding gives the embedding its real row count.
    """
    import gguf

    from vlsi_edge.families import train_bpe

    texts = ["the quick brown fox jumps over the lazy dog", "What shape is in the image? A red circle."]
    tokenizer = train_bpe(texts * 8, (), vocab_size=min(vocab_size, 320))
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if len(by_id) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the byte-level base vocabulary ({len(by_id)})")
    specials = set(tokenizer.all_special_tokens)
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if by_id[i] in specials else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    return tokens, types, merges, tokenizer.convert_tokens_to_ids("<|endoftext|>")


def _permute_rows_for_rope(weight, n_heads: int):
    """HF stores each head's Q/K rows as [first halves | second halves] (rotate_half); llama.cpp's
    RoPE pairs adjacent rows. Interleave: (n_heads*head_dim, in) -> same shape, rows reordered."""
    out_features = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, out_features // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(model, dims: dict, path: Path) -> Path:
    """Write `model` (a transformers Llama) as an all-F32 GGUF llama.cpp loads as arch "llama"."""
    import gguf

    n_layers, n_heads, n_kv = dims["num_hidden_layers"], dims["num_attention_heads"], dims["num_key_value_heads"]
    head_dim = dims["hidden_size"] // n_heads
    tokens, types, merges, eos = _byte_level_vocab(dims["vocab_size"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name("vlsi_edge random Llama " + json.dumps(dims, sort_keys=True))
    writer.add_context_length(dims["max_position_embeddings"])
    writer.add_embedding_length(dims["hidden_size"])
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(dims["intermediate_size"])
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(dims["rms_norm_eps"])
    writer.add_rope_freq_base(dims["rope_theta"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(dims["vocab_size"])
    writer.add_file_type(QUANTS["F32"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the GPT-2 split regex, which tokenizers' ByteLevel uses
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and dims["tie_word_embeddings"]:
            continue  # llama.cpp reuses token_embd for the output when output.weight is absent
        data = tensor.detach().float()
        if name.endswith("q_proj.weight"):
            data = _permute_rows_for_rope(data, n_heads)
        elif name.endswith("k_proj.weight"):
            data = _permute_rows_for_rope(data, n_kv)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {name!r}")
        writer.add_tensor(gguf_name, data.numpy())

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def quantize_gguf(src: Path, dst: Path, quant: str) -> Path:
    """`src` (F32 GGUF) -> `dst` in `quant` with llama.cpp's quantizer and its default tensor mixture
    (for Q4_0 a tied embedding whose rows are not a multiple of 256 becomes Q8_0, as in shipped
    GGUFs). Runs in the worker process: the quantizer logs every tensor to stderr."""
    _run_worker({"op": "quantize", "src": str(src), "dst": str(dst), "quant": quant}, timeout_s=1800)
    return dst


def gguf_path(dims: dict, quant: str, workdir: Path, seed: int = 0) -> Path:
    """The cached GGUF of `dims` in `quant`, built (and the F32 source with it) if missing."""
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {sorted(QUANTS)}, got {quant!r}")
    key = hashlib.sha256(json.dumps([dims, seed, _GGUF_VERSION], sort_keys=True).encode()).hexdigest()[:12]
    workdir = Path(workdir)
    f32 = workdir / f"llama-{key}-F32.gguf"
    out = workdir / f"llama-{key}-{quant}.gguf"
    if out.exists():
        return out
    if not f32.exists():
        start = time.perf_counter()
        write_gguf(build_llama(dims, seed), dims, f32)
        log.info("wrote %s (%.0f MB) in %.1f s", f32, f32.stat().st_size / 1e6, time.perf_counter() - start)
    if quant != "F32":
        start = time.perf_counter()
        quantize_gguf(f32, out, quant)
        log.info("quantized %s (%.0f MB) in %.1f s", out, out.stat().st_size / 1e6, time.perf_counter() - start)
    return out


def tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of tensor data in a GGUF file, by tensor type ({"q4_0": ..., "f32": ...})."""
    import gguf

    by_type: dict[str, int] = {}
    for t in gguf.GGUFReader(path).tensors:
        name = t.tensor_type.name.lower()
        by_type[name] = by_type.get(name, 0) + int(t.n_bytes)
    return by_type


# ---------------------------------------------------------------- the worker process


def _run_worker(job: dict, timeout_s: float) -> dict:
    # threads caps ggml's OpenMP pool: no more threads than asked
    return spawn("vlsi_edge.benchmarks.llamacpp", job, threads=job.get("threads"), timeout_s=timeout_s)


def _decode_ids(count: int, vocab_size: int, offset: int = 0) -> list[int]:
    return [(7919 * (i + offset) + 13) % vocab_size for i in range(count)]


def _has_amx(llama_cpp) -> bool:
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def _quantize(src: str, dst: str, quant: str) -> dict:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    tmp = Path(dst).with_name(f".{Path(dst).name}.tmp")
    rc = llama_cpp.llama_model_quantize(src.encode(), str(tmp).encode(), params)
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize({src} -> {quant}) returned {rc}")
    os.replace(tmp, dst)
    return {"path": dst}


def time_decode(
    path: Path, threads: int, tokens: int, repeats: int, prompt_tokens: int = _PROMPT_TOKENS,
    extra_buffers: bool | None = None,
) -> dict:
    """Prefill `prompt_tokens` fixed ids, then time `tokens` single-token `llama_decode` calls
    (each computes the next-token logits, as real decoding does); `repeats` timed runs after one
    warm-up run. llama.cpp's C API directly: no sampling, no Python-side logits copies.

    `extra_buffers` is llama.cpp's `use_extra_bufts` (weights repacked for the CPU's fastest kernels:
    REPACK, and AMX where the build has it). None = on, unless the build uses AMX: its int8 kernels
    crash on this project's machines (segfault in ggml_backend_amx_mul_mat on every quantized
    model; upstream ggml-org/llama.cpp#20824, unfixed), so there the plain CPU kernels run. Build
    without AMX (see the module docstring) to keep REPACK. Run in a process without torch.
    """

    import llama_cpp

    amx = _has_amx(llama_cpp)
    if extra_buffers is None:
        extra_buffers = not amx
    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.use_extra_bufts = extra_buffers
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx = max(256, prompt_tokens + tokens + 16)
    ctx_params.n_batch = ctx_params.n_ubatch = max(prompt_tokens, 32)
    ctx_params.n_threads = ctx_params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    prompt = (llama_cpp.llama_token * prompt_tokens)(*_decode_ids(prompt_tokens, vocab))
    steps = [(llama_cpp.llama_token * 1)(t) for t in _decode_ids(tokens, vocab, offset=prompt_tokens)]

    def decode(batch_tokens, n: int) -> None:
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(batch_tokens, n))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    decode_rates, prefill_rates = [], []
    for r in range(repeats + 1):  # run 0 is a warm-up: pages the weights in, sizes the buffers
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        start = time.perf_counter()
        decode(prompt, prompt_tokens)
        llama_cpp.llama_synchronize(ctx)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for step in steps:
            decode(step, 1)
            llama_cpp.llama_synchronize(ctx)
        elapsed = time.perf_counter() - start
        if r:
            prefill_rates.append(prompt_tokens / prefill)
            decode_rates.append(tokens / elapsed)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {
        "tokens_per_s": statistics.median(decode_rates),
        "tokens_per_s_runs": decode_rates,
        "prefill_tokens_per_s": statistics.median(prefill_rates),
        "extra_buffers": extra_buffers,
        "n_ctx": ctx_params.n_ctx,
        "build_has_amx": amx,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


def llamacpp_decode(
    dims: dict,
    quant: str,
    threads: int,
    tokens: int = 64,
    repeats: int = 3,
    *,
    workdir: Path,
    seed: int = 0,
    extra_buffers: bool | None = None,
    timeout_s: float = 1800,
) -> dict:
    """Decode tokens/s of llama.cpp on a random Llama with `dims` in `quant`, on `threads` threads.

    Returns {"available", "reason", "quant", "runtime", "threads", "tokens", "repeats",
    "prompt_tokens", "tokens_per_s" (median decode), "tokens_per_s_runs", "prefill_tokens_per_s",
    "extra_buffers", "build_has_amx", "system_info", "file_bytes", "tensor_bytes" (by type),
    "weight_bytes" (all tensor data: what one decode step reads, with tied embeddings), "path"};
    only the first three keys when llama.cpp is not available.
    """
    ok, reason = available()
    result = {"available": ok, "reason": reason, "quant": quant}
    if not ok:
        return result
    path = gguf_path(dims, quant, Path(workdir), seed)
    by_type = tensor_bytes(path)
    job = {"op": "decode", "path": str(path), "threads": threads, "tokens": tokens, "repeats": repeats,
           "extra_buffers": extra_buffers}
    timing = _run_worker(job, timeout_s)
    return {
        **result,
        "runtime": reason.split(",")[0],
        "threads": threads,
        "tokens": tokens,
        "repeats": repeats,
        "prompt_tokens": _PROMPT_TOKENS,
        **timing,
        "file_bytes": path.stat().st_size,
        "tensor_bytes": by_type,
        "weight_bytes": sum(by_type.values()),
        "path": str(path),
    }


def _work(job: dict) -> dict:
    if job["op"] == "quantize":
        return _quantize(job["src"], job["dst"], job["quant"])
    return time_decode(Path(job["path"]), job["threads"], job["tokens"], job["repeats"],
                       extra_buffers=job["extra_buffers"])


if __name__ == "__main__":  # the worker: one job (quantize or time a decode) per process
    sys.exit(serve(_work))
