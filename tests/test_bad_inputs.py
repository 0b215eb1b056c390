"""The bad-input battery: every CLI (train, export, app, bench, zoo) and the dataset loader, fed what a new
user or a hostile file would feed them. Each case asserts one sentence naming the key or file, exit 2 (or
argparse's usage line, also exit 2), no traceback, and an unchanged world: the working directory, with an
earlier run that runs/latest points at, is checksummed before and after.

Everything here is refused before a model loads (or, for the app, before a program runs), so the battery
runs in seconds. More cases that need a real export or run: test_export.py (never replaces, damaged
model, short context), test_checkpoint_safety.py (state.pt), test_contracts.py (manifest paths),
test_android_demo.py (the app on a damaged export), test_images.py (every image mode).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vlsi_edge.train import main


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
    import contextlib
    import io

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


SET_CASES = [
    ("train.sft.lr=.inf", "train.sft.lr: inf is not a finite number"),
    ("train.sft.lr=.nan", "train.sft.lr: nan is not a finite number"),
    ("train.interact.warmup=-1", "train.interact.warmup: -1 must be >= 0"),
    ("train.sft.lr_min=1", "train.sft.lr_min: 1.0 must be <= lr"),
    ("train.checkpoint_every=0", "train.checkpoint_every: 0 must be >= 1"),
    ("train.log_every=0", "train.log_every: 0 must be >= 1"),
    ("train.lora_r=0", "train.lora_r: 0 must be >= 1"),
    ("train.batch_size=0", "train.batch_size (0)"),
    ("train.grad_clip=-1", "train.grad_clip: -1.0 must be >= 0"),
    ("seed=-1", "seed: -1 must be in [0, 2^31)"),
    ("seed=1099511627776", "seed: 1099511627776 must be in [0, 2^31)"),
    ("data.seed=-3", "data.seed: -3 must be in [0, 2^31)"),
    ("distill.kd_temperature=0", "distill.kd_temperature: 0.0 must be > 0"),
    ("distill.chunk_size=-1", "distill.chunk_size: -1 must be >= 0"),
    ("distill.temperature_scale=-2", "distill.temperature_scale: -2.0 must be > 0"),
    ("distill.kl=sideways", "distill.kl: 'sideways' is not allowed"),
    ("model.family=gpt", "model.family: 'gpt' is not allowed; allowed: idefics3"),
    ("model.family=qwen2_vl", "is a idefics3 checkpoint but model.family is qwen2_vl"),
    ("model.teacher=/nonexistent/teacher", "model.teacher: '/nonexistent/teacher' is not a directory"),
    ("model.teacher=zoo:giant", "model.teacher: no zoo model 'giant'"),
    ("model.student=tiny:x", "model.student: 'tiny:x': expected tiny:<layers>"),
    ("model.teacher=a_file", "model.teacher: 'a_file' is not a directory"),
    ("model.teacher=runs/old", "model.teacher: runs/old/config.json: no such file"),
    ("data.dataset=/nonexistent/data.json", "/nonexistent/data.json"),
    ("data.dataset=binary.bin", "binary.bin"),
    ("data.dataset=empty.json", "empty.json"),
    ("data.image_root=/nonexistent", "data.image_root: /nonexistent is not a directory"),
    ("nokey", "expected KEY=VALUE"),
    ("distill.nokey=1", "distill.nokey: unknown key"),
]


@pytest.mark.parametrize("override, message", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set_is_refused_before_anything_changes(world, capsys, override, message):
    before = snapshot(world)
    code = main(["--runs-dir", "runs", "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert snapshot(world) == before


ARG_CASES = [
    (["--name", "../escaped"], "run name '../escaped': use a plain folder name"),
    (["--name", "latest"], "run name 'latest'"),
    (["--name", "old"], "runs/old already exists"),
    (["--runs-dir", "a_file"], "runs directory a_file: exists and is not a directory"),
    (["--recipe", "binary.bin"], "binary.bin"),
    (["--recipe", "missing.yaml"], "missing.yaml: no such file"),
    (["--recipe", "a_file"], "a_file: expected a mapping"),
    (["--resume", "a_file"], "a_file"),
    (["--resume", "nowhere"], "nowhere"),
    (["--cache-teacher", "runs"], "--cache-teacher runs: a folder with other files in it, not a teacher cache"),
    (["--cache-teacher", "a_file/cache"], "--cache-teacher a_file/cache: a_file is a file, not a folder"),
    (["--cache-teacher", "new", "--set", "model.teacher=/nonexistent"], "model.teacher: '/nonexistent'"),
]


@pytest.mark.parametrize("args, message", ARG_CASES, ids=[" ".join(c[0]) for c in ARG_CASES])
def test_bad_arguments_are_refused_before_anything_changes(world, capsys, args, message):
    before = snapshot(world)
    code = main(["--runs-dir", "runs", *args] if "--runs-dir" not in args else args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert snapshot(world) == before


def test_a_diverging_run_stops_naming_stage_and_step_and_saves_no_student(world, capsys, monkeypatch):
    import torch

    from tests.test_train import TINY_RUN
    from vlsi_edge.distill import trainer

    real = trainer.stage_loss

    def nan_at_interact_step_1(s, stage, samples, where):
        loss, terms, matches, n = real(s, stage, samples, where)
        return (loss * float("nan"), terms, matches, n) if stage == "interact" and where[0] == 1 else (loss, terms, matches, n)

    monkeypatch.setattr(trainer, "stage_loss", nan_at_interact_step_1)
    code = main(["--runs-dir", "runs", "--name", "diverged", *[a for o in TINY_RUN for a in ("--set", o)]])
    err = capsys.readouterr().err
    assert code == 1 and "stage interact, step 1: the loss is nan" in err and "Traceback" not in err, err
    run = world / "runs" / "diverged"
    assert not (run / "student").exists()
    state = torch.load(run / "checkpoints" / "last" / "state.pt", weights_only=True)  # the last good step's
    assert all(torch.isfinite(v).all() for v in state["student"].values())


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_app_refuses_a_bad_answer_length(world, capsys, value):
    from vlsi_edge import app

    with pytest.raises(SystemExit) as exit_:
        app.main([str(world), "--image", "x.png", "--question", "q", "--max-new-tokens", value])
    assert exit_.value.code == 2 and f"argument --max-new-tokens: '{value}' is not a whole number >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Dataset files: through `train --set data.dataset=...` (the preflight), and the loader itself
# ------------------------------------------------------------------------------------------------

def _record(image="ok.png", **extra) -> dict:
    return {"image": image, "question": "what?", "answer": "a", **extra}


DATASET_CASES = {  # name -> (records or raw text, extra --set, message)
    "record-not-object": ([["ok.png"]], [], "record 0 is a list, expected an object"),
    "no-image-key": ([{"question": "q", "answer": "a"}], [], "record 0 (id '0'): missing key 'image'"),
    "image-not-string": ([_record(image=3)], [], "key 'image' must be a non-empty path string, got 3"),
    "question-not-string": ([_record(question=None)], [], "missing or non-string key 'question'"),
    "missing-image": ([_record(image="gone.png")], [], "image file not found"),
    "turns-out-of-order": ([{"image": "ok.png", "conversations": [{"from": "gpt", "value": "a"}]}], [],
                           "conversations[0] has 'from': 'gpt', expected 'human'"),
    "question-without-answer": ([{"image": "ok.png", "conversations": [{"from": "human", "value": "q"}]}], [],
                                "conversation ends with a human turn that has no gpt answer"),
    "neither-layout": ([{"image": "ok.png", "text": "hi"}], [], "missing key 'conversations' (LLaVA format)"),
    "bad-jsonl-line": ('{"image": "ok.png", "question": "q", "answer": "a"}\n{oops\n', [], "line 2 is not valid JSON"),
    "sandbox-dotdot": ([_record(image="../outside.png")], ["data.image_sandbox=true"],
                       "image '../outside.png' lies outside the image root"),
    "sandbox-absolute": ([_record(image="ABSOLUTE")], ["data.image_sandbox=true"], "lies outside the image root"),
    "sandbox-link": ([_record(image="link.png")], ["data.image_sandbox=true"], "image 'link.png' lies outside"),
}


def _write_dataset(world: Path, name: str) -> Path:
    import json

    content = DATASET_CASES[name][0]
    path = world / "data" / (f"{name}.jsonl" if isinstance(content, str) else f"{name}.json")
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content).replace("ABSOLUTE", str(world / "outside.png")))
    return path


@pytest.mark.parametrize("name", DATASET_CASES)
def test_a_bad_dataset_file_is_refused_before_training(world, name):
    path = _write_dataset(world, name)
    overrides = [f"data.dataset={path}", *DATASET_CASES[name][1]]
    refused(world, main, ["--runs-dir", "runs", *[a for o in overrides for a in ("--set", o)]], DATASET_CASES[name][2])


def test_the_sandbox_is_opt_in_and_images_outside_the_root_are_reported(world, caplog):
    from vlsi_edge.data import load_conversations

    path = world / "data" / "shared.json"
    path.write_text('[{"image": "../outside.png", "question": "q", "answer": "a"}]')
    assert load_conversations(path)[0].image.size == (8, 8)  # read as written (LLaVA files point at image stores)
    assert "1 images lie outside the image root" in caplog.text and "data.image_sandbox=true" in caplog.text


@pytest.mark.parametrize("image, message", [
    ("huge.png", "has 81 megapixels, over the 50 the loader accepts"),
    ("cut.png", "is unreadable or corrupt"),
])
def test_the_loader_refuses_oversized_and_truncated_images_naming_them(world, image, message):
    from vlsi_edge.data import DatasetError, load_conversations

    path = world / "data" / "imgs.json"
    path.write_text(f'[{{"image": "{image}", "question": "q", "answer": "a"}}]')
    before = snapshot(world)
    with pytest.raises(DatasetError, match=f"{image}.*{message}"):
        load_conversations(path)
    assert snapshot(world) == before


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


# ------------------------------------------------------------------------------------------------
# The boundary itself: what is ours is a bug report, what is the user's is a sentence
# ------------------------------------------------------------------------------------------------

def test_every_cli_main_is_behind_the_boundary():
    from vlsi_edge import app, bench, export, train
    from vlsi_edge.zoo import __main__ as zoo

    for module in (train, export, app, bench, zoo):
        assert getattr(module.main, "__wrapped__", None) is not None, f"{module.__name__}.main has no error boundary"


def test_the_boundary_tells_a_bug_from_bad_input(capsys):
    from vlsi_edge.errors import BAD_INPUT, BUG, INTERRUPTED, InputError, boundary

    def failing(error):
        @boundary
        def main(argv=None):
            raise error
        return main()

    assert failing(ZeroDivisionError("division by zero")) == BUG == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "this is a bug in vlsi_edge" in err
    assert failing(InputError("x.yaml: key y must be >= 1")) == BAD_INPUT == 2
    assert capsys.readouterr().err == "error: x.yaml: key y must be >= 1\n"
    assert failing(PermissionError(13, "Permission denied", "out/")) == BAD_INPUT
    assert "Permission denied: 'out/'" in capsys.readouterr().err
    assert failing(KeyboardInterrupt()) == INTERRUPTED


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
     "cannot load the weights (SafetensorError"),
    (lambda d: (d / "tokenizer.json").unlink(), "cannot load the processor"),
    (lambda d: (d / "config.json").write_text("{"), "config.json: not valid JSON"),
], ids=["truncated weights", "no tokenizer.json", "garbage config.json"])
def test_train_names_a_damaged_student_directory_and_leaves_no_run(world, damage, message):
    import shutil

    from vlsi_edge.families.sources import zoo_path

    student = world / "student"
    shutil.copytree(zoo_path("student"), student)
    damage(student)
    refused(world, main, ["--runs-dir", "runs", "--set", f"model.student={student}"], message)


def test_a_student_tokenizer_with_fewer_merges_is_refused_before_any_weights_load(world):
    """The student directory has no weights at all: the refusal must come from the preflight."""
    import json
    import shutil

    from vlsi_edge.families.sources import zoo_path

    student = world / "student"
    shutil.copytree(zoo_path("student"), student)
    (student / "model.safetensors").unlink()
    # The zoo's BPE without its last 40 merges: every remaining token keeps its id, words split differently.
    saved = json.loads((student / "tokenizer.json").read_text())
    model = saved["model"]
    dropped = {"".join(pair) for pair in model["merges"][-40:]}
    model["merges"] = model["merges"][:-40]
    model["vocab"] = {token: i for token, i in model["vocab"].items() if token not in dropped}
    (student / "tokenizer.json").write_text(json.dumps(saved))
    refused(world, main, ["--runs-dir", "runs", "--set", f"model.student={student}"],
            "teacher and student tokenize")
