"""Calibration inputs for GPTQ: what each fp32 ONNX graph is fed while the float programs answer real questions.

The fp32 graphs answer `samples` through the same greedy host loop validation uses; every call's feeds are
recorded per graph (the vision encoder's pixels, the embedding's ids, the decoder's prefill and decode-step
embeddings with their caches), so each MatMul sees the activations it will see in use.
"""

from __future__ import annotations

from pathlib import Path

from onnxruntime.quantization import CalibrationDataReader

from vlsi_edge.data import VQASample
from vlsi_edge.families import Family, build_batch
from vlsi_edge.runtime.loop import greedy
from vlsi_edge.runtime.onnx_runner import OnnxVLM


class _Recording:
    """An InferenceSession that keeps a copy of every feed it is given."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, outputs, feeds):
        self.feeds.append(dict(feeds))
        return self.session.run(outputs, feeds)


class Feeds(CalibrationDataReader):
    """onnxruntime's calibration reader over recorded feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.at = feeds, 0

    def get_next(self) -> dict | None:
        if self.at == len(self.feeds):
            return None
        self.at += 1
        return self.feeds[self.at - 1]


def record_feeds(onnx_dir: Path, family: Family, processor, samples: list[VQASample], image_token_id: int, eos_id: int,
                 max_new_tokens: int, image_grid: tuple[int, int] | None = None) -> dict[str, list[dict]]:
    """The feeds of the fp32 graphs in onnx_dir while they answer `samples`, by graph name."""
    vlm = OnnxVLM.from_dir(onnx_dir, image_token_id, image_grid=image_grid)
    vlm.vision, vlm.embed_tokens, vlm.decoder = (_Recording(s) for s in (vlm.vision, vlm.embed_tokens, vlm.decoder))
    for sample in samples:
        batch = build_batch(family, processor, [sample], with_answer=False)
        greedy(vlm, batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos_id, max_new_tokens, image_grid=image_grid)
    return {"vision_encoder": vlm.vision.feeds, "embed_tokens": vlm.embed_tokens.feeds,
            "decoder_model_merged": vlm.decoder.feeds}
