"""Images of any size through every family's exported programs, in every runner a user would pick.

A tiny random model of each family is exported (ExecuTorch fp32, ONNX fp32); three images go through it: one
at the export's size, a wide one (150x112) and an odd-sized tall one (61x97). The export's own processor must
turn each into the programs' one fixed input (Qwen2-VL's pinned processor stretches it first), and every
runner must then generate what the float model's eager parts generate: our ONNX and ExecuTorch runners, the
stock runner and plain-onnxruntime snippets of docs/EXPORT.md (Idefics3, LLaVA: Qwen2-VL's M-RoPE needs a host
loop), and transformers.js (all three), on its own pixels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample
from vlsi_edge.deploy.pipeline import Source, export_programs
from vlsi_edge.deploy.targets import load_target
from vlsi_edge.families import build_batch, chat_messages, get_family
from vlsi_edge.families.parts import split_model
from vlsi_edge.families.sources import load_source
from vlsi_edge.runtime import eager
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM
from vlsi_edge.runtime.onnx_runner import OnnxVLM

from conftest import run_doc_snippet, run_transformers_js

MAX_NEW_TOKENS = 8
SIZES = {"exact": None, "wide": (150, 112), "odd": (61, 97)}
QUESTION = "what color is the circle?"


@pytest.fixture(scope="module", params=["idefics3", "llava", "qwen2_vl"])
def any_size(request, tmp_path_factory):
    """(family, export dir, manifest, {name: (image path, batch from the export's processor, eager tokens)})."""
    return export_tiny(request.param, tmp_path_factory, ["executorch.schemes=[fp32]", "onnx.schemes=[fp32]"])


def export_tiny(name: str, tmp_path_factory, overrides: list[str]):
    family = get_family(name)
    model, processor, _ = load_source(family, "tiny:2")
    # A random model emits byte tokens that are half a UTF-8 character, which the stock runner's Python binding
    # cannot return as text (UnicodeDecodeError): it speaks whole ASCII tokens only here (zero logits otherwise).
    tokenizer = family.tokenizer(processor)
    partial = [i for i in range(len(tokenizer)) if not tokenizer.decode([i]).isascii()]
    with torch.no_grad():
        family.lm_head(model).weight[partial] = 0
    root = tmp_path_factory.mktemp(f"any_image_{family.name}")
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    target = load_target("android-arm64", [*overrides, f"max_new_tokens={MAX_NEW_TOKENS}"])
    out = root / "export"
    out.mkdir()
    data = ShapesConfig(image_size=64)
    manifest = export_programs(Source(root / "model", "tiny", data), target, out)

    size = manifest["image"]["size"]
    shipped = family.load_processor(out)
    parts = split_model(model, family, size, max_cache_len=manifest["max_context_len"])
    base = ShapesVQA("test", size=1, config=data)[0].image
    images = {}
    for name, dims in SIZES.items():
        image = base.resize(dims or (size, size), Image.BICUBIC)
        image.save(root / f"{name}.png")
        batch = build_batch(family, shipped, [VQASample(image, QUESTION, "")], with_answer=False)
        tokens, first = eager.generate(parts, batch["input_ids"], batch["pixel_values"], eos(manifest), MAX_NEW_TOKENS)
        images[name] = (root / f"{name}.png", batch, tokens, first.numpy())
    return family, out, manifest, images


def eos(manifest: dict) -> int:
    return manifest["tokens"]["eos_ids"][0]


def text(family, out, tokens: list[int], skip_special_tokens: bool = True) -> str:
    return family.tokenizer(family.load_processor(out)).decode(tokens, skip_special_tokens=skip_special_tokens).strip()


def test_the_shipped_processor_gives_every_image_the_programs_input(any_size):
    family, out, manifest, images = any_size
    image_tokens = manifest["tokens"]["image_token_count"]
    shapes = {tuple(batch["pixel_values"].shape) for _, batch, _, _ in images.values()}
    assert len(shapes) == 1, shapes
    for _, batch, _, _ in images.values():
        assert int((batch["input_ids"] == manifest["tokens"]["image_token_id"]).sum()) == image_tokens
    config = json.loads((out / "preprocessor_config.json").read_text())
    if family.name == "qwen2_vl":  # pinned: min = max pixels = size^2, the grid of the programs
        size = manifest["image"]["size"]
        assert config["size"] == {"shortest_edge": size * size, "longest_edge": size * size}
        assert manifest["tokens"]["image_grid"] == [size // config["patch_size"] // config["merge_size"]] * 2


@pytest.mark.parametrize("artifact", ["onnx-fp32", "executorch-fp32"])
def test_our_runners_generate_like_the_eager_model_on_any_image(any_size, artifact):
    family, out, manifest, images = any_size
    runner = (OnnxVLM if artifact.startswith("onnx") else ExecuTorchVLM).from_manifest(out, artifact)
    for name, (_, batch, tokens, first) in images.items():
        got = runner.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos(manifest), MAX_NEW_TOKENS)
        assert got.tokens == tokens, name
        np.testing.assert_allclose(got.first_logits, first, atol=2e-4, rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("heading, artifact", [
    ("Python: ExecuTorch's stock `MultimodalRunner`", "executorch-fp32"),
    ("Python: plain onnxruntime", "fp32"),
])
def test_python_snippets_answer_like_the_eager_model_on_any_image(any_size, tmp_path, heading, artifact):
    family, out, manifest, images = any_size
    if family.name == "qwen2_vl":
        assert manifest["artifacts"]["executorch-fp32"]["stock_runner"] is False
        pytest.skip("Qwen2-VL's M-RoPE decoder needs 3-D positions that neither snippet computes (docs/EXPORT.md)")
    # One image per snippet (a fresh Python each, seconds): the odd-sized one, neither square nor the export's size.
    path, _, tokens, _ = images["odd"]
    printed = run_doc_snippet(heading, "python", [str(out), str(path), QUESTION, artifact], tmp_path)
    # The C++ runner streams every token's text, special tokens included (a random model makes some).
    assert printed == text(family, out, tokens, skip_special_tokens=not artifact.startswith("executorch"))


def test_transformers_js_answers_like_our_runner_on_its_own_pixels(node_modules, any_size, tmp_path):
    """transformers.js resizes with its own resampler (sharp in Node), so its pixels for a resized image are its
    own; on them our runner must answer as it does, and at the export's size the pixels are ours."""
    family, out, manifest, images = any_size
    items = [{"image": str(path), "messages": chat_messages(QUESTION)} for path, *_ in images.values()]
    (tmp_path / "items.json").write_text(json.dumps(items))
    results = run_transformers_js(out, tmp_path / "items.json", "fp32", pixels_dir=tmp_path)
    runner = OnnxVLM.from_manifest(out, "onnx-fp32")
    for i, (name, (_, batch, tokens, _)) in enumerate(images.items()):
        assert results[i]["input_ids"] == batch["input_ids"][0].tolist(), name
        pixels = np.fromfile(tmp_path / f"{i}.f32", np.float32)
        ours = batch["pixel_values"].numpy().ravel()
        assert pixels.size == ours.size, name
        if name == "exact":
            np.testing.assert_allclose(pixels, ours, atol=1e-5)
        got = runner.generate(batch["input_ids"].numpy(), pixels, eos(manifest), MAX_NEW_TOKENS)
        assert results[i]["answer"] == text(family, out, got.tokens), name


def test_transformers_js_snippet_answers_like_the_eager_model(node_modules, any_size, tmp_path):
    family, out, manifest, images = any_size
    path, _, tokens, _ = images["exact"]
    assert run_doc_snippet("Node: transformers.js", "js", [str(out), str(path), QUESTION, "fp32"], tmp_path) \
        == text(family, out, tokens)


def test_preprocess_bench_measures_the_two_paths(node_modules, any_size, tmp_path):
    """`python -m vlsi_edge.bench preprocess`: on transformers.js' own pixels our runner answers as it does (the
    control), on resized (not square-at-size) images, with the differences ordered as statistics must be."""
    from vlsi_edge.benchmarks import preprocess

    family, out, manifest, images = any_size
    result = preprocess.run(tmp_path, out, 3, "fp32", "test")
    assert result["control_equal"] == 3
    assert 0.0 <= result["mean_diff"] <= result["median_max_diff"] <= result["max_diff"]
    assert {tuple(r["size"]) for r in result["rows"]} != {(manifest["image"]["size"],) * 2}
    assert json.loads((tmp_path / "preprocess.json").read_text())["items"] == 3
    assert "transformers.js" in (tmp_path / "preprocess.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["idefics3", "llava"])
def test_stock_runner_snippet_runs_every_executorch_scheme_on_any_image(tmp_path_factory, tmp_path, name):
    """Every ExecuTorch scheme of the profile (fp32, 8da8w, 8da4w; int8 image encoder) through the stock runner
    snippet, as our runner runs the same program (about 2 minutes of lowering per family: opt-in, -m slow)."""
    family, out, manifest, images = export_tiny(name, tmp_path_factory, ["onnx.schemes=[fp32]"])
    path, batch, _, _ = images["odd"]
    for artifact in ("executorch-fp32", "executorch-8da8w", "executorch-8da4w"):
        ours = ExecuTorchVLM.from_manifest(out, artifact).generate(
            batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos(manifest), MAX_NEW_TOKENS)
        printed = run_doc_snippet("Python: ExecuTorch's stock `MultimodalRunner`", "python",
                                  [str(out), str(path), QUESTION, artifact], tmp_path)
        assert printed == text(family, out, ours.tokens, skip_special_tokens=False), artifact


def test_preprocess_bench_refuses_more_items_than_the_split_has():
    from vlsi_edge.benchmarks.preprocess import resized_items
    from vlsi_edge.config import ConfigError

    with pytest.raises(ConfigError, match="--items 1001: the ShapesVQA test split has 1000 items"):
        resized_items(ShapesConfig(), 96, 1001)


def test_int4_cpu_fused_decoder_equals_the_exported_one(any_size):
    """int4_cpu's fp32 decoder before int4 (deploy/onnx_fusion.py: onnxruntime-genai's builder for the Llama and Qwen2
    text decoders, onnxruntime's RMSNorm fusion for Qwen2-VL's M-RoPE one) returns the exported decoder's logits and
    presents, on a prefill and two decode steps each fed the presents of the step before."""
    from collections import Counter

    import onnxruntime as ort

    from vlsi_edge.deploy.onnx_fusion import fused_decoder

    family, out, manifest, _ = any_size
    model = family.load(manifest["model"]["source"], torch.float32).eval()
    path = out / "onnx" / "decoder_model_merged.onnx"
    fused, how = fused_decoder(model, family, path, out)
    ops = Counter(node.op_type for node in fused.graph.node)
    layers = model.config.text_config.num_hidden_layers
    # two norms per layer and the final one; the first layer's input norm has no residual add before it
    assert (ops["SkipSimplifiedLayerNormalization"], ops["SimplifiedLayerNormalization"]) == (2 * layers, 1)
    assert ops["ReduceMean"] == ops["Pow"] == 0
    builder = family.name != "qwen2_vl"
    assert how["method"].startswith("onnxruntime-genai" if builder else "onnxruntime transformer optimizer")
    assert ops["GroupQueryAttention"] == (layers if builder else 0) and (ops["Softmax"] == 0) == builder
    plain, fast = ort.InferenceSession(str(path)), ort.InferenceSession(fused.SerializeToString())
    takes = {i.name for i in fast.get_inputs()}
    assert ("position_ids" in takes) != builder
    pasts = [i for i in plain.get_inputs() if i.name.startswith("past_key_values.")]
    hidden = next(i for i in plain.get_inputs() if i.name == "inputs_embeds").shape[2]
    rng = np.random.default_rng(0)
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in pasts}
    start = 0
    for n in (7, 1, 1):
        positions = np.arange(start, start + n)[None]
        feeds = {"inputs_embeds": rng.standard_normal((1, n, hidden)).astype(np.float32),
                 "attention_mask": np.ones((1, start + n), np.int64),
                 "position_ids": np.broadcast_to(positions, (3, 1, n)).copy() if family.name == "qwen2_vl" else positions,
                 **past}
        want = dict(zip([o.name for o in plain.get_outputs()], plain.run(None, feeds)))
        got = dict(zip([o.name for o in fast.get_outputs()], fast.run(None, {k: v for k, v in feeds.items() if k in takes})))
        assert set(got) == set(want)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-4, err_msg=name)
        past = {i.name: want[i.name.replace("past_key_values.", "present.")] for i in pasts}
        start += n
