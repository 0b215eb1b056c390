"""transformers' own `generate` (eager PyTorch, dynamic cache) as a benchmark row, timed the way a user sees it.

    spawn("vlsi_edge.benchmarks.hf_baseline", {"model_dir": ..., "inputs": INPUTS.npz, "out": OUT.npz,
                                               "threads": N, "max_new_tokens": N, "ignore_eos": True})

Same inputs and output arrays as the program worker (`vlsi_edge.runtime.worker`). encode: the model's
image features; first token: generate(max_new_tokens=1); decode: the rest of generate(max_new_tokens=N)
over N-1 tokens (both include the prompt, so the difference is decoding).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from vlsi_edge.families.sources import family_of
from vlsi_edge.runtime.loop import Generation
from vlsi_edge.runtime.worker import read_inputs, save
from vlsi_edge.worker import serve


@torch.no_grad()
def run(job: dict) -> dict:
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    model_dir = Path(job["model_dir"])
    family = family_of(model_dir)
    model = family.load(model_dir, torch.float32).eval()
    n = job["max_new_tokens"]
    results = []
    for i, (ids, pixels) in enumerate(read_inputs(job["inputs"])):
        batch = {"input_ids": torch.from_numpy(ids), "pixel_values": torch.from_numpy(pixels)}
        for _ in range(2 if i == 0 else 1):  # the first item twice: warm-up
            t0 = time.perf_counter()
            model.get_image_features(pixel_values=batch["pixel_values"])
            t1 = time.perf_counter()
            first = model.generate(**batch, max_new_tokens=1, do_sample=False, output_logits=True,
                                   return_dict_in_generate=True)
            t2 = time.perf_counter()
            out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n if job.get("ignore_eos") else 0,
                                 do_sample=False)
            t3 = time.perf_counter()
        tokens = out[0, ids.shape[1]:].tolist()
        results.append(Generation(tokens, first.logits[0][0].numpy(), t1 - t0, t2 - t1, (t3 - t2) - (t2 - t1),
                                  len(tokens) - 1))
    save(job["out"], results)
    return {"items": len(results)}


if __name__ == "__main__":
    sys.exit(serve(run))
