"""Qwen2-VL and LLaVA split into the three parts (vision encoder, token embedding, decoder with its KV cache),
against the whole eager model; their exported programs are checked against these parts in tests/test_any_image.py.

Tiny random models built like tests/test_families.py, fed real ShapesVQA images and questions through
each family's processor. Random models give arbitrary answers, so agreement is on the greedy token
ids (up to the end-of-turn token or NEW_TOKENS) and on logits, not on answer text.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY, tiny_tokenizer
from vlsi_edge.families.parts import decode, split_model
from vlsi_edge.runtime.eager import generate
from vlsi_edge.runtime.loop import insert_image
from vlsi_edge.families import IGNORE_INDEX, build_batch, get_family
from vlsi_edge.runtime.positions import mrope_prompt_positions, mrope_step_positions

NEW_TOKENS = 8
SAMPLES = 4


@pytest.fixture(scope="module", params=["qwen2_vl", "llava"])
def tiny_vlm(request, shapes_samples):
    """A tiny random model, its parts, prompts of real samples, and the eager model's greedy answers."""
    family = get_family(request.param)
    tokenizer = tiny_tokenizer(request.param)
    torch.manual_seed(0)
    model = family.load(family.tiny_config(tokenizer, TINY)).eval()
    processor = family.build_processor(tokenizer, TINY)
    parts = split_model(model, family, TINY.image_size, max_cache_len=64)
    eos = tokenizer.convert_tokens_to_ids(family.eos_token)
    prompts, reference = [], []
    for sample in shapes_samples[:SAMPLES]:
        batch = build_batch(family, processor, [sample], with_answer=False)
        batch.pop("labels")
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            logits = model(**batch).logits[0, -1]
        answer = out[0, batch["input_ids"].shape[1]:].tolist()
        prompts.append(batch)
        reference.append((answer[:-1] if answer[-1:] == [eos] else answer, logits))
    return family, processor, model, parts, eos, prompts, reference


def test_vision_encoder_matches_the_models_image_features(tiny_vlm):
    _, _, model, parts, _, prompts, _ = tiny_vlm
    for batch in prompts:
        image_inputs = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
        with torch.no_grad():
            expected = model.get_image_features(**image_inputs).pooler_output[0]
            got = parts.vision_encoder(batch["pixel_values"])
        torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_prefill_and_decode_equal_the_full_sequence(tiny_vlm, shapes_samples):
    """Prefill the prompt, then feed the answer one token at a time: logits equal one full forward."""
    family, processor, model, parts, _, _, _ = tiny_vlm
    batch = build_batch(family, processor, [shapes_samples[0]])
    prompt_len = int((batch.pop("labels")[0] == IGNORE_INDEX).sum())
    ids = batch["input_ids"]
    with torch.no_grad():
        full = model(**batch).logits[0]
        image = parts.vision_encoder(batch["pixel_values"]).numpy()
        embeds = torch.from_numpy(insert_image(parts.token_embedding(ids).numpy(), ids.numpy(), image, parts.image_token_id))
        positions, delta = None, 0
        if parts.mrope_grid is not None:
            positions, delta = mrope_prompt_positions(ids[0, :prompt_len].numpy(), parts.image_token_id, parts.mrope_grid)
            positions = torch.from_numpy(positions)
        logits = [decode(parts, embeds[:, :prompt_len], 0, positions)[0]]
        for t in range(prompt_len, ids.shape[1]):
            if parts.mrope_grid is not None:
                positions = torch.from_numpy(mrope_step_positions(t, 1, delta))
            logits.append(decode(parts, embeds[:, t : t + 1], t, positions)[0])
    torch.testing.assert_close(torch.cat(logits), full, atol=1e-5, rtol=1e-5)


def test_generate_over_parts_equals_model_generate(tiny_vlm):
    _, _, _, parts, eos, prompts, reference = tiny_vlm
    for batch, (answer, logits) in zip(prompts, reference):
        tokens, first_logits = generate(parts, batch["input_ids"], batch["pixel_values"], eos, NEW_TOKENS)
        assert tokens == answer
        torch.testing.assert_close(first_logits, logits, atol=1e-5, rtol=1e-5)


