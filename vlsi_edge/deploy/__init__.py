"""Deployment: split a VLM into runtime programs, quantize, export, describe them in a manifest.

    parts.py              the three programs (vision_encoder, token_embedding, text_decoder) as eager modules
    executorch_export.py  .pte with XNNPACK and the LLM-runner metadata methods
    onnx_export.py        onnx/ graphs in the hub's SmolVLM layout (past keys/values in and out)
    quantize.py           ExecuTorch (torchao) and onnxruntime quantization schemes
    targets.py            export/<target>.yaml profiles and their gates
    hf_files.py           config / processor / tokenizer files beside onnx/ (what transformers.js loads)
    manifest.py           manifest.json: files with sha256, how to feed the model, validation results
    pipeline.py           one target end to end (what `python -m vlsi_edge.export` runs)

Submodules are imported directly (no re-exports here), so reading a target or a manifest does not
import torch.
"""
