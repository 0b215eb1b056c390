"""kill -9 at any moment, then `--resume`: the student is bitwise the uninterrupted run's.

One run is killed (SIGKILL, no cleanup of any kind) five times in a row, each resume dying at the next
point: in the middle of a training step (step 1 and step 3), half-way through writing state.pt,
between the two renames that put a new checkpoint in place (the old one moved aside, the new one not
yet there), and after them (the old one not yet removed). A small driver picks each moment by wrapping
the function that would run next; the kill itself is the real signal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.test_train import TINY_RUN
from vlsi_edge.train import main

DRIVER = '''
import os, shutil, signal, sys
from pathlib import Path
from vlsi_edge import atomic
from vlsi_edge.distill import trainer
from vlsi_edge.train import main

point, argv = sys.argv[1], sys.argv[2:]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point.startswith("step:"):  # step:<stage prefix>:<n>: inside the n-th step of that stage run by this process
    _, prefix, n = point.split(":")
    real_loss, calls = trainer.stage_loss, []
    def stage_loss(s, stage, *args):
        calls.extend([stage] if stage.startswith(prefix) else [])
        if len(calls) == int(n):
            die()
        return real_loss(s, stage, *args)
    trainer.stage_loss = stage_loss
elif point == "state-write":  # half of state.pt in its temporary file
    real_write = atomic.write_bytes
    def write_bytes(path, data):
        if Path(path).name == "state.pt":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            (Path(path).parent / ".state.pt.killed.tmp").write_bytes(data[: len(data) // 2])
            die()
        real_write(path, data)
    atomic.write_bytes = write_bytes
elif point == "between-renames":  # the old checkpoint moved aside, the new one not yet in place
    real_replace = os.replace
    def replace(src, dst):
        if Path(src).name == ".staging":
            die()
        real_replace(src, dst)
    os.replace = replace
elif point == "before-cleanup":  # the new checkpoint in place, the old one not yet removed
    real_rmtree = shutil.rmtree
    def rmtree(path, *args, **kwargs):
        if Path(path).name == ".last.old" and not (Path(path).parent / ".staging").exists():
            die()
        real_rmtree(path, *args, **kwargs)
    shutil.rmtree = rmtree
sys.exit(main(argv))
'''

SETS = [a for o in TINY_RUN for a in ("--set", o)]


def _progress(run: Path) -> tuple[int, int]:
    saved = json.loads((run / "checkpoints" / "last" / "progress.json").read_text())
    return saved["stage_index"], saved["step"]


def test_kill_9_anywhere_then_resume_is_bitwise_the_uninterrupted_run(tmp_path):
    assert main(["--runs-dir", str(tmp_path), "--name", "full", *SETS]) == 0
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run = tmp_path / "killed"
    checkpoints = run / "checkpoints"
    first = ["--runs-dir", str(tmp_path), "--name", "killed", *SETS]
    seen = []
    for point, args in [("step:verbalize:2", first), ("state-write", ["--resume", str(run)]),
                        ("between-renames", ["--resume", str(run)]), ("before-cleanup", ["--resume", str(run)]),
                        ("step:sft:1", ["--resume", str(run)])]:
        proc = subprocess.run([sys.executable, str(driver), point, *args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], timeout=600)
        assert proc.returncode == -signal.SIGKILL, f"{point}: {proc.returncode}\n{proc.stderr[-3000:]}"
        if point == "state-write":
            assert (checkpoints / ".staging" / ".state.pt.killed.tmp").is_file()
        if point == "between-renames":
            assert not (checkpoints / "last").exists() and (checkpoints / ".last.old").is_dir()
        if point == "before-cleanup":
            assert (checkpoints / "last").is_dir() and (checkpoints / ".last.old").is_dir()
        if (checkpoints / "last").exists():
            seen.append(_progress(run))
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # every resume went on from where the last stopped

    assert main(["--resume", str(run)]) == 0
    full, resumed = (load_file(r / "student" / "model.safetensors") for r in (tmp_path / "full", run))
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    steps = [(m["stage"], m["step"]) for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert len(steps) == len(set(steps))  # each step logged once despite five deaths
