"""Resuming never runs code from a run directory, and a damaged or foreign checkpoint gets a sentence."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch

from tests.test_train import tiny_config
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.distill import trainer
from vlsi_edge.train import main

PAYLOAD_MARK = "vlsi-edge-payload-ran"


class Payload:
    """Unpickling this runs code: it writes a file (what a crafted state.pt could do)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, PAYLOAD_MARK))


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory) -> Path:
    """A run killed after its first checkpoint (verbalizer step 1), as train writes it."""
    root = tmp_path_factory.mktemp("runs")
    config = tiny_config("train.verbalize.steps=2", "train.interact.steps=1", "train.sft.steps=1")
    run = RunDir.create(root, "r", config)
    real = trainer.stage_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    trainer.stage_loss = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.train(config, run)
    finally:
        trainer.stage_loss = real
    assert (run.checkpoint / "state.pt").is_file()
    return run.path


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "r"))


def _resume(run: Path, capsys) -> tuple[int, str]:
    code = main(["--resume", str(run)])
    return code, capsys.readouterr().err


def test_a_crafted_state_pt_does_not_run(checkpointed, tmp_path, capsys):
    run = _copy(checkpointed, tmp_path)
    marker = tmp_path / "pwned.txt"
    (run / "checkpoints" / "last" / "state.pt").write_bytes(pickle.dumps({"student": Payload(marker)}))
    code, err = _resume(run, capsys)
    assert code == 2 and "state.pt: not a vlsi_edge checkpoint that loads as plain data" in err
    assert not marker.exists()


def test_a_truncated_state_pt_is_refused(checkpointed, tmp_path, capsys):
    run = _copy(checkpointed, tmp_path)
    state = run / "checkpoints" / "last" / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    code, err = _resume(run, capsys)
    assert code == 2 and "truncated, foreign or written by an older version" in err and "Traceback" not in err


def test_a_checkpoint_of_another_run_is_refused(checkpointed, tmp_path, capsys):
    run = _copy(checkpointed, tmp_path)
    state = torch.load(run / "checkpoints" / "last" / "state.pt", weights_only=True)
    state["config_sha256"] = "0" * 64
    torch.save(state, run / "checkpoints" / "last" / "state.pt")
    code, err = _resume(run, capsys)
    assert code == 2 and "belongs to another run" in err


def test_garbage_progress_is_refused(checkpointed, tmp_path, capsys):
    run = _copy(checkpointed, tmp_path)
    (run / "checkpoints" / "last" / "progress.json").write_text("{not json")
    code, err = _resume(run, capsys)
    assert code == 2 and "progress.json: not valid JSON" in err


def test_the_saved_state_is_plain_data(checkpointed):
    state = torch.load(checkpointed / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert set(state) >= {"student", "optimizer", "scheduler", "rng", "config_sha256"}
    json.dumps(state["rng"]["python"])  # python's RNG state as numbers
    assert sys.modules.get("numpy") is not None and isinstance(state["rng"]["numpy"][1], torch.Tensor)
