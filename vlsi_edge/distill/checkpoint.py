"""Resumable checkpoints: `checkpoints/last/` = state.pt (tensors, optimizer, RNG) + progress.json.

The directory is written beside the old one and swapped in whole (vlsi_edge.atomic.replace_dir), so a
run killed while saving still has its previous checkpoint.

state.pt holds only tensors, numbers, strings and containers of them, and is read with
`torch.load(weights_only=True)`: run directories get shared, and a resume must never run code from one.
It records the sha256 of the run's config.yaml; a checkpoint from another run is refused.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict

import numpy as np
import torch

from vlsi_edge import atomic
from vlsi_edge.contracts.manifest import sha256
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.errors import InputError


class CheckpointError(InputError, ValueError):
    """A checkpoint that cannot be resumed from: truncated, foreign, from another run, or not data."""


def exists(run: RunDir) -> bool:
    atomic.recover_dir(run.checkpoint)  # a kill between save()'s two renames leaves only the previous one aside
    return (run.checkpoint / "progress.json").is_file()


def save(run: RunDir, s, progress, optimizer, scheduler) -> None:
    if not s.par.is_main:
        return
    state = {
        "student": s.models.student.state_dict(),
        "teacher_verbalizers": s.heads.teacher_verbalizers.state_dict() if s.heads.teacher_verbalizers is not None else {},
        "student_verbalizers": s.heads.student_verbalizers.state_dict(),
        "projections": s.heads.projections.state_dict() if s.heads.projections is not None else {},
        "best_student": s.best_student,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "matching": s.inputs.generator.get_state(),
        },
        "config_sha256": sha256(run.config_path),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    staging = run.path / "checkpoints" / ".staging"
    atomic.write_bytes(staging / "state.pt", buffer.getvalue())
    atomic.write_json(staging / "progress.json", asdict(progress))
    atomic.replace_dir(staging, run.checkpoint)


def load_progress(run: RunDir) -> dict:
    path = run.checkpoint / "progress.json"
    try:
        progress = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the checkpoint is damaged, start a new run") from None
    if not isinstance(progress, dict):
        raise CheckpointError(f"{path}: expected a JSON object; the checkpoint is damaged, start a new run")
    return progress


def _state(run: RunDir) -> dict:
    """state.pt as data only (no pickled code runs), checked to belong to this run."""
    path = run.checkpoint / "state.pt"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means: not a checkpoint we can trust
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a vlsi_edge checkpoint that loads as plain data ({first}); "
                              "it is truncated, foreign or written by an older version: start a new run") from None
    keys = {"student", "student_verbalizers", "optimizer", "scheduler", "rng", "config_sha256"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise CheckpointError(f"{path}: missing {sorted(keys - set(state)) if isinstance(state, dict) else 'everything'}; "
                              "not a vlsi_edge checkpoint")
    if state["config_sha256"] != sha256(run.config_path):
        raise CheckpointError(f"{path}: written for another config than {run.config_path}; it belongs to another run")
    return state


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list) -> None:
    kind, keys, pos, has_gauss, cached = state
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def restore_models(run: RunDir, s, lora_active: bool) -> None:
    """Load models, verbalizers and RNG state (wrapping the student in LoRA first if it was)."""
    state = _state(run)
    if lora_active:
        from vlsi_edge.distill.session import stage_parameters

        stage_parameters(s, "interact")  # wraps the student the same way the stage did
    s.models.student.load_state_dict(state["student"])
    if s.heads.teacher_verbalizers is not None:
        s.heads.teacher_verbalizers.load_state_dict(state["teacher_verbalizers"])
    s.heads.student_verbalizers.load_state_dict(state["student_verbalizers"])
    if s.heads.projections is not None:
        s.heads.projections.load_state_dict(state["projections"])
    s.best_student = state.get("best_student")
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    _set_numpy_state(rng["numpy"])
    s.inputs.generator.set_state(rng["matching"])


def restore_optimizer(run: RunDir, optimizer, scheduler) -> None:
    state = _state(run)
    if state["optimizer"] is None:
        raise RuntimeError(f"{run.checkpoint}: checkpoint was taken between stages and holds no optimizer state")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
