"""Bad input to the training CLI: one sentence naming the key or file, exit 2, no traceback, nothing created
and nothing changed (the runs directory, its earlier run and runs/latest are checksummed before and after).

Everything here is refused before a model loads, so the battery runs in seconds.
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


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A runs directory with an earlier run that runs/latest points at, and some files to point at."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    (runs / "old" / "student").mkdir(parents=True)
    (runs / "old" / "config.yaml").write_text("seed: 0\n")
    (runs / "latest").symlink_to("old")
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty.json").write_text("[]")
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
