"""Calibration inputs for GPTQ: what each fp32 ONNX graph is fed while the float programs answer real questions.

The recording runs in a worker process (`vlsi_edge.runtime.calibrate`, by module name: a stage never imports
another); this side picks the items and hands the feeds to onnxruntime's quantizer as a calibration reader.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from onnxruntime.quantization import CalibrationDataReader

from vlsi_edge.data import ShapesVQA, VQASample
from vlsi_edge.families import Family
from vlsi_edge.families.inputs import write_inputs
from vlsi_edge.worker import spawn_arrays


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
    """The feeds of the fp32 graphs in onnx_dir while they answer `samples`, by graph name, call by call."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        write_inputs(family, processor, samples, inputs)
        job = {"onnx_dir": str(onnx_dir), "inputs": str(inputs), "image_token_id": image_token_id, "eos_id": eos_id,
               "max_new_tokens": max_new_tokens, "image_grid": list(image_grid) if image_grid else None}
        arrays, error = spawn_arrays("vlsi_edge.runtime.calibrate", job)
    if error is not None:
        raise RuntimeError(f"recording GPTQ's calibration feeds failed: {error}")
    feeds: dict[str, dict[int, dict]] = {}
    for key, value in arrays.items():
        graph, call, name = key.split("/", 2)
        feeds.setdefault(graph, {}).setdefault(int(call), {})[name] = value
    return {graph: [calls[i] for i in sorted(calls)] for graph, calls in feeds.items()}


def calibration_items(source, target) -> list[VQASample]:
    """gptq's calibration questions: the first onnx.calibration_size of ShapesVQA's train split (never validated on),
    or of onnx.calibration_data."""
    n = target.onnx.calibration_size
    if target.onnx.calibration_data:
        from vlsi_edge.data.conversations import load_conversations

        items = load_conversations(target.onnx.calibration_data, sandbox=True)
        return [items[i] for i in range(min(n, len(items)))]
    train = ShapesVQA("train", size=n, config=source.data)
    return [train[i] for i in range(n)]
