"""The VLsI trainer on tiny random models: who gets gradients, resume == uninterrupted, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from vlsi_edge.config import ConfigError, load_config
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.distill import trainer
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.session import build_session, stage_parameters
from vlsi_edge.recipes import RunConfig

TINY_RUN = [
    "model.teacher=tiny:4",
    "model.student=tiny:3",
    "data.image_size=64",
    "data.eval_size=4",
    "train.batch_size=2",
    "train.verbalize.steps=2",
    "train.interact.steps=3",
    "train.sft.steps=2",
    "train.early_stopping=0",
    "train.checkpoint_every=1",
    "train.log_every=1",
]


def tiny_config(*extra: str) -> RunConfig:
    return load_config(RunConfig, overrides=[*TINY_RUN, *extra])


@pytest.fixture(scope="module")
def session():
    return build_session(tiny_config(), Parallel())


def _params_of(module) -> set[int]:
    return {id(p) for p in module.parameters()}


@pytest.mark.parametrize("stage", ["verbalize_teacher", "verbalize_student", "interact", "final_kd", "sft"])
def test_gradients_exactly_where_the_stage_trains(session, stage):
    s = session
    trained = {id(p) for p in stage_parameters(s, stage)}
    for module in (s.models.teacher, s.models.student, s.heads.teacher_verbalizers, s.heads.student_verbalizers):
        module.zero_grad(set_to_none=True)
    samples = s.inputs.batch("unlabelled", 0)
    loss, terms, _, _ = trainer.stage_loss(s, stage, samples)
    loss.backward()
    everything = [*s.models.teacher.parameters(), *s.models.student.parameters(),
                  *s.heads.teacher_verbalizers.parameters(), *s.heads.student_verbalizers.parameters()]
    with_grad = {id(p) for p in everything if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad <= trained, f"{stage}: gradient on a frozen parameter"
    # Everything trained gets a gradient, except the zero-initialised residual verbalizers' gate/up
    # (their product with down == 0 is zero at init, so they start moving one step later).
    gated = {id(p) for v in (s.heads.teacher_verbalizers, s.heads.student_verbalizers) for f in v.ffns.values()
             for p in (f.gate.weight, f.up.weight)}
    assert trained - gated <= with_grad, f"{stage}: a trained parameter got no gradient"
    # The named frozen groups, spelled out.
    fam = s.models.family
    assert not _params_of(s.models.teacher) & trained
    if stage != "sft":
        assert not (_params_of(fam.lm_head(s.models.student)) | _params_of(fam.final_norm(s.models.student))) & trained
    for vision in fam.vision_modules(s.models.student):
        assert not _params_of(vision) & trained
    if stage in ("interact", "final_kd"):
        assert _params_of(fam.decoder_layers(s.models.student)) <= trained | set()
        assert not _params_of(fam.embed_tokens(s.models.student)) & trained
    if stage == "sft":
        assert _params_of(fam.lm_head(s.models.student)) <= trained and _params_of(fam.embed_tokens(s.models.student)) <= trained


def test_interaction_step_logs_matches_within_range(session):
    s = session
    stage_parameters(s, "interact")
    _, terms, matches, n = trainer.stage_loss(s, "interact", s.inputs.batch("unlabelled", 0))
    assert n > 0 and set(terms) >= {"kl_final", "loss"} and all(v >= 0 for v in terms.values())
    teacher_idx = [i_l for _, i_l in matches[0].pairs]
    assert teacher_idx == sorted(set(teacher_idx))  # strictly increasing: order preservation
    t_s, t_l = len(s.heads.student_verbalizers), len(s.heads.teacher_verbalizers)
    assert all(i_l <= t_l - t_s + i_s for i_s, i_l in matches[0].pairs)


def _run(tmp_path, name, config, resume=False):
    run = RunDir.resume(tmp_path / name, config) if resume else RunDir.create(tmp_path, name, config)
    progress, session = trainer.train(config, run, resume=resume)
    return run, progress, session


def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch):
    config = tiny_config()
    _, full_progress, full = _run(tmp_path, "full", config)

    # Kill the second run in the middle of step 2 (after its checkpoint at interact step 1).
    calls = {"n": 0}
    real = trainer.stage_loss

    def dying(s, stage, samples, where):
        if stage == "interact":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
        return real(s, stage, samples, where)

    monkeypatch.setattr(trainer, "stage_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "killed", config)
    progress = json.loads((tmp_path / "killed" / "checkpoints" / "last" / "progress.json").read_text())
    assert progress["step"] == 2 and progress["stage_index"] == 2  # interact, two steps done
    monkeypatch.setattr(trainer, "stage_loss", real)
    run, resumed_progress, resumed = _run(tmp_path, "killed", config, resume=True)

    full_state, resumed_state = full.models.student.state_dict(), resumed.models.student.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for key in full_state:
        assert torch.equal(full_state[key], resumed_state[key]), key
    assert full_progress.heatmap == resumed_progress.heatmap
    # The metrics log has each step once, in order.
    steps = [(m["stage"], m["step"]) for m in run.read_metrics()]
    assert len(steps) == len(set(steps))
    # The saved student loads with transformers alone.
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(run.path / "student")
    assert torch.equal(loaded.state_dict()["lm_head.weight"], resumed_state["lm_head.weight"])


def test_resume_with_another_config_is_refused(tmp_path):
    config = tiny_config("train.sft.steps=0", "train.interact.steps=1", "train.verbalize.steps=1")
    RunDir.create(tmp_path, "a", config)
    other = tiny_config("train.sft.steps=0", "train.interact.steps=1", "train.verbalize.steps=1", "distill.kl=reverse")
    with pytest.raises(ConfigError, match="distill.kl: run has 'forward', now 'reverse'"):
        RunDir.resume(tmp_path / "a", other)


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.student_layers=[0, 5]", "distill.student_layers"),
        ("distill.teacher_layers=[0]", "t_s = 2 student targets > t_l = 1"),
        ("data.dataset=/nonexistent/data.json", "data.json"),
    ],
)
def test_refusals(override, message):
    with pytest.raises((ConfigError, FileNotFoundError, ValueError), match=message):
        build_session(tiny_config(override), Parallel())


def test_empty_dataset_is_refused(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match="empty"):
        build_session(tiny_config(f"data.dataset={empty}"), Parallel())


def test_unknown_recipe_key_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("distill:\n  matchin: adaptive\n")
    with pytest.raises(ConfigError, match="distill.matchin: unknown key"):
        load_config(RunConfig, recipe)


def test_vocabulary_mismatch_is_refused(tmp_path):
    from tests.conftest import tiny_tokenizer
    from vlsi_edge.families import VocabularyMismatch, get_family
    from vlsi_edge.families.sources import TINY_WIDTH

    family = get_family("idefics3")
    other = tiny_tokenizer("idefics3", extra_specials=("<extra_0>", "<extra_1>"))
    model = family.load(family.tiny_config(other, TINY_WIDTH))
    model.save_pretrained(tmp_path / "student")
    family.build_processor(other, TINY_WIDTH).save_pretrained(tmp_path / "student")
    with pytest.raises(VocabularyMismatch, match="different ids"):
        build_session(tiny_config(f"model.student={tmp_path / 'student'}"), Parallel())


def test_teacher_cache_runs_step2_without_the_teacher(tmp_path):
    """--cache-teacher, then a run with distill.teacher_cache: the teacher is never loaded, and with k
    covering the whole (tiny) vocabulary the cached KL equals the live one up to fp16 storage."""
    config = tiny_config("distill.cache_top_k=100000", "train.sft.steps=1")
    accuracy = trainer.cache_teacher(config, tmp_path / "tcache")
    assert set(accuracy) == {"val", "test", "holdout"}
    cached = tiny_config("distill.cache_top_k=100000", "train.sft.steps=1", f"distill.teacher_cache={tmp_path / 'tcache'}")
    s = build_session(cached, Parallel())
    assert s.models.teacher is None and s.heads.teacher_verbalizers is None
    live = build_session(config, Parallel(), cache_root=tmp_path / "cache")
    assert live.load_cached_teacher_verbalizers()  # the cache command stored them
    for sess in (s, live):
        stage_parameters(sess, "final_kd")
    samples = s.inputs.batch("unlabelled", 1)
    cached_loss, _, _, _ = trainer.stage_loss(s, "final_kd", samples, (1, 0))
    live_loss, _, _, _ = trainer.stage_loss(live, "final_kd", samples, (1, 0))
    assert cached_loss.item() == pytest.approx(live_loss.item(), rel=0.02, abs=1e-4)
    # A whole run reads the cache: steps 1 (student only), 2 and 3.
    run = RunDir.create(tmp_path, "cached", cached)
    progress, _ = trainer.train(cached, run)
    assert "verbalize_teacher" not in progress.stages and progress.evals["teacher"] == accuracy
    # A cache built for other batches is refused.
    with pytest.raises(ConfigError, match="was built for"):
        build_session(tiny_config(f"distill.teacher_cache={tmp_path / 'tcache'}", "train.batch_size=3"), Parallel())


def test_torchrun_two_processes_agree(tmp_path):
    """A 2-process gloo run completes; the trainer checks that both ranks end with identical weights
    and matching histories (it raises otherwise), and rank 0 writes the report."""
    import os
    import subprocess
    import sys

    overrides = [a for o in TINY_RUN + ["train.sft.steps=1", "train.batch_size=1"] for a in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "vlsi_edge.train", "--runs-dir", str(tmp_path), "--name", "ddp", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "all 2 ranks agree on the student weights" in output
    assert "all 2 ranks agree on the matched layers" in output
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert set(report["accuracy"]) == {"teacher", "student_base", "after_step2", "after_step3"}


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_teacher_trains_a_step(tmp_path, bits):
    """bitsandbytes on CPU: a 4-bit (NF4) / 8-bit teacher loads and drives one step of each stage."""
    import bitsandbytes as bnb

    config = tiny_config(f"model.teacher_quantization={bits}", "train.verbalize.steps=1",
                         "train.interact.steps=1", "train.sft.steps=1")
    run = RunDir.create(tmp_path, bits, config)
    progress, s = trainer.train(config, run)
    layer = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, layer) for m in s.models.teacher.modules())
    assert all(st["steps"] == 1 for st in progress.stages.values())
    assert all(v >= 0 for m in run.read_metrics() for k, v in m.items() if k.startswith("kl"))


def test_cli_run_writes_report_plots_and_latest(tmp_path, capsys):
    from vlsi_edge.train import main

    args = ["--runs-dir", str(tmp_path), "--name", "cli"]
    for o in TINY_RUN:
        args += ["--set", o]
    assert main(args) == 0
    run = tmp_path / "cli"
    report = json.loads((run / "report.json").read_text())
    assert (tmp_path / "latest").resolve() == run.resolve()
    for name in ("report.md", "loss_curves.png", "matching_heatmap.png", "matching_entropy.png", "config.yaml",
                 "student/config.json", "verbalizers/student/verbalizers.json", "verbalizers/teacher/verbalizers.safetensors"):
        assert (run / name).is_file(), name
    # The heat map counts every step-2 match: steps x student targets.
    counts = sum(sum(row) for half in report["matching_heatmap"].values() for row in half)
    assert counts == 3 * len(report["student_layers"])
    # Matching uniformity: one value per step and target, each a share of the uniform entropy.
    assert len(report["match_uniformity"]) == 3
    values = [u for row in report["match_uniformity"] for u in row if u is not None]
    assert values and all(0 <= u <= 1 + 1e-6 for u in values)
    assert report["mean_match_uniformity"] == pytest.approx(sum(values) / len(values), abs=1e-4)
    assert "after step 3 (SFT)" in (run / "report.md").read_text()
    # Bad input: a second run with the same name is refused without touching the first.
    before = (run / "report.json").read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "report.json").read_bytes() == before


def test_topk_kl_approaches_full_kl_for_a_peaked_teacher():
    from vlsi_edge.distill.losses import TopK, topk_kl

    torch.manual_seed(0)
    teacher = torch.randn(16, 300) * 8.0  # peaked: most mass in a few tokens, as a trained model's
    student = torch.randn(16, 300)
    from vlsi_edge.distill import kl_divergence

    full = kl_divergence(teacher, student)
    top = topk_kl(TopK.of(teacher, 32, 300), student, temperature=1.0, vocab=300)
    assert (top >= -1e-5).all()
    torch.testing.assert_close(top, full, rtol=0.05, atol=0.05)
    exact = topk_kl(TopK.of(teacher, 300, 300), student, temperature=1.0, vocab=300)
    torch.testing.assert_close(exact, full, rtol=1e-4, atol=1e-4)


def test_the_run_seed_picks_its_own_training_examples():
    """Seeds are real replicates: with unlimited streams another seed sees other examples (the same seed
    the same ones); the labelled and unlabelled streams never share an item."""
    from vlsi_edge.distill.data import TrainData
    from vlsi_edge.recipes import DataConfig

    unlimited = DataConfig(labelled=0, unlabelled=0)
    uids = {seed: [s.uid for s in TrainData(unlimited, 8, order_seed=seed).batch("labelled", 3)] for seed in (0, 1)}
    assert uids[0] == [s.uid for s in TrainData(unlimited, 8, order_seed=0).batch("labelled", 3)]
    assert not set(uids[0]) & set(uids[1])
    streams = {name: {s.uid for s in TrainData(unlimited, 8).batch(name, 0)} for name in ("labelled", "unlabelled", "verbalizer")}
    assert not streams["labelled"] & streams["unlabelled"] and not streams["unlabelled"] & streams["verbalizer"]
    with pytest.raises(ValueError, match="seed 32: use 0..31 with an unlimited stream"):
        TrainData(unlimited, 8, order_seed=32)
    assert TrainData(DataConfig(), 8, order_seed=32).batch("labelled", 0)  # finite pools: any seed


def test_finite_pools_are_served_in_seeded_epochs():
    """N_L / N_U pools: each epoch is a permutation of the pool, reshuffled per epoch, stream and run seed."""
    from vlsi_edge.distill.data import TrainData
    from vlsi_edge.recipes import DataConfig

    data = DataConfig(labelled=40, unlabelled=60)
    runs = {seed: TrainData(data, 10, order_seed=seed) for seed in (0, 1)}

    def indices(seed, stream, n):
        return [runs[seed]._index(stream, p) for p in range(n)]

    assert sorted(indices(0, "labelled", 40)) == list(range(40))  # the first N_L train items
    unlabelled = list(range(2**30, 2**30 + 60))
    assert sorted(indices(0, "unlabelled", 60)) == unlabelled == sorted(indices(0, "verbalizer", 60))
    assert indices(0, "unlabelled", 60) != indices(0, "verbalizer", 60)
    assert indices(0, "labelled", 80)[40:] != indices(0, "labelled", 40)  # a fresh order each epoch
    assert indices(0, "labelled", 40) != indices(1, "labelled", 40)  # and per run seed
    batch = runs[0].batch("labelled", 5)  # step 5 = the second epoch's second half
    assert [s.uid for s in batch] == [f"train/{i:05d}" for i in indices(0, "labelled", 60)[50:60]]


def test_teacher_verbalizer_cache_is_per_seed(tmp_path):
    """Another seed initialises and trains the teacher's verbalizers differently: it must not reuse them."""
    dirs = {seed: build_session(tiny_config(f"seed={seed}"), Parallel(), cache_root=tmp_path).teacher_cache_dir()
            for seed in (0, 1)}
    assert dirs[0] != dirs[1] and dirs[0].parent == dirs[1].parent == tmp_path / "teacher-verbalizers"
