"""onnxruntime's fused operators in the decoder graph, for the CPU-only int4 file (`onnx-int4_cpu`).

The dynamo-exported decoder spells each RMSNorm as Pow / ReduceMean / Add / Sqrt / Reciprocal / Mul, and the
residual add before it separately. onnxruntime's transformer optimizer (`onnxruntime.transformers.optimizer`)
fuses them into `SimplifiedLayerNormalization` / `SkipSimplifiedLayerNormalization` (com.microsoft), one
kernel each. Rotary embedding and attention are left as they are: the optimizer's RotaryEmbedding and
GroupQueryAttention fusions match the graphs onnxruntime-genai's builder writes, not a dynamo export, and
GroupQueryAttention would change the decoder's inputs from the past_key_values layout every runtime
here feeds.

Only the CPU file gets this: it is not the transformers.js layout (its int8-compute MatMulNBits already
answers differently in onnxruntime-web's WASM kernels), so the shared files stay the optimizer-free graphs.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

FUSED = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")


def fuse_decoder(path: str | Path):
    """The decoder graph at `path` with its RMSNorms (and the residual adds before them) fused; a ModelProto.
    Only the optimizer's own fusions run (opt_level 0: no onnxruntime session rewrites the graph)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    options.enable_attention = False  # attention stays as exported (see the module docstring)
    options.enable_rotary_embeddings = False
    # num_heads / hidden_size 0: read from the graph where a fusion needs them (none of the enabled ones does)
    fused = optimize_model(str(path), model_type="gpt2", num_heads=0, hidden_size=0, opt_level=0,
                           optimization_options=options)
    counts = Counter(node.op_type for node in fused.model.graph.node)
    log.info("%s: fused %s", Path(path).name, {op: counts[op] for op in FUSED})
    return fused.model
