"""Quantization-aware VLsI: steps 2-3 train the student through the arithmetic of its int4 program.

`distill.quantize_aware` names the program (`distill.quantize_group_size` its group / block size):

    8da4w  ExecuTorch: every Linear of the text decoder (layers and lm_head) with int8 dynamic per-token
           activations and int4 symmetric weights per group. torchao's QAT, prepared from the very torchao
           config the exporter applies with `executorch.int4_method: rtn` (`executorch_linear_config`),
           so the fake and the real arithmetic are the same function.
    int4   onnxruntime MatMulNBits (`onnx.int4_method: rtn`): every Linear and the token embedding, which
           the ONNX export quantizes (vision tower, connector, decoder, lm_head, embed_tokens), int4 symmetric weights
           per block along the input dimension, scale = the block's largest-magnitude value / -8
           (onnxruntime's rule), fp32 activations.

Gradients pass straight through the rounding. The evaluations during training see the fake-quantized
student; the saved student is its float weights (`unprepare`): the program's float twin, which the
export quantizes back to the same numbers. `quantize_aware.json` in the student directory records the
scheme, and the exporter refuses other 4-bit schemes for it (vlsi_edge.contracts.quantize_aware).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlsi_edge.contracts.quantize_aware import SCHEMES, executorch_linear_config
from vlsi_edge.families import Family


def onnx_int4(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """`weight` as onnxruntime's symmetric MatMulNBits stores it, dequantized (blocks along the last dim,
    zero-padded): q = clamp(round(w / s), -8, 7) with s = the block's largest-magnitude value / -8."""
    *lead, k = weight.shape
    pad = -k % block_size
    blocks = F.pad(weight, (0, pad)).reshape(*lead, -1, block_size)
    peak = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))
    scale = torch.where(peak == 0, torch.ones_like(peak), peak / -8)
    fake = (torch.clamp(torch.round(blocks / scale), -8, 7) * scale).reshape(*lead, -1)[..., :k]
    return weight + (fake - weight).detach()  # straight-through


class Int4Linear(nn.Linear):
    """A Linear whose forward uses onnx_int4(weight); shares the Parameters of the Linear it replaces."""

    block_size: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, onnx_int4(self.weight, self.block_size), self.bias)


class Int4Embedding(nn.Embedding):
    """An Embedding whose rows are onnx_int4-quantized (MatMulNBits' Gather: blocks along the hidden dim)."""

    block_size: int

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, onnx_int4(self.weight, self.block_size), self.padding_idx)


def prepare(model: nn.Module, family: Family, scheme: str, group_size: int) -> None:
    """Make `model`'s forward run `scheme`'s fake quantization (in place; state_dict keys unchanged)."""
    if scheme == "8da4w":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        inside = {id(m) for m in [*family.decoder_layers(model).modules(), family.lm_head(model)]}
        config = QATConfig(executorch_linear_config("8da4w", group_size, "rtn"), step="prepare")
        quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and id(m) in inside)
    elif scheme == "int4":
        embedding = model.get_input_embeddings()  # the one Gather left in the graphs (position tables fold away)
        for m in [*(m for m in model.modules() if type(m) is nn.Linear), embedding]:  # every constant MatMul
            m.__class__ = Int4Linear if m is not embedding else Int4Embedding  # in place: Parameters and keys stay
            m.block_size = group_size
    else:
        raise ValueError(f"distill.quantize_aware: {scheme!r}; allowed: {', '.join(SCHEMES)}")


def unprepare(model: nn.Module) -> None:
    """Back to plain float modules (the same Parameters): what save_pretrained writes."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(step="convert"), filter_fn=None)  # FakeQuantizedLinear -> Linear
    for m in model.modules():
        if isinstance(m, Int4Linear):
            m.__class__ = nn.Linear
        elif isinstance(m, Int4Embedding):
            m.__class__ = nn.Embedding


def is_prepared(model: nn.Module) -> bool:
    from torchao.quantization.qat import FakeQuantizedLinear

    return any(isinstance(m, (FakeQuantizedLinear, Int4Linear, Int4Embedding)) for m in model.modules())
