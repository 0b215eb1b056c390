"""Run one exported artifact over the validation inputs in a fresh process; write tokens, logits, timings.

    python -m vlsi_edge.validate.worker EXPORT_DIR ARTIFACT INPUTS.npz OUT.npz [--threads N] [--max-new-tokens N]

ARTIFACT is a manifest name ('executorch-8da4w', 'onnx-int8', ...), 'float:<model dir>' for the
float student's eager parts through the same loop (the validation baseline), or 'hf:<model dir>' for
transformers' own `generate` (the benchmark baseline). A process per artifact keeps each one's peak
memory its own (an ONNX worker never imports torch), and the files are checked against manifest.json before anything is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from vlsi_edge.memory import peak_rss_mb


def read_inputs(path: Path):
    """Items written by `vlsi_edge.validate.inputs.write_inputs`, read one at a time (so the peak
    memory is the runtime's, not the whole input set's) with numpy only: no torch in an ONNX worker."""
    with np.load(path) as data:
        for i in range(int(data["count"])):
            yield data[f"ids_{i}"], data[f"pixels_{i}"]


def load_runtime(export_dir: Path, artifact: str, threads: int, manifest: dict):
    if artifact.startswith("float:"):
        import torch

        from vlsi_edge.deploy.parts import split_model
        from vlsi_edge.families.sources import family_of
        from vlsi_edge.runtime.eager import EagerRuntime

        model_dir = Path(artifact.removeprefix("float:"))
        family = family_of(model_dir)
        model = family.load(model_dir, torch.float32).eval()
        if threads:
            torch.set_num_threads(threads)
        return EagerRuntime(split_model(model, family, manifest["image"]["size"], manifest["max_context_len"]))
    runtime = manifest["artifacts"][artifact]["runtime"]
    if runtime == "onnx":
        from vlsi_edge.runtime.onnx_runner import OnnxVLM

        return OnnxVLM.from_manifest(export_dir, artifact, threads=threads)
    from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM

    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    return ExecuTorchVLM.from_manifest(export_dir, artifact)


def save(out: Path, results) -> None:
    np.savez(
        out,
        tokens=np.array([t for r in results for t in r.tokens], np.int64),
        lengths=np.array([len(r.tokens) for r in results]),
        first_logits=np.stack([r.first_logits for r in results]),
        encode_s=np.array([r.encode_s for r in results]),
        first_token_s=np.array([r.first_token_s for r in results]),
        decode_s=np.array([r.decode_s for r in results]),
        decode_steps=np.array([r.decode_steps for r in results]),
        peak_rss_mb=np.array(peak_rss_mb()),
    )


def hf_generate(model_dir: Path, args) -> list:
    """transformers' own `generate` (eager PyTorch, dynamic cache), timed the way a user would see it.

    encode: the model's image features; first token: generate(max_new_tokens=1); decode: the rest of
    generate(max_new_tokens=N) over N-1 tokens (both include the prompt, so the difference is decoding).
    """
    import time

    import torch

    from vlsi_edge.families.sources import family_of
    from vlsi_edge.runtime.loop import Generation

    if args.threads:
        torch.set_num_threads(args.threads)
    family = family_of(model_dir)
    model = family.load(model_dir, torch.float32).eval()
    n = args.max_new_tokens
    results = []
    with torch.no_grad():
        for i, (ids, pixels) in enumerate(read_inputs(args.inputs)):
            batch = {"input_ids": torch.from_numpy(ids), "pixel_values": torch.from_numpy(pixels)}
            for _ in range(2 if i == 0 else 1):  # the first item twice: warm-up
                t0 = time.perf_counter()
                model.model.get_image_features(pixel_values=batch["pixel_values"])
                t1 = time.perf_counter()
                first = model.generate(**batch, max_new_tokens=1, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True)
                t2 = time.perf_counter()
                out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n if args.ignore_eos else 0,
                                     do_sample=False)
                t3 = time.perf_counter()
            tokens = out[0, ids.shape[1]:].tolist()
            results.append(Generation(tokens, first.logits[0][0].numpy(), t1 - t0, t2 - t1, (t3 - t2) - (t2 - t1),
                                      len(tokens) - 1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlsi_edge.validate.worker")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("artifact")
    parser.add_argument("inputs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--ignore-eos", action="store_true",
                        help="decode exactly --max-new-tokens tokens (benchmarks on random weights)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from vlsi_edge.contracts.manifest import load_manifest
    from vlsi_edge.runtime.loop import greedy

    manifest = load_manifest(args.export_dir)
    if args.artifact.startswith("hf:"):
        results = hf_generate(Path(args.artifact.removeprefix("hf:")), args)
        save(args.out, results)
        return 0
    runtime = load_runtime(args.export_dir, args.artifact, args.threads, manifest)
    eos = None if args.ignore_eos else manifest["tokens"]["eos_ids"][0]
    grid = manifest["tokens"].get("image_grid")
    grid = tuple(grid) if grid else None
    results = []
    for i, (ids, pixels) in enumerate(read_inputs(args.inputs)):
        if i == 0:  # warm-up: first calls allocate and plan
            greedy(runtime, ids, pixels, eos, args.max_new_tokens, manifest["max_context_len"], grid)
        results.append(greedy(runtime, ids, pixels, eos, args.max_new_tokens, manifest["max_context_len"], grid))
    save(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
