"""Worker: record what each fp32 ONNX graph is fed while it answers calibration items (for GPTQ).

    spawn_arrays("vlsi_edge.runtime.calibrate", {"onnx_dir": ..., "inputs": INPUTS.npz, "image_token_id": ...,
                 "eos_id": ..., "max_new_tokens": ..., "image_grid": null})

The graphs answer each item through the same greedy host loop validation uses; every call's feeds are saved as
`<graph>/<call>/<input name>` (the vision encoder's pixels, the embedding's ids, the decoder's prefill and
decode-step embeddings with their caches), so each MatMul is calibrated on the activations it sees in use.
"""

from __future__ import annotations

import sys

import numpy as np

from vlsi_edge.runtime.loop import greedy
from vlsi_edge.runtime.onnx_runner import OnnxVLM
from vlsi_edge.runtime.worker import read_inputs
from vlsi_edge.worker import serve

GRAPHS = {"vision": "vision_encoder", "embed_tokens": "embed_tokens", "decoder": "decoder_model_merged"}


class _Recording:
    """An InferenceSession that keeps a copy of every feed it is given."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, outputs, feeds):
        self.feeds.append(dict(feeds))
        return self.session.run(outputs, feeds)


def handle(job: dict) -> dict:
    grid = tuple(job["image_grid"]) if job.get("image_grid") else None
    vlm = OnnxVLM.from_dir(job["onnx_dir"], job["image_token_id"], image_grid=grid)
    for attr in GRAPHS:
        setattr(vlm, attr, _Recording(getattr(vlm, attr)))
    for ids, pixels in read_inputs(job["inputs"]):
        greedy(vlm, ids, pixels, job["eos_id"], job["max_new_tokens"], image_grid=grid)
    arrays = {f"{graph}/{i}/{name}": value for attr, graph in GRAPHS.items()
              for i, feed in enumerate(getattr(vlm, attr).feeds) for name, value in feed.items()}
    np.savez(job["out"], **arrays)
    return {"calls": {graph: len(getattr(vlm, attr).feeds) for attr, graph in GRAPHS.items()}}


if __name__ == "__main__":
    sys.exit(serve(handle))
