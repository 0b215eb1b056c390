"""Resumable checkpoints: `checkpoints/last/` = state.pt (tensors, optimizer, RNG) + progress.json.

The directory is written beside the old one and swapped in whole (vlsi_edge.atomic.replace_dir), so a
run killed while saving still has its previous checkpoint.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict

import numpy as np
import torch

from vlsi_edge import atomic
from vlsi_edge.contracts.run_dir import RunDir


def exists(run: RunDir) -> bool:
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
            "numpy": np.random.get_state(),
            "matching": s.inputs.generator.get_state(),
        },
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    staging = run.path / "checkpoints" / ".staging"
    atomic.write_bytes(staging / "state.pt", buffer.getvalue())
    atomic.write_json(staging / "progress.json", asdict(progress))
    atomic.replace_dir(staging, run.checkpoint)


def load_progress(run: RunDir) -> dict:
    return json.loads((run.checkpoint / "progress.json").read_text())


def _state(run: RunDir) -> dict:
    return torch.load(run.checkpoint / "state.pt", weights_only=False)


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
    np.random.set_state(rng["numpy"])
    s.inputs.generator.set_state(rng["matching"])


def restore_optimizer(run: RunDir, optimizer, scheduler) -> None:
    state = _state(run)
    if state["optimizer"] is None:
        raise RuntimeError(f"{run.checkpoint}: checkpoint was taken between stages and holds no optimizer state")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
