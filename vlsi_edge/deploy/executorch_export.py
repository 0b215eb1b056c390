"""ExecuTorch export of the three parts into one .pte (quantize the parts first: deploy/quantize.py).

Stages: torch.export each part (the token sequence dimension dynamic) -> to_edge_transform_and_lower
with the XNNPACK partitioner and the LLM-runner metadata as constant methods -> to_executorch ->
serialise. The result runs in ExecuTorch's stock `MultimodalRunner` (the C++ runner behind the
Android `LlmModule`), which calls `vision_encoder`, `token_embedding`, `text_decoder(embeds, positions)`.
Qwen2-VL's decoder takes M-RoPE `position_ids` [3, 1, S] as a third input, which the stock runner
cannot pass: its .pte runs in our host loop (vlsi_edge.runtime), not the stock runner.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.export import Dim, export

from vlsi_edge import atomic
from vlsi_edge.deploy.xnnpack_rewrites import delegable
from vlsi_edge.deploy.executorch_decoder import CustomOpDecoder, attention_implementation
from vlsi_edge.families.parts import Parts

log = logging.getLogger(__name__)


def export_parts(parts: Parts, llm_ops: bool = True) -> dict:
    """torch.export programs of the three parts (static image, dynamic token count up to the cache); the
    text decoder on ExecuTorch's LLM ops (`executorch_decoder`) unless `llm_ops` is false. Each program is
    rewritten so XNNPACK takes its reshapes and norms (`xnnpack_rewrites`)."""
    seq = Dim("seq", min=1, max=parts.max_cache_len - 1)
    example_tokens = torch.zeros(1, 3, dtype=torch.long)
    hidden_size = parts.token_embedding.embed_tokens.embedding_dim
    # Embeddings first and positions second: the order the stock runner passes them in.
    decoder_inputs = {"inputs_embeds": torch.zeros(1, 3, hidden_size), "cache_position": torch.arange(3)}
    decoder_shapes = {"inputs_embeds": {1: seq}, "cache_position": {0: seq}}
    if parts.mrope_grid is not None:
        decoder_inputs["position_ids"] = torch.arange(3).repeat(3, 1, 1)
        decoder_shapes["position_ids"] = {2: seq}
    with eager_attention(parts.vision_encoder):
        vision = export(parts.vision_encoder, (parts.vision_encoder.example_pixel_values(),), strict=False)
    if llm_ops:  # CustomOpDecoder switches the attention to ExecuTorch's op itself
        decoder = export(CustomOpDecoder(parts.text_decoder).eval(), (), decoder_inputs, dynamic_shapes=decoder_shapes,
                         strict=True)
    else:
        with eager_attention(parts.text_decoder):
            decoder = export(parts.text_decoder, (), decoder_inputs, dynamic_shapes=decoder_shapes, strict=True)
    programs = {
        "vision_encoder": vision,
        "token_embedding": export(parts.token_embedding, (example_tokens,), dynamic_shapes=({1: seq},), strict=False),
        "text_decoder": decoder,
    }
    for name, program in programs.items():
        rewritten = delegable(program)
        log.debug("%s: rewritten for XNNPACK %s", name, rewritten)
    return programs


def eager_attention(module: torch.nn.Module):
    """Export `module`'s Hugging Face attention as plain matmul-softmax-matmul ("eager") instead of SDPA.

    SDPA decomposes with a "safe softmax" (eq / logical_not / any / where / full_like over the
    [heads, P, P] scores) that the XNNPACK partitioner does not take, so those ops ran in ExecuTorch's
    portable kernels on one thread: the SmolVLM-256M-size SigLIP tower at 512 px encoded in 1889 ms, and
    in 1002 ms with eager attention (same outputs; docs/BENCHMARKS.md). The text decoder too, where it is
    not on the LLM ops: on the toy student its graph left 553 ops outside XNNPACK in 90 islands with SDPA,
    444 in 82 with eager attention (and 260 in 42 on the LLM ops, `executorch_decoder`).
    """
    return attention_implementation(module, "eager")


def runner_metadata(parts: Parts, tokenizer, eos_token: str) -> dict:
    """The constant methods ExecuTorch's LLM runners read."""
    return {
        "get_max_seq_len": parts.max_cache_len - 1,
        "get_max_context_len": parts.max_cache_len,
        "get_vocab_size": len(tokenizer),
        "get_bos_id": parts.bos_token_id,
        "get_eos_ids": [tokenizer.convert_tokens_to_ids(eos_token)],
        "use_kv_cache": True,
        "enable_dynamic_shape": True,
    }


def export_executorch(parts: Parts, metadata: dict, path: str | Path, llm_ops: bool = True) -> int:
    """Lower to XNNPACK and write the .pte atomically; returns its size in bytes."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    programs = export_parts(parts, llm_ops)
    edge = to_edge_transform_and_lower(
        programs,
        partitioner=[XnnpackPartitioner()],
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
        constant_methods=metadata,
    )
    program = edge.to_executorch(
        ExecutorchBackendConfig(
            extract_delegate_segments=True,
            do_quant_fusion_and_const_prop=True,
            memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
        )
    )
    atomic.write_bytes(path, program.buffer)
    log.info("wrote %s (%d bytes)", path, len(program.buffer))
    return len(program.buffer)
