"""The three-part split of the default family, and its ONNX graphs (the stock ExecuTorch runner on the
exported programs: test_runtime_snippets.py).

Parity is checked on real ShapesVQA images and questions with the shipped student (random-input
parity tests have missed real divergence in other projects).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.families.parts import split_model
from vlsi_edge.runtime.eager import generate
from vlsi_edge.evaluate import generate_answers
from vlsi_edge.families import build_batch
from vlsi_edge.zoo import load_model


@pytest.fixture(scope="module")
def student():
    zoo = load_model("student")
    data = ShapesVQA("test", config=ShapesConfig(**zoo.card["data"]))
    samples = [data[i] for i in range(16)]
    reference = generate_answers(zoo.model, zoo.family, zoo.processor, samples)
    return zoo, samples, reference


def _prompt(zoo, sample):
    batch = build_batch(zoo.family, zoo.processor, [sample], with_answer=False)
    return batch["input_ids"], batch["pixel_values"][:, 0]  # Idefics3: [1, images, 3, H, W] -> [1, 3, H, W]


def test_parts_reproduce_the_eager_model(student):
    zoo, samples, reference = student
    tokenizer = zoo.family.tokenizer(zoo.processor)
    eos = tokenizer.convert_tokens_to_ids(zoo.family.eos_token)
    parts = split_model(zoo.model, zoo.family, zoo.card["spec"]["image_size"], max_cache_len=128)
    for sample, expected in zip(samples, reference):
        input_ids, pixels = _prompt(zoo, sample)
        ids, first_logits = generate(parts, input_ids, pixels, eos)
        with torch.no_grad():
            full = zoo.model(input_ids=input_ids, pixel_values=pixels.unsqueeze(1)).logits[0, -1]
        torch.testing.assert_close(first_logits, full, atol=1e-5, rtol=1e-5)
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == expected


def test_onnx_graphs_answer_like_the_eager_model(student, tmp_path):
    """vision_encoder / embed_tokens / decoder_model_merged (past keys/values in and out) in onnxruntime."""
    from vlsi_edge.deploy.onnx_export import export_onnx
    from vlsi_edge.runtime import OnnxVLM

    zoo, samples, reference = student
    family, tokenizer = zoo.family, zoo.family.tokenizer(zoo.processor)
    paths = export_onnx(zoo.model, family, zoo.card["spec"]["image_size"], tmp_path)
    assert all(p.is_file() for p in paths.values())
    vlm = OnnxVLM.from_dir(tmp_path / "onnx", zoo.model.config.image_token_id)
    eos = tokenizer.convert_tokens_to_ids(family.eos_token)
    for sample, expected in zip(samples, reference):
        input_ids, pixels = _prompt(zoo, sample)
        out = vlm.generate(input_ids.numpy(), pixels.numpy(), eos)
        ids, first_logits = out.tokens, out.first_logits
        with torch.no_grad():
            full = zoo.model(input_ids=input_ids, pixel_values=pixels.unsqueeze(1)).logits[0, -1]
        torch.testing.assert_close(torch.from_numpy(first_logits), full, atol=1e-4, rtol=1e-4)
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == expected


def test_int4_accuracy_level_sets_the_matmulnbits_compute_type(student, tmp_path):
    """onnx.accuracy_level: every MatMulNBits carries it (4: int8 activations), and the int8-compute graph answers
    as the fp32-compute one within int8 activation error (first-token logits; greedy answers)."""
    import numpy as np
    import onnx

    from vlsi_edge.deploy.onnx_export import export_onnx
    from vlsi_edge.deploy.quantize import quantize_onnx
    from vlsi_edge.runtime import OnnxVLM

    zoo, samples, _ = student
    export_onnx(zoo.model, zoo.family, zoo.card["spec"]["image_size"], tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the int4 variants of both levels share one file name
    plain = quantize_onnx(tmp_path / "a" / "onnx", "int4", 32)
    int8 = quantize_onnx(tmp_path / "b" / "onnx", "int4", 32, accuracy_level=4)
    for paths, level in ((plain, None), (int8, 4)):
        nodes = [n for n in onnx.load(paths["decoder_model_merged"]).graph.node if n.op_type == "MatMulNBits"]
        assert nodes and all({a.name: a.i for a in n.attribute}.get("accuracy_level") == level for n in nodes)
    eos = zoo.family.tokenizer(zoo.processor).convert_tokens_to_ids(zoo.family.eos_token)
    runners = [OnnxVLM(paths, zoo.model.config.image_token_id) for paths in (plain, int8)]
    same = 0
    for sample in samples:
        input_ids, pixels = _prompt(zoo, sample)
        a, b = (r.generate(input_ids.numpy(), pixels.numpy(), eos) for r in runners)
        scale = float(np.abs(a.first_logits).max())
        np.testing.assert_allclose(b.first_logits, a.first_logits, atol=0.05 * scale)
        same += a.tokens == b.tokens
    assert same >= len(samples) - 2


def test_int4_methods_and_gptq_calibration(student, tmp_path):
    """onnx.int4_method: rtn is symmetric (no zero points), hqq asymmetric (zero points), gptq symmetric and
    calibrated on the feeds the fp32 graphs saw answering training questions; each keeps the fp32 graphs' outputs
    on those feeds within int4 error, and the embedding table is round-to-nearest in all three."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from vlsi_edge.deploy.calibration import record_feeds
    from vlsi_edge.deploy.onnx_export import export_onnx
    from vlsi_edge.deploy.quantize import quantize_onnx

    zoo, _, _ = student
    fp32 = export_onnx(zoo.model, zoo.family, zoo.card["spec"]["image_size"], tmp_path / "rtn")
    for method in ("hqq", "gptq"):
        shutil.copytree(tmp_path / "rtn", tmp_path / method)
    train = ShapesVQA("train", size=8, config=ShapesConfig(**zoo.card["data"]))
    eos = zoo.family.tokenizer(zoo.processor).convert_tokens_to_ids(zoo.family.eos_token)
    feeds = record_feeds(tmp_path / "rtn" / "onnx", zoo.family, zoo.processor, [train[i] for i in range(8)],
                         zoo.model.config.image_token_id, eos, 40)
    # One vision call per item; one embedding and one decoder call per prefill and per decoded token.
    assert len(feeds["vision_encoder"]) == 8 and len(feeds["decoder_model_merged"]) == len(feeds["embed_tokens"]) > 8
    assert {f["past_key_values.0.key"].shape[2] for f in feeds["decoder_model_merged"]} > {0}  # decode steps too

    for method in ("rtn", "hqq", "gptq"):
        paths = quantize_onnx(tmp_path / method / "onnx", "int4", 32, method=method, calibration=feeds)
        nodes = [n for n in onnx.load(paths["decoder_model_merged"]).graph.node if n.op_type == "MatMulNBits"]
        assert nodes and all((len(n.input) >= 4 and n.input[3] != "") == (method == "hqq") for n in nodes), method
        embed = onnx.load(paths["embed_tokens"]).graph.node
        assert [n.op_type for n in embed if n.op_type.startswith("Gather")] == ["GatherBlockQuantized"]
        for graph in ("vision_encoder", "decoder_model_merged"):
            want_session, got_session = (ort.InferenceSession(str(p[graph])) for p in (fp32, paths))
            for feed in feeds[graph][:20]:
                want, got = want_session.run(None, feed)[0], got_session.run(None, feed)[0]
                assert np.sqrt(np.mean((got - want) ** 2)) < 0.5 * np.std(want), (method, graph)
