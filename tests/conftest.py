"""Shared fixtures: tiny tokenizers and models of every family, built in code (no download)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that reaches for the hub fails instead of hanging

from vlsi_edge.data import ShapesConfig, ShapesVQA  # noqa: E402
from vlsi_edge.families import FAMILIES, TinySpec, get_family  # noqa: E402
from vlsi_edge.families.tokenizer import family_tokenizer  # noqa: E402

TINY = TinySpec(image_size=64, patch_size=16)


def tiny_tokenizer(family_name: str, extra_specials: tuple[str, ...] = ()):
    return family_tokenizer(get_family(family_name), extra_specials=extra_specials)


@pytest.fixture(scope="session")
def shapes_samples():
    data = ShapesVQA("test", config=ShapesConfig(image_size=64))
    return [data[i] for i in range(8)]


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def tiny(request):
    """(family, tokenizer, processor, model) of a tiny random model of each family."""
    import torch

    family = get_family(request.param)
    tokenizer = tiny_tokenizer(request.param)
    torch.manual_seed(0)
    model = family.load(family.tiny_config(tokenizer, TINY)).eval()
    return family, tokenizer, family.build_processor(tokenizer, TINY), model


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The shipped student exported for android-arm64 (fp32 + 8da4w, ONNX, 60 validation items, speed on
    20 of them): (result, zoo)."""
    from vlsi_edge.deploy.pipeline import Source
    from vlsi_edge.export import export_target
    from vlsi_edge.deploy.targets import load_target
    from vlsi_edge.zoo import load_model

    out = tmp_path_factory.mktemp("exports") / "student-android-arm64"
    # int4 embedding and rtn scales here: the shipped profiles use int8 and hqq (run by `make demo`), so this
    # covers the other kernel and the scales quantization-aware training mimics (tests/test_quant_aware.py).
    target = load_target("android-arm64", ["executorch.schemes=[fp32, 8da4w]", "executorch.embedding=int4",
                                           "executorch.embedding_group_size=32", "executorch.int4_method=rtn",
                                           "validation.size=60", "validation.timing_size=20"])
    zoo = load_model("student")
    # jobs=2: the two ExecuTorch programs lower in their own processes beside the ONNX export (the CLI default)
    result = export_target(Source(zoo.path, "student", ShapesConfig(**zoo.card["data"])), target, out, jobs=2)
    return result, zoo


JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")


@pytest.fixture(scope="session")
def node_modules() -> None:
    """Installs the pinned transformers.js once (onnxruntime-node's post-install only fetches GPU extras)."""
    if NODE is None:
        pytest.skip("the `node` binary is not installed (transformers.js needs Node 18+)")
    if not (JS_DIR / "node_modules").is_dir():
        npm_ci = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        subprocess.run(npm_ci, cwd=JS_DIR, check=True, timeout=600)


def run_transformers_js(model_dir: Path, items: Path, dtype: str | None, pixels_dir: Path | None = None) -> list[dict]:
    """tests/js/generate.mjs: transformers.js' greedy answers for the items, from model_dir's files only
    (dtype None: whatever the library picks by default; pixels_dir: its pixel_values per item, <i>.f32)."""
    command = [NODE, "generate.mjs", str(model_dir), str(items), dtype or "", *([str(pixels_dir)] if pixels_dir else [])]
    proc = subprocess.run(command, cwd=JS_DIR, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the "Use it from ..." snippets of docs/EXPORT.md, run as written in a fresh process -----------

EXPORT_DOC = Path(__file__).resolve().parents[1] / "docs" / "EXPORT.md"
# Runs a Python snippet, then fails if anything of vlsi_edge was imported on the way.
GUARD = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
         "assert not [m for m in sys.modules if m.startswith('vlsi_edge')], 'the snippet imported vlsi_edge'")


def doc_snippet(heading: str, language: str) -> str:
    """The first ```language block under `### heading` in docs/EXPORT.md."""
    text = EXPORT_DOC.read_text()
    start = text.index(f"### {heading}")
    block = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    assert block, f"no {language} block under {heading!r} in {EXPORT_DOC}"
    return block.group(1)


def run_doc_snippet(heading: str, language: str, args: list[str], tmp: Path) -> str:
    """The snippet's printed answer (its last "answer: ..." line), run in a fresh Python or Node process."""
    if language == "python":
        script = tmp / "snippet.py"
        command = [sys.executable, "-c", GUARD, str(script), *args]
    else:  # Node resolves the package from the script's folder: give it tests/js's node_modules
        script = tmp / "snippet.mjs"
        if not (tmp / "node_modules").exists():
            (tmp / "node_modules").symlink_to(JS_DIR / "node_modules")
        command = [NODE, str(script), *args]
    script.write_text(doc_snippet(heading, language))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = re.findall(r"answer: (.*)", proc.stdout)  # the C++ runner prints its own stats to stdout too
    assert printed, proc.stdout[-2000:]
    return printed[-1].strip()


# ---- the bad-input battery (test_bad_inputs*.py) -------------------------------------------------

def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under root: content hash or link target."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + str(p.readlink())
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def call(main, args: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of a CLI's main, argparse's SystemExit included."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def refused(world: Path, main, args: list[str], message: str) -> None:
    before = snapshot(world)
    code, err = call(main, args)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert snapshot(world) == before


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A runs directory with an earlier run that runs/latest points at, and some files to point at."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    (runs / "old" / "student").mkdir(parents=True)
    (runs / "old" / "config.yaml").write_text("seed: 0\n")
    (runs / "latest").symlink_to("old")
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty.json").write_text("[]")
    for name, text in (("garbage_model", "{"), ("list_model", "[1]"), ("alien_model", '{"model_type": "gpt2"}'),
                       ("onevision_model", '{"model_type": "llava_onevision"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(data / "ok.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    (data / "link.png").symlink_to(tmp_path / "outside.png")
    Image.new("1", (9000, 9000)).save(data / "huge.png")  # 81 megapixels in a few kB
    (data / "cut.png").write_bytes((data / "ok.png").read_bytes()[:30])
    return tmp_path

