"""Host generation loops over exported programs (work in progress)."""

from vlsi_edge.runtime.onnx_runner import OnnxVLM

__all__ = ["OnnxVLM"]
