"""The distillation world: pseudo-labels, one cosine, early stopping, the hidden-L2 baseline, the matching
temperature rules and entropy, the verbalizer probe and the paired statistics of the table."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_train import tiny_config
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.distill import trainer
from vlsi_edge.distill.matching import adaptive_temperature, match_layers
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.session import build_session, stage_parameters
from vlsi_edge.evaluate import evaluate, generate_answers


# ---- matching temperature and entropy -----------------------------------------------------------


def _probs(kls, rule, scale=2.0):
    T = adaptive_temperature(kls, scale, rule=rule)
    return torch.softmax(-kls / T, dim=0)


def test_scale_invariant_temperature_fixes_the_best_to_worst_ratio():
    kls = torch.tensor([0.10, 0.25, 0.40], dtype=torch.float64)
    for factor in (1.0, 10.0, 0.01):
        p = _probs(kls * factor, "scale-invariant")
        assert (p[0] / p[-1]).item() == pytest.approx(math.e**2, rel=1e-3)  # e^scale, whatever the units (up to eps)
    # The paper's rule depends on the units: the best-to-worst ratio is e^(spread^2 / scale), so 0.3 nats
    # of spread samples almost uniformly and 3 nats does not.
    for factor in (1.0, 10.0):
        p = _probs(kls * factor, "paper")
        assert (p[0] / p[-1]).item() == pytest.approx(math.exp((0.3 * factor) ** 2 / 2), rel=1e-3)
    assert (_probs(kls, "paper")[0] / _probs(kls, "paper")[-1]).item() < 1.1
    with pytest.raises(ValueError, match="temperature rule 'other'"):
        adaptive_temperature(kls, rule="other")


def test_match_entropy_is_the_entropy_of_the_sampling_distribution():
    kls = {0: torch.tensor([0.3, 0.1, 0.9]), 1: torch.tensor([0.2, 0.5])}

    def candidate_kl(i_s, cands):
        return kls[i_s][: len(cands)] if i_s == 0 else kls[1][-len(cands):]

    gen = torch.Generator().manual_seed(0)
    result = match_layers(candidate_kl, 2, 4, "adaptive", gen, rule="scale-invariant")
    first = _probs(torch.tensor(result.candidate_kls[0], dtype=torch.float64), "scale-invariant")
    assert result.entropies[0] == pytest.approx(float(-(first * first.log()).sum()), rel=1e-6)
    assert 0 < result.entropies[0] < math.log(len(result.candidates[0]))
    assert match_layers(candidate_kl, 2, 4, "uniform").entropies == [0.0, 0.0]
    assert match_layers(candidate_kl, 2, 4, "random", gen).entropies == pytest.approx([math.log(4)] * 2)


def test_match_uniformity_is_entropy_over_its_uniform_ceiling():
    """1 for random matching (uniform by construction), 0 for a fixed choice, None with one candidate, and
    the paper's temperature on KLs a few tenths of a nat apart is close to uniform, the scale-invariant
    rule is not."""
    from vlsi_edge.distill.report import mean_uniformity
    from vlsi_edge.distill.trainer import _uniformity

    kls = torch.tensor([0.30, 0.10, 0.45, 0.20, 0.35])

    def candidate_kl(i_s, cands):
        return kls[cands]

    gen = torch.Generator().manual_seed(0)
    assert _uniformity([match_layers(candidate_kl, 1, 5, "random", gen)], 0) == pytest.approx(1.0)
    assert _uniformity([match_layers(candidate_kl, 1, 5, "adaptive", gen, temperature=1e-6)], 0) == pytest.approx(0.0, abs=1e-4)
    paper = _uniformity([match_layers(candidate_kl, 1, 5, "adaptive", gen, rule="paper")], 0)
    invariant = _uniformity([match_layers(candidate_kl, 1, 5, "adaptive", gen, rule="scale-invariant")], 0)
    assert paper > 0.99 and invariant < 0.9
    last = match_layers(candidate_kl, 2, 2, "adaptive", gen)  # the last target of t_s == t_l has one candidate
    assert len(last.candidates[1]) == 1 and _uniformity([last], 1) is None
    assert mean_uniformity([[1.0, None], [0.5, 0.0]]) == pytest.approx(0.5)
    assert mean_uniformity([[None]]) is None


# ---- hidden-state L2 baseline -------------------------------------------------------------------


def test_hidden_l2_is_zero_for_an_exact_projection_and_scale_free():
    from vlsi_edge.distill.steps import AnswerStates, hidden_l2_loss

    torch.manual_seed(0)
    n, d = 6, 8
    h_s = torch.randn(n, d)
    rotation, _ = torch.linalg.qr(torch.randn(d, d))
    h_t = 5.0 * (h_s / h_s.pow(2).mean(-1, keepdim=True).sqrt()) @ rotation.T  # a rotated, rescaled student
    student = AnswerStates({1: h_s}, torch.zeros(n, 3), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))
    teacher = AnswerStates({3: h_t}, torch.zeros(n, 3), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))
    projections = torch.nn.ModuleDict({"1": torch.nn.Linear(d, d, bias=False)})
    with torch.no_grad():
        projections["1"].weight.copy_(rotation)
    zero = torch.tensor(0.0)
    loss, terms = hidden_l2_loss(teacher, student, [(1, 3)], projections, zero)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        projections["1"].weight.add_(0.1 * torch.randn(d, d))
    loss, terms = hidden_l2_loss(teacher, student, [(1, 3)], projections, torch.tensor(0.5), layer_weight=2.0)
    assert terms["l2_layer1"] > 0 and loss.item() == pytest.approx(2.0 * terms["l2_layer1"] + 0.5, rel=1e-5)


def test_hidden_l2_stage_trains_projections_and_decoder_only():
    s = build_session(tiny_config("distill.method=hidden-l2"), Parallel())
    trained = {id(p) for p in stage_parameters(s, "hidden_l2")}
    assert {id(p) for p in s.heads.projections.parameters()} <= trained
    loss, terms, matches, n = trainer.stage_loss(s, "hidden_l2", s.inputs.batch("unlabelled", 0))
    loss.backward()
    assert not matches and set(terms) == {*(f"l2_layer{k}" for k in s.heads.student_verbalizers.layers), "kl_final", "loss"}
    assert all(p.grad is None for p in s.models.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in s.heads.projections.parameters())
    assert all(p.grad is None for p in s.models.family.lm_head(s.models.student).parameters())


# ---- data: pseudo-labels, schedule, early stopping -----------------------------------------------


def test_unlabelled_streams_carry_the_teachers_answers_never_ground_truth(tmp_path):
    s = build_session(tiny_config(), Parallel(), cache_root=tmp_path)
    raw = s.inputs.data.batch("unlabelled", 2)
    relabelled = s.inputs.batch("unlabelled", 2)
    assert [x.answer for x in relabelled] == generate_answers(s.models.teacher, s.models.family, s.models.teacher_processor, raw)
    assert [x.uid for x in relabelled] == [x.uid for x in raw]
    assert [x.answer for x in s.inputs.batch("labelled", 2)] == [x.answer for x in s.inputs.data.batch("labelled", 2)]  # gold
    s.inputs.pseudo_labels.save()
    # A later run of the same teacher and data reads them from the cache (no teacher needed).
    from vlsi_edge.distill.pseudo_labels import PseudoLabels

    again = PseudoLabels(s.inputs.pseudo_labels.path)
    assert [x.answer for x in again.relabel(raw)] == [x.answer for x in relabelled]
    with pytest.raises(FileNotFoundError, match="no teacher answer"):
        again.relabel(s.inputs.data.batch("unlabelled", 40))
    gold = build_session(tiny_config("data.distill_answers=gold"), Parallel())
    assert gold.inputs.pseudo_labels is None and [x.answer for x in gold.inputs.batch("unlabelled", 2)] == [x.answer for x in raw]


def test_every_method_follows_one_cosine_over_the_student_steps():
    """VLsI's step 2 + step 3 learning rates are exactly SFT-only's single schedule, step by step."""
    extra = ("train.interact.steps=7", "train.sft.steps=5", "train.interact.warmup=2")
    sft_only = trainer.plan(tiny_config("distill.method=sft", *extra))
    assert [(st.name, st.steps) for st in sft_only] == [("sft", 12)]
    reference = trainer._lr_lambda(sft_only[0].schedule, sft_only[0].lr_offset)
    for method in ("vlsi", "final-kd", "hidden-l2"):
        student = [st for st in trainer.plan(tiny_config(f"distill.method={method}", *extra)) if "verbalize" not in st.name]
        factors = [trainer._lr_lambda(st.schedule, st.lr_offset)(k) for st in student for k in range(st.steps)]
        assert factors == [reference(k) for k in range(12)], method
        assert [st.stream for st in student] == ["unlabelled", "labelled"]
    per_stage = trainer.plan(tiny_config("train.schedule=per-stage", *extra))
    assert trainer._lr_lambda(per_stage[-1].schedule, per_stage[-1].lr_offset)(0) != reference(7)


def test_early_stopping_keeps_the_best_val_student(tmp_path):
    config = tiny_config("distill.method=sft", "train.early_stopping=2", "train.sft.lr=0.05", "data.eval_size=16")
    run = RunDir.create(tmp_path, "es", config)
    progress, s = trainer.train(config, run)
    stop = progress.stages["sft"]["early_stopping"]
    steps = [step for step, _ in stop["curve"]]
    assert steps == [0, 2, 4, 5]  # before the first step, every 2 steps and at the end
    best = max(acc for _, acc in stop["curve"])
    assert stop["val"] == best and stop["kept_step"] == min(st for st, acc in stop["curve"] if acc == best)
    from vlsi_edge.distill.session import validation_items

    assert evaluate(s.models.student, s.models.family, s.models.student_processor, validation_items(s))["accuracy"] == best


# ---- verbalizer probe ---------------------------------------------------------------------------


def test_probe_final_row_is_the_models_own_first_token_accuracy():
    from vlsi_edge.benchmarks.probe import first_answer_rows, probe
    from vlsi_edge.data import ShapesConfig, ShapesVQA
    from vlsi_edge.families import get_family
    from vlsi_edge.families.sources import load_source

    assert first_answer_rows(torch.tensor([0, 0, 1, 2, 2, 2])).tolist() == [True, False, True, True, False, False]
    data = ShapesConfig(image_size=64)
    result = probe("tiny:3", steps=30, items=40, data=data)
    assert list(result["accuracy"]) == ["0", "1", "final"]
    losses = [row["0"] for row in result["loss_curve"]]
    assert losses[-1] < losses[0]  # the verbalizers learn
    # The final row, recomputed independently: greedy first generated token vs the gold first answer token.
    family = get_family("idefics3")
    model, processor, _ = load_source(family, "tiny:3", "float32", seed=0)
    val = ShapesVQA("val", config=data)
    samples = [val[i] for i in range(40)]
    tokenizer = family.tokenizer(processor)
    from vlsi_edge.families import build_batch

    batch = build_batch(family, processor, samples, with_answer=False, padding_side="left")
    batch.pop("labels")
    first = model.generate(**batch, max_new_tokens=1, do_sample=False)[:, -1]
    gold = [tokenizer(family.answer_text(s.answer), add_special_tokens=False)["input_ids"][0] for s in samples]
    assert result["accuracy"]["final"]["overall"] == pytest.approx(sum(int(a == b) for a, b in zip(first, gold)) / 40)
    assert 0 < sum(result["chance"].values())


def test_probe_summary_measures_how_gradual_the_rise_is():
    from vlsi_edge.benchmarks.probe import summarise

    jump = {"0": {"overall": 0.2}, "1": {"overall": 0.2}, "2": {"overall": 0.2}, "final": {"overall": 1.0}}
    ramp = {"0": {"overall": 0.2}, "1": {"overall": 0.4}, "2": {"overall": 0.6}, "final": {"overall": 0.8}}
    assert summarise(jump, [0, 1, 2])["largest_step_share"] == 1.0
    assert summarise(ramp, [0, 1, 2])["largest_step_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert summarise(ramp, [0, 1, 2])["layer_passing"] == {"25%": 1, "50%": 2, "75%": "final"}


# ---- the table's statistics ---------------------------------------------------------------------


def test_paired_differences_and_scored_families():
    from scipy import stats

    from vlsi_edge.benchmarks.distill import accuracy_on, paired, scored_families

    result = paired([0.50, 0.52, 0.55, 0.51, 0.53], [0.48, 0.49, 0.50, 0.50, 0.49])
    d = [0.02, 0.03, 0.05, 0.01, 0.04]
    half = stats.t.ppf(0.975, 4) * torch.tensor(d).std().item() / math.sqrt(5)
    assert result["mean"] == pytest.approx(0.03) and result["high"] - result["mean"] == pytest.approx(half, rel=1e-4)
    assert result["low"] > 0  # every seed agrees: the interval excludes 0
    noisy = paired([0.50, 0.45, 0.55], [0.49, 0.50, 0.49])
    assert noisy["low"] < 0 < noisy["high"]

    def split(per):
        return {"val": {"per_family": {f: {"accuracy": a} for f, a in per.items()}}}

    teacher, base = split({"color": 0.9, "count": 0.6, "exist": 0.52}), split({"color": 0.4, "count": 0.55, "exist": 0.5})
    assert scored_families(teacher, base) == ["color"]
    pooled = {"per_family": {"color": {"correct": 8, "total": 10}, "count": {"correct": 1, "total": 30}}}
    assert accuracy_on(pooled, ["color", "count"]) == pytest.approx(9 / 40)
