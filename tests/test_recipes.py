"""Every training recipe runs two steps of each stage on tiny random models of its family.

The tiny models keep the real checkpoints' decoder depth (so the recipe's target layers are valid)
at a width that fits this CPU; dtype, teacher quantization, LoRA and gradient checkpointing are the
recipe's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vlsi_edge.config import load_config
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.distill import trainer
from vlsi_edge.recipes import RunConfig

ROOT = Path(__file__).resolve().parents[1]
# Decoder depth of the checkpoints each recipe names (public configs): (teacher, student).
DEPTHS = {
    "toy.yaml": (8, 4),
    "qwen2vl-72b-to-2b.yaml": (80, 28),
    "qwen2vl-72b-to-7b.yaml": (80, 28),
    "llava-ov-72b-to-0.5b.yaml": (80, 24),
    "smolvlm-2.2b-to-256m.yaml": (24, 30),
}
RECIPES = sorted((ROOT / "train").glob("*.yaml"))


def test_every_recipe_has_depths():
    assert {p.name for p in RECIPES} == set(DEPTHS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_runs_two_steps_on_tiny_models(recipe, tmp_path):
    teacher_layers, student_layers = DEPTHS[recipe.name]
    config = load_config(RunConfig, recipe, [
        f"model.teacher=tiny:{teacher_layers}", f"model.student=tiny:{student_layers}",
        "data.dataset=shapes", "data.image_root=null", "data.image_size=64", "data.eval_size=2",
        "train.batch_size=2", "train.grad_accum=1", "train.checkpoint_every=1000",
        "train.verbalize.steps=2", "train.interact.steps=2", "train.sft.steps=2",
    ])
    run = RunDir.create(tmp_path, "run", config)
    progress, session = trainer.train(config, run)
    assert [name for name in progress.stages] == ["verbalize_teacher", "verbalize_student", "interact", "sft"]
    assert all(stage["steps"] == 2 for stage in progress.stages.values())
    assert set(progress.evals) == {"teacher", "student_base", "after_step2", "after_step3"}
    assert sum(map(sum, progress.heatmap["early"] + progress.heatmap.get("late", []))) == 2 * len(session.heads.student_verbalizers)
    assert (run.path / "student" / "config.json").is_file()
