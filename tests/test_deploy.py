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
