"""The bad-input battery for export, bench, zoo and the app (train and the loader: test_bad_inputs.py): each
case gets one sentence naming the key or file, exit 2 (or argparse's usage line, also exit 2), no traceback,
and an unchanged world (`refused` in conftest.py). All refused before a model loads or a program runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import refused

# ------------------------------------------------------------------------------------------------
# export: everything here is refused before a model loads
# ------------------------------------------------------------------------------------------------

EXPORT_CASES = [
    (["--target", "nope"], "unknown target 'nope'; known targets: android-arm64"),
    (["--target", "a_file"], "a_file: expected a mapping"),
    (["--target", "binary.bin"], "binary.bin: not UTF-8 text"),
    (["--set", "max_context_len=-1"], "max_context_len: -1 is too small; use >= 16"),
    (["--set", "onnx.schemes=[int3]"], "onnx.schemes[0]: 'int3' is not allowed"),
    (["--set", "executorch.schemes=[8da2w]"], "executorch.schemes[0]: '8da2w' is not allowed"),
    (["--set", "validation.size=0"], "validation.size: 0 must be >= 1"),
    (["--set", "validation.timing_size=0"], "validation.timing_size: 0 must be >= 1"),
    (["--set", "validation.jobs=-1"], "validation.jobs: -1 must be >= 0 (0: one per core)"),
    (["--set", "onnx.int4_method=awq"], "onnx.int4_method: 'awq' is not allowed"),
    (["--set", "executorch.int4_method=gptq"], "executorch.int4_method: 'gptq' is not allowed"),
    (["--model", "zoo:student", "--set", "onnx.int4_method=gptq", "--set", "onnx.calibration_data=/nope/chat.json"],
     "onnx.calibration_data: /nope/chat.json: no such file"),
    (["--set", "image_size=0"], "image_size: 0 must be >= 1 (or null)"),
    (["--model", "zoo:student", "--set", "image_size=80"],
     "image_size: 80: this idefics3 model takes 96 px images only (its vision tower's size"),
    (["--run", "a_file"], "no student/ model in this run directory"),
    ([], "runs/old: no student/ model in this run directory (has the run finished?)"),
    (["--model", "/nonexistent"], "/nonexistent/config.json: no such file"),
    (["--model", "garbage_model"], "garbage_model/config.json: not valid JSON"),
    (["--model", "list_model"], "model_type None is not a supported family"),
    (["--model", "alien_model"], "model_type 'gpt2' is not a supported family; supported: idefics3"),
    (["--model", "onevision_model"], "LLaVA-OneVision checkpoints are not the `llava` family"),
    (["--model", "zoo:giant"], "no zoo model 'giant'"),
    (["--model", "zoo:student", "--out", "a_file/x"], "a_file is a file, not a folder; choose another --out"),
    (["--model", "zoo:student", "--out", "."], ".: already exists; pass --overwrite"),
    (["--model", "zoo:student", "--out", ".", "--overwrite"], "not an export directory (no manifest.json)"),
    (["--model", "zoo:student", "--out", "runs/old", "--overwrite"], "runs/old: not an export directory"),
    (["--model", "zoo:student", "--out", "runs/old/x"], "inside"),
]


@pytest.mark.parametrize("args, message", EXPORT_CASES, ids=[" ".join(c[0]) or "latest-unfinished" for c in EXPORT_CASES])
def test_export_refuses_bad_input_before_loading_anything(world, args, message):
    from vlsi_edge import export

    refused(world, export.main, ["--target", "android-arm64", *args] if "--target" not in args else args, message)


# ------------------------------------------------------------------------------------------------
# bench: arguments and configs are checked before minutes of measuring
# ------------------------------------------------------------------------------------------------

BENCH_CASES = [
    (["distill", "--rows", "nope"], "--rows: unknown ['nope']"),
    (["distill", "--seeds", "-1"], "argument --seeds: '-1' is not a whole number >= 0"),
    (["distill", "--set", "train.sft.lr=.nan"], "train.sft.lr: nan is not a finite number"),
    (["distill", "--set", "seed=40", "--set", "data.labelled=0"], "seed: 40 must be < 32 with an unlimited"),
    (["distill", "--runs-dir", "a_file"], "--runs-dir a_file: a_file is a file, not a folder"),
    (["--out", "a_file", "distill"], "--out a_file: a_file is a file, not a folder"),
    (["runtime", "--models", "giant"], "--models: unknown ['giant']; known: toy"),
    (["runtime", "--threads", "0"], "argument --threads: '0' is not a whole number >= 1"),
    (["runtime", "--items", "x"], "argument --items: 'x' is not a whole number >= 1"),
    (["runtime", "--set", "onnx.schemes=[int3]"], "onnx.schemes[0]: 'int3' is not allowed"),
    (["train-cost", "--steps", "0"], "argument --steps: '0' is not a whole number >= 1"),
    (["train-cost", "--set", "seed=-1"], "seed: -1 must be in [0, 2^31)"),
    (["probe", "--family", "gpt"], "unknown model family 'gpt'; known: idefics3"),
    (["probe", "--model", "tiny:x"], "model source 'tiny:x': expected tiny:<layers>"),
    (["probe", "--model", "/nonexistent"], "/nonexistent/config.json: no such file"),
    (["probe", "--model", "garbage_model"], "garbage_model/config.json: not valid JSON"),
]


@pytest.mark.parametrize("args, message", BENCH_CASES, ids=[" ".join(c[0]) for c in BENCH_CASES])
def test_bench_refuses_bad_input_before_measuring(world, args, message):
    from vlsi_edge import bench

    refused(world, bench.main, args, message)


# ------------------------------------------------------------------------------------------------
# zoo: a damaged zoo names its card or its missing weights
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def damaged_zoo(world, monkeypatch):
    import shutil

    from vlsi_edge.families import sources

    zoo = world / "zoo"
    shutil.copytree(sources.ZOO_DIR / "student", zoo / "student")
    monkeypatch.setattr(sources, "ZOO_DIR", zoo)
    return zoo


def test_zoo_refuses_unknown_names_and_commands(world):
    from vlsi_edge.zoo.__main__ import main as zoo

    refused(world, zoo, ["evaluate", "--only", "nope"], "argument --only: invalid choice: 'nope'")
    refused(world, zoo, ["frobnicate"], "invalid choice: 'frobnicate'")


@pytest.mark.parametrize("damage, message", [
    (lambda zoo: (zoo / "student" / "card.json").write_text("{"), "student/card.json: not a zoo card"),
    (lambda zoo: (zoo / "student" / "card.json").write_text('{"family": "gpt"}'), "unknown model family 'gpt'"),
    (lambda zoo: (zoo / "student" / "model.safetensors").unlink(), "model.safetensors"),
    (lambda zoo: (zoo / "student" / "model.safetensors").write_bytes(b"\0" * 64), "student"),
], ids=["garbage card", "unknown family", "no weights", "truncated weights"])
def test_zoo_evaluate_names_what_is_damaged(world, damaged_zoo, damage, message):
    from vlsi_edge.zoo.__main__ import main as zoo

    damage(damaged_zoo)
    refused(world, zoo, ["evaluate", "--only", "student"], message)


# ------------------------------------------------------------------------------------------------
# app: a crafted export (every checksum right) with one thing wrong; nothing is read outside it
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def crafted(world):
    """An export directory that passes every manifest check: a fake program and tokenizer with true checksums."""
    import json

    from PIL import Image

    from tests.test_contracts import minimal
    from vlsi_edge.contracts.manifest import sha256

    export = world / "export"
    export.mkdir()
    (export / "model.pte").write_bytes(b"not really a program")
    (export / "tokenizer.json").write_text("{}")
    manifest = minimal()
    entry = {"path": "model.pte", "sha256": sha256(export / "model.pte"), "bytes": 20}
    manifest["artifacts"] = {"executorch-8da4w": {"runtime": "executorch", "scheme": "8da4w", "stock_runner": True,
                                                  "files": {"program": entry}}}
    manifest["tokenizer"] = {"path": "tokenizer.json", "sha256": sha256(export / "tokenizer.json"), "bytes": 2}
    (export / "manifest.json").write_text(json.dumps(manifest))
    Image.new("RGB", (8, 8)).save(world / "photo.png")
    return export


def _edit_manifest(export: Path, change) -> None:
    import json

    manifest = json.loads((export / "manifest.json").read_text())
    change(manifest)
    (export / "manifest.json").write_text(json.dumps(manifest))


def _program(manifest) -> dict:
    return manifest["artifacts"]["executorch-8da4w"]["files"]["program"]


APP_CASES = {  # name -> (change to the crafted export, extra args, message)
    "no-export": (lambda e: None, ["--image", "photo.png", "--question", "q", "--", "nowhere"],
                  "nowhere/manifest.json: no manifest"),
    "garbage-manifest": (lambda e: (e / "manifest.json").write_text("{"), [], "manifest.json: not valid JSON"),
    "no-prompt": (lambda e: _edit_manifest(e, lambda m: m.pop("prompt")), [], "missing key 'prompt'"),
    "path-dotdot": (lambda e: _edit_manifest(e, lambda m: _program(m).update(path="../outside.png")), [],
                    "file path '../outside.png' is not a normalised path inside the export directory"),
    "path-absolute": (lambda e: _edit_manifest(e, lambda m: _program(m).update(path="/etc/passwd")), [],
                      "file path '/etc/passwd' is not a normalised path"),
    "tampered-program": (lambda e: (e / "model.pte").write_bytes(b"not really a PROGRAM"), [],
                         "model.pte: sha256 differs from manifest.json"),
    "truncated-program": (lambda e: (e / "model.pte").write_bytes(b"not"), [], "model.pte: 3 bytes, but"),
    "unknown-artifact": (lambda e: None, ["--artifact", "onnx-int4"], "no app-runnable artifact onnx-int4"),
    "empty-question": (lambda e: None, ["--question", "  "], "type a question about the image first"),
    "missing-image": (lambda e: None, ["--image", "nope.png"], "nope.png: no such image file"),
    "image-is-text": (lambda e: None, ["--image", "a_file"], "a_file: not an image PIL can read"),
    "pixel-bomb": (lambda e: None, ["--image", "data/huge.png"], "huge.png: too many pixels (9000x9000"),
}


@pytest.mark.parametrize("name", APP_CASES)
def test_app_refuses_a_bad_export_or_image_with_a_sentence(world, crafted, name):
    from vlsi_edge import app

    damage, extra, message = APP_CASES[name]
    damage(crafted)
    args = {"--image": "photo.png", "--question": "what is red?"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    export = extra[-1] if "--" in extra else str(crafted)
    argv = [export, *[a for kv in args.items() if kv[0] != "--" for a in kv], "--python-preprocess"]
    refused(world, app.main, argv, message)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_app_refuses_a_bad_answer_length(world, value):
    from vlsi_edge import app

    refused(world, app.main, [str(world), "--image", "x.png", "--question", "q", "--max-new-tokens", value],
            f"argument --max-new-tokens: '{value}' is not a whole number >= 1")
