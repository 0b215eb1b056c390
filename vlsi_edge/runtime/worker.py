"""Run one program over a set of inputs in a fresh process; write its tokens, first logits and timings.

    spawn("vlsi_edge.runtime.worker", {"export_dir": ..., "artifact": ..., "inputs": INPUTS.npz,
                                       "out": OUT.npz, "threads": N, "max_new_tokens": N, "ignore_eos": False})

`artifact` is a manifest name ('executorch-8da4w', 'onnx-int8', ...) or 'float:<model dir>' for the float
student's eager parts through the same greedy loop (validation's reference). A process per artifact keeps
each one's peak memory its own (an ONNX worker never imports torch), and the files are checked against
manifest.json before anything is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vlsi_edge.memory import peak_rss_mb
from vlsi_edge.worker import serve


def read_inputs(path: str | Path):
    """Items written by `vlsi_edge.families.inputs.write_inputs`, read one at a time (so the peak
    memory is the runtime's, not the whole input set's) with numpy only: no torch in an ONNX worker."""
    with np.load(path) as data:
        for i in range(int(data["count"])):
            yield data[f"ids_{i}"], data[f"pixels_{i}"]


def load_runtime(export_dir: Path, artifact: str, threads: int, manifest: dict):
    if artifact.startswith("float:"):
        import torch

        from vlsi_edge.families.parts import split_model
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


def save(out: str | Path, results) -> None:
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


def run(job: dict) -> dict:
    from vlsi_edge.contracts.manifest import load_manifest
    from vlsi_edge.runtime.loop import greedy

    export_dir = Path(job["export_dir"])
    manifest = load_manifest(export_dir)
    runtime = load_runtime(export_dir, job["artifact"], job.get("threads", 0), manifest)
    eos = None if job.get("ignore_eos") else manifest["tokens"]["eos_ids"][0]
    grid = manifest["tokens"].get("image_grid")
    grid = tuple(grid) if grid else None
    max_new_tokens = job.get("max_new_tokens", 40)
    results = []
    for i, (ids, pixels) in enumerate(read_inputs(job["inputs"])):
        if i == 0:  # warm-up: first calls allocate and plan
            greedy(runtime, ids, pixels, eos, max_new_tokens, manifest["max_context_len"], grid)
        results.append(greedy(runtime, ids, pixels, eos, max_new_tokens, manifest["max_context_len"], grid))
    save(job["out"], results)
    return {"items": len(results)}


if __name__ == "__main__":
    sys.exit(serve(run))
