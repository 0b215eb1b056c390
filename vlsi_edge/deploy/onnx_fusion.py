"""onnxruntime's fused operators in the decoder graph, for the CPU-only int4 file (`onnx-int4_cpu`).

Two ways, the first where it applies:

- **onnxruntime-genai's model builder** (it writes the decoders Microsoft ships for CPUs), run on the model's own
  text decoder saved as a causal LM: every RMSNorm and the residual add before it one
  `SkipSimplifiedLayerNormalization`, attention with its rotary embedding one `GroupQueryAttention` per layer —
  about 100 nodes where the dynamo export has about 2,000. Its inputs are the hub layout's without `position_ids`
  (GroupQueryAttention counts positions from `attention_mask`); past and present keys/values are the same
  [1, kv_heads, length, head] tensors, returned grown by the new tokens when fed as separate buffers, so the host
  loops here run it as they run the other files. Text decoders it writes: Llama (Idefics3 / SmolVLM) and Qwen2
  (LLaVA-OneVision).
- **onnxruntime's transformer optimizer** on the dynamo export, for the rest (Qwen2-VL, whose M-RoPE positions
  the builder's rotary cannot take): RMSNorms and residual adds fused, attention left as exported.

Only the CPU file gets this: it is not the transformers.js layout (its int8-compute MatMulNBits already
answers differently in onnxruntime-web's WASM kernels), so the shared files stay the exporter's graphs.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

NORMS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
BUILDER_TEXT_MODELS = ("llama", "qwen2")  # text_config.model_type the builder writes with standard rotary positions


def fused_decoder(model, family, exported: str | Path, tokenizer_dir: str | Path):
    """(fp32 decoder ModelProto, how it was fused: the manifest's words) for `model`, whose dynamo-exported decoder
    is `exported` and whose tokenizer files are in `tokenizer_dir`."""
    config = model.config.text_config
    if config.model_type not in BUILDER_TEXT_MODELS:
        return fuse_norms(exported), {"method": "onnxruntime transformer optimizer (RMSNorm fusion)", "fused": list(NORMS)}
    decoder = build_decoder(model, family, tokenizer_dir)
    import onnxruntime_genai

    return decoder, {"method": f"onnxruntime-genai {onnxruntime_genai.__version__} model builder",
                     "fused": ["GroupQueryAttention (rotary inside)", "SkipSimplifiedLayerNormalization",
                               "SimplifiedLayerNormalization"]}


def build_decoder(model, family, tokenizer_dir: str | Path):
    """The builder's fp32 decoder (inputs_embeds in, logits out) of `model`'s text decoder and LM head."""
    import onnx
    from transformers import AutoModelForCausalLM

    config = model.config.text_config
    causal = AutoModelForCausalLM.from_config(config).eval()
    causal.model.load_state_dict(family.language_model(model).state_dict())
    causal.lm_head.load_state_dict(family.lm_head(model).state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        hf, out = Path(tmp) / "hf", Path(tmp) / "onnx"
        causal.save_pretrained(hf)
        for name in ("tokenizer.json", "tokenizer_config.json"):  # the builder reads the special-token ids
            shutil.copy(Path(tokenizer_dir) / name, hf / name)
        proc = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                               "-p", "fp32", "-e", "cpu", "-c", str(Path(tmp) / "cache"),
                               "--extra_options", "exclude_embeds=true"], capture_output=True, text=True)
        if proc.returncode != 0 or not (out / "model.onnx").is_file():
            raise RuntimeError(f"onnxruntime-genai's builder failed: {' / '.join(proc.stderr.strip().splitlines()[-3:])}")
        decoder = onnx.load(out / "model.onnx")  # with its external weights
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for value in [*decoder.graph.input, *decoder.graph.output]:  # the head size as a number, as in the other files
        if value.name.startswith(("past_key_values.", "present.")):
            value.type.tensor_type.shape.dim[3].dim_value = head
    counts = Counter(node.op_type for node in decoder.graph.node)
    log.info("decoder by onnxruntime-genai's builder: %d nodes, %s", len(decoder.graph.node),
             {op: counts[op] for op in ("GroupQueryAttention", *NORMS)})
    return decoder


def fuse_norms(path: str | Path):
    """The decoder graph at `path` with its RMSNorms (and the residual adds before them) fused; a ModelProto.
    Only the optimizer's own fusions run (opt_level 0: no onnxruntime session rewrites the graph)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    options.enable_attention = False  # the optimizer's attention fusions match the builder's graphs, not a dynamo export
    options.enable_rotary_embeddings = False
    # num_heads / hidden_size 0: read from the graph where a fusion needs them (none of the enabled ones does)
    fused = optimize_model(str(path), model_type="gpt2", num_heads=0, hidden_size=0, opt_level=0,
                           optimization_options=options)
    counts = Counter(node.op_type for node in fused.model.graph.node)
    log.info("%s: fused %s", Path(path).name, {op: counts[op] for op in NORMS})
    return fused.model