def test_prompt_text_segments_tokenize_back_to_their_ids(tiny, shapes_samples, tmp_path):
    """The manifest's prompt as text (what the app's LlmModule tokenizes) equals its ids, in every family;
    stock-runner families also get the app's golden files (pixels exactly as the processor makes them)."""
    import json

    import numpy as np

    from vlsi_edge.data import ShapesConfig
    from vlsi_edge.deploy.app_golden import write_app_golden
    from vlsi_edge.deploy.pipeline import prompt_spec

    family, tokenizer, processor, _ = tiny
    spec = prompt_spec(family, processor, shapes_samples[0].image)
    for name in ("before_image", "after_image", "after_question"):
        ids = spec[name][spec["num_bos"]:] if name == "before_image" else spec[name]
        assert tokenizer(spec[f"{name}_text"], add_special_tokens=False)["input_ids"] == ids
    if family.name == "qwen2_vl":
        return  # the app does not run M-RoPE programs; the exporter writes no golden files for them
    golden = write_app_golden(family, processor, spec, ShapesConfig(image_size=64), tmp_path, items=2)
    for item in json.loads((golden / "golden.json").read_text())["items"]:
        pixels = np.fromfile(golden / item["pixels"], dtype="<f4")
        assert pixels.size == np.prod(item["shape"]) and item["shape"][0] == 3
        assert item["generate_text"] == spec["after_image_text"] + item["question"] + spec["after_question_text"]


def test_attention_lowers_whole_to_xnnpack(tiny):
    """SDPA's safe-softmax ops (any / where / eq over the attention scores) must not be left to the
    portable kernels: the vision tower's and the text decoder's attention are exported as eager attention,
    then restored. The decoder's count of ops left outside XNNPACK is pinned, so a change that splits it
    further (or delegates more) is seen here."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from vlsi_edge.deploy.executorch_export import export_parts

    family, _, _, model = tiny
    parts = split_model(model, family, TINY.image_size, max_cache_len=32)
    before = {m.config._attn_implementation for m in parts.vision_encoder.modules() if hasattr(m, "config")}
    program = export_parts(parts)["vision_encoder"]
    after = {m.config._attn_implementation for m in parts.vision_encoder.modules() if hasattr(m, "config")}
    assert before == after  # restored
    edge = to_edge_transform_and_lower({"forward": program}, partitioner=[XnnpackPartitioner()],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    frame = get_delegation_info(edge.exported_program("forward").graph_module).get_operator_delegation_dataframe()
    left = {row.op_type for row in frame.itertuples() if row.occurrences_in_non_delegated_graphs and row.op_type != "Total"}
    assert not left & {"aten_any_dim", "aten_where_self", "aten_logical_not_default", "aten__safe_softmax_default"}, left
    x = torch.randn_like(parts.vision_encoder.example_pixel_values())
    torch.testing.assert_close(program.module()(x), parts.vision_encoder(x), atol=1e-4, rtol=1e-4)

    check_decoder_delegation(parts, model, llm_ops=True, per_layer=2)  # two partitions per layer today


@pytest.mark.slow
def test_aten_ops_decoder_lowers_to_xnnpack_too(tiny):
    """The decoder without ExecuTorch's LLM ops (`executorch.llm_ops=false`, for runtimes built without them)."""
    family, _, _, model = tiny
    parts = split_model(model, family, TINY.image_size, max_cache_len=32)
    check_decoder_delegation(parts, model, llm_ops=False, per_layer=7)  # six per layer today


