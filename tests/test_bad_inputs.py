"""The bad-input battery, training and the dataset loader: fed what a new user or a hostile file would feed
them, each case gets one sentence naming the key or file, exit 2, no traceback, and an unchanged world (the
working directory, with an earlier run that runs/latest points at, checksummed before and after: `refused`
in conftest.py). The other CLIs: test_bad_inputs_tools.py.

Everything here is refused before a model loads, so the battery runs in seconds. More cases that need a
real export or run: test_export.py (never replaces, damaged model, short context), test_checkpoint_safety.py
(state.pt), test_contracts.py (manifest paths), test_android_demo.py (the app on a damaged export),
test_images.py (every image mode).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import refused, snapshot
from vlsi_edge.train import main

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
def test_bad_set_is_refused_before_anything_changes(world, override, message):
    refused(world, main, ["--runs-dir", "runs", "--set", override], message)


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
def test_bad_arguments_are_refused_before_anything_changes(world, args, message):
    refused(world, main, ["--runs-dir", "runs", *args] if "--runs-dir" not in args else args, message)


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
