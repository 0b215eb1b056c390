"""The "Use it from ..." snippets of docs/EXPORT.md, run as written, in a fresh Python that never imports
vlsi_edge, on every program of the shared test export: each answers like our own runner."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlsi_edge.contracts.manifest import load_manifest
from vlsi_edge.data import ShapesConfig
from vlsi_edge.families import build_batch
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM
from vlsi_edge.runtime.onnx_runner import OnnxVLM
from vlsi_edge.validate.inputs import validation_items

DOC = Path(__file__).resolve().parents[1] / "docs" / "EXPORT.md"
# Runs the snippet, then fails if anything of vlsi_edge was imported on the way.
GUARD = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
         "assert not [m for m in sys.modules if m.startswith('vlsi_edge')], 'the snippet imported vlsi_edge'")


def snippet(heading: str, language: str) -> str:
    """The first ```language block under `### heading` in docs/EXPORT.md."""
    text = DOC.read_text()
    start = text.index(f"### {heading}")
    block = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    assert block, f"no {language} block under {heading!r} in {DOC}"
    return block.group(1)


def _run_snippet(exported, tmp_path, heading: str, runner, arg: str, count: int = 3) -> None:
    """The snippet under `heading` on `count` validation images: its printed answer == `runner`'s."""
    result, zoo = exported
    script = tmp_path / "snippet.py"
    script.write_text(snippet(heading, "python"))
    eos = load_manifest(result.out_dir)["tokens"]["eos_ids"][0]
    tokenizer = zoo.family.tokenizer(zoo.processor)
    for i, sample in enumerate(validation_items(ShapesConfig(**zoo.card["data"]), count)):
        image = tmp_path / f"{i}.png"
        sample.image.save(image)
        proc = subprocess.run([sys.executable, "-c", GUARD, str(script), str(result.out_dir), str(image),
                               sample.question, arg], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        batch = build_batch(zoo.family, zoo.processor, [sample], with_answer=False)
        out = runner.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos)
        printed = re.findall(r"answer: (.*)", proc.stdout)  # the C++ runner prints its own stats to stdout too
        assert printed and printed[-1].strip() == tokenizer.decode(out.tokens, skip_special_tokens=True).strip()


@pytest.mark.parametrize("artifact", ["executorch-fp32", "executorch-8da4w"])
def test_stock_runner_snippet_answers_like_our_runner(exported, tmp_path, artifact):
    runner = ExecuTorchVLM.from_manifest(exported[0].out_dir, artifact)
    _run_snippet(exported, tmp_path, "Python: ExecuTorch's stock `MultimodalRunner`", runner, artifact)


@pytest.mark.parametrize("dtype, artifact", [("q8", "onnx-q8"), ("q4f16", "onnx-q4f16")])
def test_plain_onnxruntime_snippet_answers_like_our_runner(exported, tmp_path, dtype, artifact):
    runner = OnnxVLM.from_manifest(exported[0].out_dir, artifact)
    _run_snippet(exported, tmp_path, "Python: plain onnxruntime", runner, dtype)
