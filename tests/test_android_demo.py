"""The Android demo's checkable half, on an export made in this run (the `exported` fixture).

- android_demo/core (plain JVM) builds with javac and its JUnit tests pass, golden tests included:
  the app's preprocessing and prompt equal what the exporter wrote into app_golden/, bit for bit.
- ExecuTorch's C++ tokenizer (the one inside LlmModule's runner) turns the app's prompt text into the
  exporter's ids.
- `python -m vlsi_edge.app` (the app's flow on a laptop) answers like the validated host runner and
  names a damaged file.

The Android UI layer cannot be compiled here (no Android SDK); see android_demo/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vlsi_edge import app
from vlsi_edge.contracts.manifest import load_manifest
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM

from conftest import doc_snippet

CORE = Path(__file__).resolve().parents[1] / "android_demo" / "core"
JARS = ("/usr/share/java/gson.jar", "/usr/share/java/junit4.jar", "/usr/share/java/hamcrest-core.jar")


def _need_jvm():
    missing = [j for j in JARS if not Path(j).is_file()] + (["javac"] if shutil.which("javac") is None else [])
    if missing and not os.environ.get("JARS"):
        message = f"JDK / jars missing: {missing} (apt-get install openjdk-17-jdk-headless junit4 libgoogle-gson-java)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them (.ci/run): never skip the golden tests there
        pytest.skip(message)


def _golden(export_dir: Path) -> list[dict]:
    manifest = load_manifest(export_dir)
    return json.loads((export_dir / manifest["app_golden"]).read_text())["items"]


def test_jvm_module_builds_and_passes_its_golden_tests(exported):
    _need_jvm()
    result, _ = exported
    run = subprocess.run([str(CORE / "run_tests.sh"), str(result.out_dir)], capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    ran = [line for line in run.stdout.splitlines() if line.startswith("OK (")]
    assert ran and int(ran[0].split("(")[1].split()[0]) >= 15, run.stdout[-2000:]


def test_golden_files_hold_the_processor_pixels_and_cover_resizing(exported):
    result, zoo = exported
    from PIL import Image

    items = _golden(result.out_dir)
    size = load_manifest(result.out_dir)["image"]["size"]
    assert len(items) >= 5 and any((i["width"], i["height"]) != (size, size) for i in items)
    for item in items:
        image = Image.open(result.out_dir / "app_golden" / item["image"])
        batch = zoo.family.process(zoo.processor, [image], [zoo.family.prompt(item["question"])])
        pixels = np.fromfile(result.out_dir / "app_golden" / item["pixels"], dtype="<f4").reshape(item["shape"])
        np.testing.assert_array_equal(pixels, batch["pixel_values"].numpy().reshape(pixels.shape))


def test_runner_tokenizer_turns_the_app_prompt_into_the_exporters_ids(exported):
    from pytorch_tokenizers import CppHFTokenizer

    result, _ = exported
    tokenizer = CppHFTokenizer()
    tokenizer.load(str(result.out_dir / "tokenizer.json"))
    for item in _golden(result.out_dir):
        assert tokenizer.encode(item["prefill_text"], 0, 0) == item["prefill_ids"]
        assert tokenizer.encode(item["generate_text"], 0, 0) == item["generate_ids"]


@pytest.mark.parametrize("preprocess", ["jvm", "python"])
def test_host_flow_answers_like_the_validated_runner(exported, preprocess):
    """The app's flow (prefill text, prefill image, generate from text) == our host loop on the exporter's ids."""
    if preprocess == "jvm":
        _need_jvm()
    result, zoo = exported
    export_dir = result.out_dir
    manifest = load_manifest(export_dir)
    ours = ExecuTorchVLM.from_manifest(export_dir, "executorch-8da4w")
    tokenizer = zoo.family.tokenizer(zoo.processor)
    prepare = app.prepare_jvm if preprocess == "jvm" else app.prepare_python
    for item in _golden(export_dir)[:4]:
        prepared = prepare(export_dir, export_dir / "app_golden" / item["image"], item["question"], None)
        assert prepared.artifact == "executorch-8da4w"  # the smallest program the app can run
        golden = np.fromfile(export_dir / "app_golden" / item["pixels"], dtype="<f4").reshape(item["shape"])
        np.testing.assert_array_equal(prepared.pixels, golden)
        got = app.generate(prepared, max_new_tokens=40)

        spec = manifest["prompt"]
        ids = spec["before_image"] + [manifest["tokens"]["image_token_id"]] * spec["image_tokens"] + item["generate_ids"]
        expected = ours.generate(np.array([ids]), golden[None, None], manifest["tokens"]["eos_ids"][0])
        assert got["answer"] == tokenizer.decode(expected.tokens, skip_special_tokens=True).strip()
        assert got["tokens"] >= 1 and got["image_encode_ms"] > 0 and got["first_token_ms"] > got["image_encode_ms"]


@pytest.mark.parametrize("preprocess", ["jvm", "python"])
def test_host_flow_names_a_damaged_file(exported, tmp_path, capsys, preprocess):
    if preprocess == "jvm":
        _need_jvm()
    result, _ = exported
    copy = tmp_path / "model"
    shutil.copytree(result.out_dir, copy)
    pte = copy / load_manifest(copy)["artifacts"]["executorch-8da4w"]["files"]["program"]["path"]
    pte.write_bytes(pte.read_bytes()[:-100])
    image = copy / "app_golden" / "item0.png"
    args = [str(copy), "--image", str(image), "--question", "What is red?"]
    assert app.main(args + (["--python-preprocess"] if preprocess == "python" else [])) == 2
    err = capsys.readouterr().err
    assert pte.name in err and "truncated" in err

    missing = [str(result.out_dir), "--image", str(tmp_path / "nope.png"), "--question", "What is red?"]
    assert app.main(missing + (["--python-preprocess"] if preprocess == "python" else [])) == 2
    assert "nope.png" in capsys.readouterr().err

    (copy / "manifest.json").write_text("{")
    assert app.main(args + (["--python-preprocess"] if preprocess == "python" else [])) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_app_kotlin_compiles_against_core_and_the_api_signature_stubs(tmp_path):
    """Not an Android build: kotlinc against android_demo/typecheck/stubs (signatures of the Android,
    AndroidX and executorch-android 1.5 calls the app makes). Catches type errors and calls to
    LlmModule methods that do not exist. The Android snippet of docs/EXPORT.md is compiled with the app."""
    _need_jvm()
    if shutil.which("kotlinc") is None:
        if os.environ.get("CI"):
            pytest.fail("kotlinc missing (apt-get install kotlin); .ci/run installs it")
        pytest.skip("kotlinc is not installed (apt-get install kotlin)")
    script = CORE.parent / "typecheck" / "typecheck.sh"
    snippet = tmp_path / "DocSnippet.kt"
    snippet.write_text(doc_snippet("Android: ExecuTorch's `LlmModule`", "kotlin"))
    run = subprocess.run([str(script), str(snippet)], capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "compiles against core" in run.stdout


def test_host_flow_refuses_a_pixel_bomb_and_a_question_that_leaves_no_room(exported, tmp_path, capsys):
    from PIL import Image

    result, _ = exported
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14_000, 14_000)).save(bomb)  # 196 M pixels in a few kB
    assert app.main([str(result.out_dir), "--image", str(bomb), "--question", "What is red?", "--python-preprocess"]) == 2
    assert "bomb.png: too many pixels" in capsys.readouterr().err

    image = result.out_dir / "app_golden" / "item0.png"
    long = " ".join(["what is red"] * 60)
    assert app.main([str(result.out_dir), "--image", str(image), "--question", long, "--python-preprocess"]) == 2
    err = capsys.readouterr().err
    assert "leaves no room for an answer; ask a shorter question" in err and "Traceback" not in err


def test_jvm_reads_every_image_mode_into_the_python_loaders_pixels(exported, tmp_path):
    """Gray (also with a transparent colour), 16-bit gray, palette with a transparent colour, gray + alpha, RGBA:
    JVM == vlsi_edge.data.images, bit for bit."""
    _need_jvm()
    from PIL import Image

    result, _ = exported
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    images = {
        "L": Image.fromarray(rgb[..., 0]),
        "L+tRNS": Image.fromarray(rgb[..., 0]),
        "I;16": Image.fromarray(rgb[..., 0].astype(np.uint16) * 251),
        "P": palette,
        "LA": Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"),
        "RGBA": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
    }
    for mode, image in images.items():
        path = tmp_path / f"{mode.replace(';', '').replace('+', '')}.png"
        image.save(path, **({"transparency": 3} if mode in ("P", "L+tRNS") else {}))
        jvm = app.prepare_jvm(result.out_dir, path, "what is red?", None).pixels
        python = app.prepare_python(result.out_dir, path, "what is red?", None).pixels
        np.testing.assert_array_equal(jvm, python, err_msg=mode)
