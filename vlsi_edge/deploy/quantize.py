"""Quantization schemes for both runtimes, done by the libraries that own them.

ExecuTorch: torchao source transforms through ExecuTorch's own `quantize_model_` (the same configs its
LLM export uses), applied to the eager parts before `torch.export`; the XNNPACK partitioner then
lowers the int8-dynamic-activation linears, and ExecuTorch's quant-fusion pass turns the quantized
embedding into its `embedding_byte` / `embedding_4bit` kernels.

ONNX: onnxruntime's post-training tools on the fp32 graphs (`quantize_dynamic` for the 8-bit schemes,
`MatMulNBitsQuantizer` for int4), which is also how the hub's `_int8` / `_uint8` / `_quantized` / `_q4`
SmolVLM files are made (transformers.js' scripts/quantize.py). q8 (`_quantized`, transformers.js' WASM
default) follows that script's rule: uint8 weights for a graph with a Conv, int8 otherwise.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from vlsi_edge import atomic
from vlsi_edge.config import ConfigError
from vlsi_edge.contracts.quantize_aware import executorch_linear_config
from vlsi_edge.families.parts import Parts
from vlsi_edge.deploy.targets import ExecutorchTarget

log = logging.getLogger(__name__)

ONNX_SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "int4": "_q4",
               "q4f16": "_q4f16", "int4_cpu": "_q4_cpu"}
# by scheme; the transformers.js dtype is the scheme's name (int4: q4); int4_cpu is onnxruntime-CPU only (no dtype)
ONNX_GRAPHS = ("vision_encoder", "embed_tokens", "decoder_model_merged")


def executorch_recipe(scheme: str, target: ExecutorchTarget) -> dict[str, str | int | None]:
    """What each part gets under `scheme` (written to the manifest too)."""
    if scheme == "fp32":
        return {"decoder": None, "group_size": None, "method": None, "embedding": None, "image_encoder": None}
    bits4 = scheme == "8da4w"
    return {
        "decoder": scheme,
        "group_size": target.group_size if bits4 else 0,
        "method": target.int4_method if bits4 else "hqq",
        "embedding": target.embedding,
        "image_encoder": "8da8w" if target.image_encoder == "int8" else None,
    }


def linear_filter(group_size: int):
    """torchao filter_fn: every Linear, refusing one whose input size the group does not divide."""

    def accept(module: torch.nn.Module, name: str) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return False
        if group_size and module.in_features % group_size:
            raise ConfigError(f"executorch.group_size: {group_size} does not divide {name}'s input size "
                              f"{module.in_features}; use a divisor of it")
        return True

    return accept


def quantize_parts(parts: Parts, scheme: str, target: ExecutorchTarget) -> dict:
    """Quantize the eager parts in place (they share the model's weights: pass a copy). Returns the recipe."""
    from executorch.extension.llm.export.quantize import quantize_model_
    from torchao.quantization import quantize_

    recipe = executorch_recipe(scheme, target)
    if recipe["decoder"] is None:
        return recipe
    quantize_(parts.text_decoder, executorch_linear_config(scheme, recipe["group_size"], recipe["method"]),
              filter_fn=linear_filter(recipe["group_size"]))
    quantize_model_(
        parts.token_embedding,
        qembedding_config={"int8": "8w", "int4": "4w"}[recipe["embedding"]],
        qembedding_group_size=target.embedding_group_size,
    )
    if recipe["image_encoder"]:
        quantize_model_(parts.vision_encoder, qlinear_config=recipe["image_encoder"], qlinear_group_size=0)
    return recipe


def quantize_onnx(onnx_dir: str | Path, scheme: str, block_size: int, accuracy_level: int = 0,
                  method: str = "rtn", calibration: dict[str, list[dict]] | None = None, fused=None) -> dict[str, Path]:
    """Write the `scheme` variants of the three fp32 graphs beside them; returns their paths by graph name.
    accuracy_level: the int4 MatMulNBits compute type (0: unset); method: how int4 weights are chosen
    (rtn: symmetric round-to-nearest, hqq: HQQ's asymmetric fit, gptq: GPTQ on `calibration`, each graph's
    recorded feeds: vlsi_edge.deploy.calibration); fused: int4_cpu's fp32 decoder (`onnx_fusion.fused_decoder`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_dir = Path(onnx_dir)
    paths = {}
    for graph in ONNX_GRAPHS:
        source = onnx_dir / f"{graph}.onnx"
        out = onnx_dir / f"{graph}{ONNX_SUFFIX[scheme]}.onnx"
        if scheme in ("q8", "int8", "uint8"):
            unsigned = scheme == "uint8" or scheme == "q8" and _has_conv(source)
            with tempfile.TemporaryDirectory() as tmp:
                staged = Path(tmp) / out.name
                # Linear and embedding weights only: the patch-embedding Conv would become ConvInteger,
                # which onnxruntime runs for uint8 only, and it is a tiny share of the compute.
                quantize_dynamic(source, staged, weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
                                 per_channel=True, op_types_to_quantize=["MatMul", "Gather"])
                atomic.write_bytes(out, staged.read_bytes())
        elif scheme in ("int4", "q4f16"):
            model = _int4(onnx.load(source), block_size, accuracy_level, method, (calibration or {}).get(graph))
            atomic.write_bytes(out, (_half(model) if scheme == "q4f16" else model).SerializeToString())
        elif scheme == "int4_cpu":  # the fused decoder, int8 compute (accuracy_level 4): onnxruntime's CPU kernels only
            if graph == "decoder_model_merged" and fused is None:
                raise ValueError("int4_cpu needs the fused decoder (vlsi_edge.deploy.onnx_fusion.fused_decoder)")
            model = fused if graph == "decoder_model_merged" else onnx.load(source)
            model = _int4(model, block_size, 4, method, (calibration or {}).get(graph))
            atomic.write_bytes(out, model.SerializeToString())
        elif scheme == "fp16":
            atomic.write_bytes(out, _half(onnx.load(source)).SerializeToString())
        else:
            raise ValueError(f"ONNX scheme {scheme!r}: allowed {', '.join(s for s in ONNX_SUFFIX if s != 'fp32')} (fp32 is the export itself)")
        paths[graph] = out
    return paths


def _int4(model, block_size: int, accuracy_level: int, method: str, feeds: list[dict] | None = None):
    """MatMul and Gather weights to int4 blocks (MatMulNBits / GatherBlockQuantized)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        GPTQWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    from vlsi_edge.deploy.calibration import Feeds

    def rtn(ops: tuple[str, ...]):
        return DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level or None,
                                            op_types_to_quantize=ops, quant_axes=(("MatMul", 0), ("Gather", 1)))

    def run(model, config, **kwargs):
        quantizer = MatMulNBitsQuantizer(model, algo_config=config, **kwargs)
        quantizer.process()
        return quantizer.model.model

    matmul = any(n.op_type == "MatMul" for n in model.graph.node)
    if method == "rtn":
        return run(model, rtn(("MatMul", "Gather")))
    if method not in ("hqq", "gptq"):
        raise ValueError(f"onnx.int4_method {method!r}: allowed rtn, hqq, gptq")
    if matmul and method == "hqq":
        model = run(model, HQQWeightOnlyQuantConfig(block_size=block_size, bits=4, op_types_to_quantize=("MatMul",),
                                                    quant_axes=(("MatMul", 0),)))
    elif matmul:  # symmetric: onnxruntime's GPTQ packs asymmetric zero points wrongly when K / block is odd
        if not feeds:
            raise ValueError("onnx.int4_method gptq needs calibration feeds for every graph")
        inputs = {i.name for i in model.graph.input}  # the builder's decoder takes no position_ids
        feeds = [{k: v for k, v in feed.items() if k in inputs} for feed in feeds]
        model = run(model, GPTQWeightOnlyQuantConfig(calibration_data_reader=Feeds(feeds), op_types_to_quantize=("MatMul",)),
                    block_size=block_size, is_symmetric=True)
    model = run(model, rtn(("Gather",)))  # the embedding table: round to nearest (neither method quantizes a Gather)
    if accuracy_level:  # HQQ's and GPTQ's configs set no compute type
        for node in model.graph.node:
            if node.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in node.attribute):
                node.attribute.append(onnx.helper.make_attribute("accuracy_level", accuracy_level))
    return model


def _has_conv(path: Path) -> bool:
    import onnx

    return any(node.op_type == "Conv" for node in onnx.load(path, load_external_data=False).graph.node)


def _half(model):
    """fp16 weights and compute, fp32 inputs and outputs (past keys/values too): what transformers.js'
    own fp16 / q4f16 conversions make, so its runtime feeds them as it feeds the fp32 graphs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)
