"""Quantization-aware VLsI: the fake quantization is the exported program's arithmetic, training runs through
it and saves the float twin, and the exporter refuses 4-bit schemes the student was not trained for."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torchao.quantization import quantize_

from vlsi_edge.config import ConfigError
from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.deploy.pipeline import Source, plan_export
from vlsi_edge.contracts import quantize_aware as contract
from vlsi_edge.contracts.quantize_aware import executorch_linear_config
from vlsi_edge.deploy.quantize import _int4, linear_filter
from vlsi_edge.deploy.targets import load_target
from vlsi_edge.distill import quant_aware, trainer
from vlsi_edge.families import build_batch
from vlsi_edge.families.parts import split_model
from vlsi_edge.families.sources import family_of
from vlsi_edge.runtime.eager import EagerRuntime
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM
from vlsi_edge.runtime.loop import greedy, insert_image
from vlsi_edge.runtime.onnx_runner import OnnxVLM


def _dequantized(op: str, weight: np.ndarray, block: int) -> np.ndarray:
    """`weight` as onnxruntime runs it after our int4 quantization (rtn), read back through the graph."""
    if op == "MatMul":  # weight [K, N]: feed the identity to read it back
        k = weight.shape[0]
        node, feed, x = helper.make_node("MatMul", ["x", "W"], ["y"]), np.eye(k, dtype=np.float32), ("x", TensorProto.FLOAT, [None, k])
    else:  # Gather of every row of the table
        node, feed, x = helper.make_node("Gather", ["W", "x"], ["y"]), np.arange(weight.shape[0]), ("x", TensorProto.INT64, [None])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(*x)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(weight, "W")])
    model = _int4(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), block, 0, "rtn")
    assert {n.op_type for n in model.graph.node} & {"MatMulNBits", "GatherBlockQuantized"}
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": feed})[0]


@pytest.mark.parametrize("k", [64, 72])  # 72: a padded last block
def test_onnx_int4_fake_quant_equals_onnxruntimes_weights(k):
    rng = np.random.default_rng(0)
    linear = rng.standard_normal((48, k)).astype(np.float32)  # torch Linear [out, in]; ONNX MatMul takes its transpose
    fake = quant_aware.onnx_int4(torch.from_numpy(linear), 32).numpy()
    np.testing.assert_array_equal(fake, _dequantized("MatMul", linear.T.copy(), 32).T)
    assert np.abs(fake - linear).max() > 0.05  # it did quantize
    table = rng.standard_normal((20, k)).astype(np.float32)  # embedding rows, blocks along the hidden dim
    np.testing.assert_array_equal(quant_aware.onnx_int4(torch.from_numpy(table), 32).numpy(), _dequantized("Gather", table, 32))


def test_onnx_int4_passes_gradients_straight_through():
    w = torch.randn(8, 32, requires_grad=True)
    quant_aware.onnx_int4(w, 16).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def _first_logits(runtime, batches, eos: int, embed_with=None) -> np.ndarray:
    """First answer-token logits per item; embed_with: feed every decoder the embeddings of this runtime."""
    out = []
    for b in batches:
        ids, pixels = b["input_ids"].numpy(), b["pixel_values"].numpy()
        if embed_with is None:
            out.append(greedy(runtime, ids, pixels, eos, 1).first_logits)
        else:
            embeds = insert_image(embed_with.embed(ids), ids, embed_with.encode_image(pixels), embed_with.image_token_id)
            out.append(runtime.prefill(embeds, None))
    return np.stack(out)


@pytest.mark.parametrize("scheme, artifact", [("int4", "onnx-int4"), ("8da4w", "executorch-8da4w")])
def test_fake_quantized_student_computes_what_the_program_computes(exported, scheme, artifact):
    """The shipped student exported with rtn scales (the `exported` fixture), against the same weights fake-quantized
    for training. onnx int4: the whole model (vision, embeddings and decoder are all int4 there); ExecuTorch
    8da4w: the decoder on the same float embeddings (its program's embedding and vision are 8-bit)."""
    result, zoo = exported
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    family = family_of(zoo.path)
    processor = family.load_processor(result.out_dir)
    data = ShapesConfig(**zoo.card["data"])
    batches = [build_batch(family, processor, [ShapesVQA("test", config=data)[i]], with_answer=False) for i in range(6)]
    size, eos = manifest["image"]["size"], manifest["tokens"]["eos_ids"][0]

    def runtime(how: str) -> EagerRuntime:
        model = family.load(zoo.path, torch.float32).eval()
        if how == "fake":
            quant_aware.prepare(model, family, scheme, 32)
        parts = split_model(model, family, size, manifest["max_context_len"])
        if how == "torchao":  # the eager program ExecuTorch lowers (its decoder's linears)
            quantize_(parts.text_decoder, executorch_linear_config("8da4w", 32, "rtn"), filter_fn=linear_filter(32))
        return EagerRuntime(parts)

    floating = runtime("float")
    program = (OnnxVLM if artifact.startswith("onnx") else ExecuTorchVLM).from_manifest(result.out_dir, artifact)
    shared = None if scheme == "int4" else floating
    want = _first_logits(program, batches, eos, shared)
    float_error = np.abs(_first_logits(floating, batches, eos, shared) - want).max()
    assert float_error > 0.3, float_error  # what quantization changes
    if scheme == "int4":  # the model as training runs it (the HF forward) is what onnxruntime computes
        model = family.load(zoo.path, torch.float32).eval()
        quant_aware.prepare(model, family, scheme, 32)
        with torch.no_grad():
            fake = np.stack([model(**b).logits[0, -1].numpy() for b in batches])
        np.testing.assert_allclose(fake, want, atol=2e-4 * np.abs(want).max())
    else:
        fake = _first_logits(runtime("fake"), batches, eos, shared)
        # torchao's eager 8da4w (what is lowered) is the fake quantization exactly; XNNPACK's kernels compute it
        # to ~1% of the logits' scale (0.11 of 12 here: their own int8 activation path), a tenth of float's error.
        np.testing.assert_array_equal(fake, _first_logits(runtime("torchao"), batches, eos, shared))
        assert np.abs(fake - want).max() < 0.15 * float_error, (np.abs(fake - want).max(), float_error)


def _student_copy(tmp_path, zoo_path, record: dict | None):
    model_dir = tmp_path / "student"
    shutil.copytree(zoo_path, model_dir)
    if record:
        (model_dir / contract.RECORD).write_text(json.dumps(record))
    return Source(model_dir, "student", ShapesConfig(**json.loads((model_dir / "card.json").read_text())["data"]))


def test_exporter_refuses_4bit_schemes_the_student_was_not_trained_for(tmp_path):
    from vlsi_edge.zoo import load_model

    source = _student_copy(tmp_path, load_model("student").path, contract.record("8da4w", 32))
    with pytest.raises(ConfigError) as refused:
        plan_export(source, load_target("android-arm64"))
    message = str(refused.value)
    assert "trained quantize-aware for 8da4w (executorch, group 32, rtn; quantize_aware.json)" in message
    assert "executorch-8da4w (group_size 32, int4_method hqq), onnx-int4, onnx-q4f16" in message
    assert "--set executorch.group_size=32 --set executorch.int4_method=rtn" in message
    assert '--set "onnx.schemes=[fp32,fp16,q8,int8,uint8]"' in message and "--allow-quant-mismatch" in message
    # The fixes it names are accepted; so is the flag.
    fixed = load_target("android-arm64", ["executorch.int4_method=rtn", "onnx.schemes=[fp32,fp16,q8,int8,uint8]"])
    assert plan_export(source, fixed).size == 96
    assert plan_export(source, load_target("android-arm64"), allow_quant_mismatch=True).size == 96
    # An ONNX-trained student: every ExecuTorch 8da4w and another block size are refused.
    onnx_source = _student_copy(tmp_path / "b", load_model("student").path, contract.record("int4", 32))
    with pytest.raises(ConfigError, match=r"executorch-8da4w, onnx-int4 \(block_size 64, int4_method rtn\)"):
        plan_export(onnx_source, load_target("android-arm64", ["onnx.block_size=64", "onnx.schemes=[int4]"]))
    # A broken record names its file.
    (source.model_dir / contract.RECORD).write_text('{"scheme": "int3"}')
    with pytest.raises(ConfigError, match=r"quantize_aware.json: not a quantize-aware record"):
        Source(source.model_dir, "student")


def test_lora_with_quantize_aware_is_refused():
    from vlsi_edge.config import load_config
    from vlsi_edge.recipes import RunConfig

    with pytest.raises(ConfigError, match="distill.quantize_aware: int4 needs train.student_training: full"):
        load_config(RunConfig, overrides=["distill.quantize_aware=int4", "train.student_training=lora"])
    with pytest.raises(ConfigError, match="distill.quantize_group_size: 24 must be a power of two >= 16"):
        load_config(RunConfig, overrides=["distill.quantize_aware=int4", "distill.quantize_group_size=24"])


@pytest.mark.parametrize("scheme", ["8da4w", "int4"])
def test_training_runs_steps_2_and_3_through_fake_quantization_and_saves_the_float_twin(tmp_path, monkeypatch, scheme):
    from tests.test_train import _run, tiny_config

    seen = {}
    real = trainer.stage_loss

    def watching(s, stage, samples, where):
        seen.setdefault(stage, quant_aware.is_prepared(s.models.student))
        return real(s, stage, samples, where)

    monkeypatch.setattr(trainer, "stage_loss", watching)
    config = tiny_config(f"distill.quantize_aware={scheme}", "distill.quantize_group_size=16")
    run, _, session = _run(tmp_path, "qat", config)
    assert seen == {"verbalize_teacher": False, "verbalize_student": False, "interact": True, "sft": True}
    assert not quant_aware.is_prepared(session.models.student)  # saved as plain float modules
    assert contract.read_record(run.path / "student") == {"scheme": scheme, "runtime": contract.SCHEMES[scheme],
                                                             "group_size": 16, "method": "rtn"}
    # The saved student is the trained weights: the same parameters, loaded by transformers alone.
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(run.path / "student").state_dict()
    trained = session.models.student.state_dict()
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained)
