"""The shipped toy zoo: loads offline, is what its cards say, and leaves room for distillation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.evaluate import evaluate
from vlsi_edge.families import check_vocab_compatible
from vlsi_edge.zoo import ZOO_DIR, load_pair, zoo_path


@pytest.fixture(scope="module")
def pair():
    return load_pair()


def test_cards_record_how_each_model_was_made(pair):
    for zoo in (pair.teacher, pair.student):
        card = zoo.card
        for key in ("spec", "data", "train", "wall_time_s", "parameters", "accuracy", "built_with", "command"):
            assert key in card, f"{zoo.name} card lacks {key}"
        assert card["parameters"] == sum(p.numel() for p in zoo.model.parameters())
        assert set(card["accuracy"]) == {"val", "test", "holdout"}
        assert card["train"]["steps"] > 0 and card["data"]["seed"] == 0


def test_teacher_is_deeper_and_clearly_better(pair):
    t, s = pair.teacher, pair.student
    assert len(t.family.decoder_layers(t.model)) >= 2 * len(s.family.decoder_layers(s.model)) >= 16
    assert t.card["parameters"] > 3 * s.card["parameters"]
    t_acc, s_acc = t.card["accuracy"]["test"]["accuracy"], s.card["accuracy"]["test"]["accuracy"]
    assert t_acc - s_acc >= 0.10
    # Clearly above chance: the test split's majority baselines average about 0.26.
    assert s_acc >= 0.30


def test_student_starts_from_the_teachers_vision_tower(pair):
    """As Qwen2-VL's sizes share one ViT: the same (frozen) tower, so the gap sits in the language model."""
    t, s = pair.teacher, pair.student
    (t_vision,), (s_vision,) = t.family.vision_modules(t.model), s.family.vision_modules(s.model)
    t_state, s_state = t_vision.state_dict(), s_vision.state_dict()
    assert t_state.keys() == s_state.keys()
    assert all(torch.equal(t_state[k], s_state[k]) for k in t_state)
    assert s.card["train"]["labelled"] == 2000 and s.card["train"]["vision_from"] == "teacher"


def test_cards_record_the_teachers_probe_and_the_sft_only_reference(pair):
    """The precondition for layer matching, as the zoo build measured it: the teacher's verbalized answer
    accuracy rises across depth instead of jumping in one layer."""
    probe = pair.teacher.card["probe"]
    assert len(probe["accuracy"]) == len(pair.teacher.family.decoder_layers(pair.teacher.model))  # 15 layers + final
    assert probe["summary"]["rise"] > 0.3 and probe["summary"]["largest_step_share"] < 0.5
    reference = pair.student.card["reference"]["sft_only"]
    assert reference["command"] == "python -m vlsi_edge.train --set distill.method=sft"
    assert set(reference["accuracy"]) == {"val", "test", "holdout"}


def test_pair_shares_a_vocabulary(pair):
    t, s = pair.teacher, pair.student
    width = check_vocab_compatible(t.family.tokenizer(t.processor), s.family.tokenizer(s.processor), t.model, s.model)
    assert width == len(s.family.tokenizer(s.processor))


def test_card_accuracy_reproduces_on_a_slice(pair):
    """The first 200 test items, re-scored in-process, are within sampling noise of the card's test accuracy.

    (The exact full-split check is `python -m vlsi_edge.zoo evaluate`, run by the next test.)
    """
    data = ShapesVQA("test", config=ShapesConfig(**pair.student.card["data"]))
    samples = [data[i] for i in range(200)]
    for zoo in (pair.teacher, pair.student):
        result = evaluate(zoo.model, zoo.family, zoo.processor, samples)
        assert abs(result["accuracy"] - zoo.card["accuracy"]["test"]["accuracy"]) < 0.08


def test_zoo_evaluate_command_reproduces_cards():
    """The README's main job: every split of both models within 1 point of the cards."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "vlsi_edge.zoo", "evaluate"], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok)") == 6, result.stdout


def test_zoo_is_small_and_safetensors():
    files = [p for p in ZOO_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    for name in ("teacher", "student"):
        assert (zoo_path(name) / "model.safetensors").is_file()
        assert json.loads((zoo_path(name) / "card.json").read_text())["name"] == name


def test_unknown_zoo_model_is_refused():
    with pytest.raises(FileNotFoundError, match="known: student, teacher"):
        zoo_path("giant")


def test_loaded_weights_are_deterministic(pair):
    """Loading twice gives the same logits (nothing is re-initialised on load)."""
    again = load_pair()
    data = ShapesVQA("val", config=ShapesConfig())
    from vlsi_edge.families import build_batch

    batch = build_batch(pair.student.family, pair.student.processor, [data[0], data[1]])
    with torch.no_grad():
        torch.testing.assert_close(pair.student.model(**batch).logits, again.student.model(**batch).logits)
