"""Runtime-benchmark building blocks: memory bandwidth / roofline, and the llama.cpp peer on a tiny Llama."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlsi_edge.benchmarks import bandwidth, llamacpp

TINY_LLAMA = {
    **llamacpp.TEXT_DECODERS["smolvlm-256m"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,  # rows a multiple of 32: Q4_0 / Q8_0 blocks
    "vocab_size": 512,
}


def test_memory_bandwidth_reports_both_thread_counts():
    result = bandwidth.memory_bandwidth(size_mb=8, repeats=2, threads=(1, 2))
    assert set(result["by_threads"]) == {"1", "2"}
    for row in result["by_threads"].values():
        assert 0 < row["median_gb_s"] <= row["best_gb_s"]
        assert len(row["seconds"]) == 2
    assert result["median_gb_s"] == result["by_threads"]["1"]["median_gb_s"]


def test_roofline_is_bandwidth_over_bytes():
    assert bandwidth.roofline_tokens_per_s(500_000_000, 10.0) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        bandwidth.roofline_tokens_per_s(0, 10.0)


@pytest.fixture(scope="module")
def llama_workdir(tmp_path_factory):
    ok, reason = llamacpp.available()
    if not ok:
        pytest.skip(f"llama.cpp peer not installed: {reason}")
    return tmp_path_factory.mktemp("gguf")


def test_gguf_f32_matches_transformers_logits(llama_workdir):
    """The hand-written conversion (names, Q/K RoPE permutation, tied output) is a faithful Llama."""
    import llama_cpp
    import torch

    path = llamacpp.gguf_path(TINY_LLAMA, "F32", llama_workdir)
    ids = llamacpp._decode_ids(12, TINY_LLAMA["vocab_size"])
    with torch.no_grad():
        expected = llamacpp.build_llama(TINY_LLAMA).float()(torch.tensor([ids])).logits[0, -1].numpy()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    llm.eval(ids)
    got = np.asarray(llm.scores[len(ids) - 1])
    assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max()
    assert got.argmax() == expected.argmax()


def test_llamacpp_decode_tiny_q4_and_q8(llama_workdir):
    q4 = llamacpp.llamacpp_decode(TINY_LLAMA, "Q4_0", threads=1, tokens=8, repeats=1, workdir=llama_workdir)
    q8 = llamacpp.llamacpp_decode(TINY_LLAMA, "Q8_0", threads=1, tokens=8, repeats=1, workdir=llama_workdir)
    assert q4["available"] and q8["available"]
    assert q4["tokens_per_s"] > 0 and q8["tokens_per_s"] > 0
    assert q4["file_bytes"] < q8["file_bytes"]
    assert "q4_0" in q4["tensor_bytes"] and "q8_0" in q8["tensor_bytes"]


def test_llamacpp_decode_rejects_unknown_quant(tmp_path):
    with pytest.raises(ValueError, match="Q4_0"):
        llamacpp.gguf_path(TINY_LLAMA, "Q5_K", tmp_path)


def test_ortgenai_decodes_its_own_int4_build_of_a_tiny_llama(tmp_path):
    """The onnxruntime-genai peer: the builder's int4 CPU decoder (MatMulNBits with int8 compute, fused attention
    and norms) of the same dims, timed by its own generation loop."""
    import onnx

    from vlsi_edge.benchmarks import ortgenai

    ok, reason = ortgenai.available()
    if not ok:
        pytest.skip(f"onnxruntime-genai peer not installed: {reason}")
    result = ortgenai.ortgenai_decode(TINY_LLAMA, threads=1, tokens=8, repeats=2, workdir=tmp_path)
    assert result["tokens_per_s"] > 0 and len(result["tokens_per_s_runs"]) == 2
    graph = onnx.load(next(p for p in (tmp_path.glob("genai-*/model.onnx"))), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert {"MatMulNBits", "GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= ops, ops
    attributes = [{a.name: a.i for a in n.attribute} for n in graph.node if n.op_type == "MatMulNBits"]
    assert {a["bits"] for a in attributes} == {4} and {a["accuracy_level"] for a in attributes} == {4}
    assert result["file_bytes"] > 0
    # a second call reuses the built model
    assert ortgenai.genai_path(TINY_LLAMA, tmp_path) == Path(result["path"])
