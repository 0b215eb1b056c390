"""The "Use it from ..." snippets of docs/EXPORT.md, run as written, in a fresh Python that never imports
vlsi_edge or a fresh Node, on programs of the shared test export: each answers like our own runner.
(tests/test_any_image.py runs them on every family with images of any size.)"""

from __future__ import annotations

import pytest

from vlsi_edge.contracts.manifest import load_manifest
from vlsi_edge.data import ShapesConfig
from vlsi_edge.families import build_batch
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM
from vlsi_edge.runtime.onnx_runner import OnnxVLM
from vlsi_edge.validate.inputs import validation_items

from conftest import run_doc_snippet


def _run_snippet(exported, tmp_path, heading: str, runner, arg: str, language: str = "python", count: int = 3) -> None:
    """The snippet under `heading` on `count` validation images: its printed answer == `runner`'s."""
    result, zoo = exported
    eos = load_manifest(result.out_dir)["tokens"]["eos_ids"][0]
    tokenizer = zoo.family.tokenizer(zoo.processor)
    for i, sample in enumerate(validation_items(ShapesConfig(**zoo.card["data"]), count)):
        image = tmp_path / f"{i}.png"
        sample.image.save(image)
        printed = run_doc_snippet(heading, language, [str(result.out_dir), str(image), sample.question, arg], tmp_path)
        batch = build_batch(zoo.family, zoo.processor, [sample], with_answer=False)
        out = runner.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos)
        assert printed == tokenizer.decode(out.tokens, skip_special_tokens=True).strip()


@pytest.mark.parametrize("artifact", ["executorch-fp32", "executorch-8da4w"])
def test_stock_runner_snippet_answers_like_our_runner(exported, tmp_path, artifact):
    runner = ExecuTorchVLM.from_manifest(exported[0].out_dir, artifact)
    _run_snippet(exported, tmp_path, "Python: ExecuTorch's stock `MultimodalRunner`", runner, artifact)


@pytest.mark.parametrize("dtype, artifact", [("q8", "onnx-q8"), ("q4f16", "onnx-q4f16")])
def test_plain_onnxruntime_snippet_answers_like_our_runner(exported, tmp_path, dtype, artifact):
    runner = OnnxVLM.from_manifest(exported[0].out_dir, artifact)
    _run_snippet(exported, tmp_path, "Python: plain onnxruntime", runner, dtype)


@pytest.mark.parametrize("dtype, artifact", [("q8", "onnx-q8"), ("fp32", "onnx-fp32")])
def test_transformers_js_snippet_answers_like_our_runner(node_modules, exported, tmp_path, dtype, artifact):
    runner = OnnxVLM.from_manifest(exported[0].out_dir, artifact)
    _run_snippet(exported, tmp_path, "Node: transformers.js", runner, dtype, language="js")
