"""A real client of our export: transformers.js (Node) runs the ONNX graphs and HF files unmodified.

The Node script (tests/js/generate.mjs) does what an app does: AutoProcessor renders our chat
template and expands the image, Idefics3ForConditionalGeneration generates greedily. Its prompt ids
and answers must equal our Python processor's and our eager model's, on real ShapesVQA images.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.deploy.hf_files import write_hf_files
from vlsi_edge.deploy.onnx_export import export_onnx
from vlsi_edge.evaluate import generate_answers
from vlsi_edge.families import build_batch, chat_messages
from vlsi_edge.runtime import OnnxVLM
from vlsi_edge.zoo import load_model

from conftest import run_transformers_js

GRAPHS = ("vision_encoder", "embed_tokens", "decoder_model_merged")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped student exported (fp32 ONNX + HF files), 8 test images as PNG, the items file.

    The last item repeats an image with an earlier turn, so the chat template's history path runs too.
    """
    zoo = load_model("student")
    samples = [ShapesVQA("test", config=ShapesConfig(**zoo.card["data"]))[i] for i in range(8)]
    samples.append(replace(samples[0], history=((samples[1].question, samples[1].answer),)))
    root = tmp_path_factory.mktemp("transformers_js")
    model_dir = root / "student"
    export_onnx(zoo.model, zoo.family, zoo.card["spec"]["image_size"], model_dir)
    write_hf_files(zoo.model, zoo.family, zoo.processor, model_dir)
    items = []
    for i, sample in enumerate(samples):
        sample.image.save(root / f"{i}.png")
        items.append({"image": str(root / f"{i}.png"), "messages": chat_messages(sample.question, sample.history)})
    (root / "items.json").write_text(json.dumps(items))
    return zoo, samples, model_dir, root / "items.json"


def onnxruntime_answers(onnx_dir: Path, suffix: str, zoo, samples) -> list[str]:
    """Our own host loop (OnnxVLM) over onnx_dir/*{suffix}.onnx, on the Python processor's inputs."""
    tokenizer = zoo.family.tokenizer(zoo.processor)
    eos = tokenizer.convert_tokens_to_ids(zoo.family.eos_token)
    vlm = OnnxVLM.from_dir(onnx_dir, zoo.model.config.image_token_id, suffix=suffix)
    answers = []
    for sample in samples:
        batch = build_batch(zoo.family, zoo.processor, [sample], with_answer=False)
        out = vlm.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos)
        answers.append(tokenizer.decode(out.tokens, skip_special_tokens=True).strip())
    return answers


def test_transformers_js_answers_like_the_eager_model(node_modules, exported):
    zoo, samples, model_dir, items = exported
    results = run_transformers_js(model_dir, items, "fp32")
    eager = generate_answers(zoo.model, zoo.family, zoo.processor, samples)
    ours = onnxruntime_answers(model_dir / "onnx", "", zoo, samples)
    for sample, result in zip(samples, results, strict=True):
        # Chat template + transformers.js' Idefics3Processor give exactly the prompt we trained on.
        assert result["prompt"] == zoo.family.prompt(sample.question, sample.history)
        batch = build_batch(zoo.family, zoo.processor, [sample], with_answer=False)
        assert result["input_ids"] == batch["input_ids"][0].tolist()
    assert [r["answer"] for r in results] == eager == ours


def test_transformers_js_int8_answers_like_onnxruntime(node_modules, exported):
    """Dynamic int8 MatMuls (transformers.js' `int8` variant): the Node and Python runtimes agree."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    zoo, samples, model_dir, items = exported
    onnx_dir = model_dir / "onnx"
    for name in GRAPHS:
        quantize_dynamic(onnx_dir / f"{name}.onnx", onnx_dir / f"{name}_int8.onnx", weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    results = run_transformers_js(model_dir, items, "int8")
    assert [r["answer"] for r in results] == onnxruntime_answers(onnx_dir, "_int8", zoo, samples)


def test_hf_files_of_every_family(tiny, shapes_samples, tmp_path):
    """The written files reload into the family's processor, which then builds the same inputs."""
    family, _, processor, model = tiny
    written = write_hf_files(model, family, processor, tmp_path, max_new_tokens=33)
    names = {p.name for p in written}
    configs = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json")
    assert {*configs, "tokenizer.json"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # nothing left from staging
    assert family.tokenizer(processor).chat_template is None  # the caller's processor is untouched

    reloaded = family.load_processor(tmp_path)
    tokenizer = family.tokenizer(reloaded)
    eos = tokenizer.convert_tokens_to_ids(family.eos_token)
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == eos and generation["max_new_tokens"] == 33  # clients that set no length
    config = json.loads((tmp_path / "config.json").read_text())
    image_id = config.get("image_token_id", config.get("image_token_index"))
    assert image_id == tokenizer.convert_tokens_to_ids(family.image_token)
    # transformers.js reads the template from tokenizer_config.json only.
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"] == family.chat_template()
    for history in ((), (("What is it?", "a 'red' circle"), ("And\nnow?", "no"))):
        messages = chat_messages("Is it red?", history)
        rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert rendered == family.prompt("Is it red?", history)

    image = shapes_samples[0].image
    text = [family.prompt(shapes_samples[0].question)]
    before, after = family.process(processor, [image], text), family.process(reloaded, [image], text)
    assert before["input_ids"].tolist() == after["input_ids"].tolist()
    assert before["pixel_values"].equal(after["pixel_values"])
