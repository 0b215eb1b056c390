"""Run one exported artifact over the validation inputs in a fresh process; write tokens, logits, timings.

    python -m vlsi_edge.validate.worker EXPORT_DIR ARTIFACT INPUTS.npz OUT.npz [--threads N] [--max-new-tokens N]

ARTIFACT is a manifest name ('executorch-8da4w', 'onnx-int8', ...) or 'float:<model dir>' for the
float student in PyTorch eager (the baseline row). A process per artifact keeps each one's peak
memory its own (an ONNX worker never imports torch), and the files are checked against manifest.json before anything is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from vlsi_edge.memory import peak_rss_mb


def read_inputs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """What `vlsi_edge.validate.inputs.write_inputs` wrote (numpy only: no torch in an ONNX worker)."""
    with np.load(path) as data:
        return [(data[f"ids_{i}"], data[f"pixels_{i}"]) for i in range(int(data["count"]))]


class EagerRuntime:
    """The float model's three eager parts behind the host-loop interface (the baseline's timings)."""

    def __init__(self, model_dir: Path, max_context_len: int, image_size: int):
        import torch

        from vlsi_edge.deploy.parts import split_model
        from vlsi_edge.families.sources import family_of

        family = family_of(model_dir)
        model = family.load(model_dir, torch.float32).eval()
        self.torch = torch
        self.parts = split_model(model, family, image_size, max_cache_len=max_context_len)
        self.image_token_id = self.parts.image_token_id
        self.image_grid = self.parts.mrope_grid
        self.vision_shape = tuple(self.parts.vision_encoder.example_pixel_values().shape)

    def encode_image(self, pixel_values):
        with self.torch.no_grad():
            return self.parts.vision_encoder(self.torch.from_numpy(pixel_values.reshape(self.vision_shape))).numpy()

    def embed(self, ids):
        with self.torch.no_grad():
            return self.parts.token_embedding(self.torch.from_numpy(ids)).numpy()

    def prefill(self, embeds, positions):
        return self.step(embeds, 0, positions)

    def step(self, embeds, cache_position, positions):
        from vlsi_edge.deploy.parts import decode

        with self.torch.no_grad():
            pos = None if positions is None else self.torch.from_numpy(positions)
            return decode(self.parts, self.torch.from_numpy(embeds), cache_position, pos)[0, -1].numpy()


def load_runtime(export_dir: Path, artifact: str, threads: int, manifest: dict):
    if artifact.startswith("float:"):
        return EagerRuntime(Path(artifact.removeprefix("float:")), manifest["max_context_len"], manifest["image"]["size"])
    runtime = manifest["artifacts"][artifact]["runtime"]
    if runtime == "onnx":
        from vlsi_edge.runtime.onnx_runner import OnnxVLM

        return OnnxVLM.from_manifest(export_dir, artifact, threads=threads)
    from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM

    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    return ExecuTorchVLM.from_manifest(export_dir, artifact)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlsi_edge.validate.worker")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("artifact")
    parser.add_argument("inputs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args(argv)
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from vlsi_edge.deploy.manifest import load_manifest
    from vlsi_edge.runtime.loop import greedy

    manifest = load_manifest(args.export_dir)
    runtime = load_runtime(args.export_dir, args.artifact, args.threads, manifest)
    if args.artifact.startswith("float:") and args.threads:
        runtime.torch.set_num_threads(args.threads)
    items = read_inputs(args.inputs)
    eos = manifest["tokens"]["eos_ids"][0]
    grid = manifest["tokens"].get("image_grid")
    context = manifest["max_context_len"]
    greedy(runtime, *items[0], eos, args.max_new_tokens, context, tuple(grid) if grid else None)  # warm-up
    results = [greedy(runtime, ids, pixels, eos, args.max_new_tokens, context, tuple(grid) if grid else None)
               for ids, pixels in items]
    lengths = np.array([len(r.tokens) for r in results])
    np.savez(
        args.out,
        tokens=np.array([t for r in results for t in r.tokens], np.int64),
        lengths=lengths,
        first_logits=np.stack([r.first_logits for r in results]),
        encode_s=np.array([r.encode_s for r in results]),
        first_token_s=np.array([r.first_token_s for r in results]),
        decode_s=np.array([r.decode_s for r in results]),
        decode_steps=np.array([r.decode_steps for r in results]),
        peak_rss_mb=np.array(peak_rss_mb()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