def check_decoder_delegation(parts, model, llm_ops: bool, per_layer: int) -> None:
    """No safe-softmax op and no linear / matmul / softmax outside XNNPACK, at most `per_layer` partitions per
    layer; on the LLM ops one attention op and two cache writes per layer and no index_put."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from vlsi_edge.deploy.executorch_export import export_parts

    layers = model.config.get_text_config().num_hidden_layers
    decoder = export_parts(parts, llm_ops)["text_decoder"]
    edge = to_edge_transform_and_lower({"forward": decoder}, partitioner=[XnnpackPartitioner()],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    info = get_delegation_info(edge.exported_program("forward").graph_module)
    frame = info.get_operator_delegation_dataframe()
    left = {row.op_type: row.occurrences_in_non_delegated_graphs for row in frame.itertuples()
            if row.occurrences_in_non_delegated_graphs and row.op_type != "Total"}
    assert not set(left) & {"aten_any_dim", "aten_logical_not_default", "aten__safe_softmax_default"}, left
    # Every linear and matmul of the decoder runs in XNNPACK (what is left: cache writes, rotary slices).
    assert not set(left) & {"aten_linear_default", "aten_bmm_default", "aten_mm_default", "aten__softmax_default"}, left
    if llm_ops:
        assert left.get("llama_custom_sdpa_default") == layers and "aten_index_put_default" not in left, left
        assert left.get("auto_functionalized_v2") == 2 * layers, left
    assert info.num_delegated_subgraphs <= per_layer * layers + 2, (llm_ops, info.num_delegated_subgraphs, left)


def test_llm_ops_decoder_equals_the_static_cache_decoder(tiny):
    """ExecuTorch's update_cache / custom_sdpa decoder gives the plain decoder's logits: prefill, decode steps,
    and a second generation from position 0 over the first one's stale cache (how every program is reused)."""
    from vlsi_edge.deploy.executorch_decoder import CustomOpDecoder

    family, _, _, model = tiny
    parts = split_model(model, family, TINY.image_size, max_cache_len=32)
    fast = CustomOpDecoder(parts.text_decoder).eval()
    torch.manual_seed(1)
    hidden = parts.text_decoder.lm_head.weight.shape[1]
    prompts = [torch.randn(1, 7, hidden), torch.randn(1, 5, hidden)]
    steps = [torch.randn(1, 1, hidden) for _ in range(3)]

    def feed(decoder, embeds, start):
        positions = torch.arange(start, start + embeds.shape[1])
        if parts.mrope_grid is None:
            return decoder(embeds, positions)
        return decoder(embeds, positions, positions.repeat(3, 1, 1))

    with torch.no_grad():
        for prompt in prompts:  # the second prompt is shorter: positions 5.. of the cache hold stale entries
            for decoder_outputs in zip(*[[feed(d, prompt, 0), *(feed(d, s, prompt.shape[1] + i) for i, s in enumerate(steps))]
                                         for d in (parts.text_decoder, fast)]):
                torch.testing.assert_close(decoder_outputs[1], decoder_outputs[0], atol=1e-5, rtol=1e-5)
    before = {m.config._attn_implementation for m in parts.text_decoder.modules() if hasattr(m, "config")}
    assert "executorch_custom_sdpa" not in before  # the shared language model's setting is restored


def test_llava_image_encoder_quantizes_and_exports_past_an_unused_pooling_head():
    """SigLIP towers can carry an attention-pooling head (the tiny config does) that LLaVA never reads; its
    nn.MultiheadAttention cannot run with a quantized out_proj, so the export's encoder skips it (8da8w image
    encoder, as every profile sets)."""
    from executorch.extension.llm.export.quantize import quantize_model_

    family = get_family("llava")
    torch.manual_seed(0)
    model = family.load(family.tiny_config(tiny_tokenizer("llava"), TINY)).eval()
    assert model.model.vision_tower.use_head
    encoder = family.vision_encoder(model, TINY.image_size).eval()
    pixels = torch.randn(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=pixels).pooler_output[0]
        quantize_model_(encoder, qlinear_config="8da8w", qlinear_group_size=0)
        got = torch.export.export(encoder, (pixels,)).module()(pixels)[0]
    assert model.model.vision_tower.use_head  # restored after tracing
    assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) > 0.99
