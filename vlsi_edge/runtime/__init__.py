"""Host generation loops over exported programs: onnxruntime and ExecuTorch, one greedy loop."""

from vlsi_edge.runtime.loop import Generation, greedy
from vlsi_edge.runtime.onnx_runner import OnnxVLM

__all__ = ["Generation", "OnnxVLM", "greedy"]
