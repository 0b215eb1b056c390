"""The export's validation report on the shared export (the `exported` fixture in conftest.py): every metric, fp32
programs equal to the float student, answers independent of how many programs run side by side, the float row
against the training evaluator, and the gate's rule."""

from __future__ import annotations

import json
import shutil

import pytest

from vlsi_edge.data import ShapesConfig, score
from vlsi_edge.deploy.targets import load_target
from vlsi_edge.validate.inputs import validation_items
from vlsi_edge.validate.report import gate
from vlsi_edge.validate.stats import paired_loss

from test_export import ARTIFACTS


def test_report_has_every_metric_and_fp32_programs_match_the_float_student(exported):
    result, _ = exported
    report = json.loads((result.out_dir / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["rows"]}
    assert report["items"] == 60 and set(rows) == {"float (PyTorch eager)", *ARTIFACTS}
    assert report["timing_items"] == 20 and report["jobs"] >= 1
    for name in ARTIFACTS:
        row = rows[name]
        assert 0 < row["accuracy"] <= 1 and 0 < row["agreement"] <= 1 and row["first_token_kl"] >= 0
        assert row["encode_ms"] > 0 and row["first_token_ms"] >= row["encode_ms"] and row["decode_tokens_per_s"] > 0
        assert row["peak_rss_mb"] > 10 and row["bytes"] > 0
        assert row["gate"]["loss_upper_95"] == row["paired"]["loss_95"][1]
        assert row["gate"]["passed"] == (row["gate"]["loss_upper_95"] <= row["gate"]["threshold_points"])
        # The paired loss counts the items only one of the two got right: the same number as the accuracies' gap.
        paired = row["paired"]
        assert paired["loss_points"] == pytest.approx(row["gate"]["loss_points"], abs=0.02)
        assert paired["loss_95"][0] <= paired["loss_points"] <= paired["loss_95"][1]
        assert row["accuracy_95"][0] <= row["accuracy"] <= row["accuracy_95"][1]
        assert set(row["per_family"]) == set(rows["float (PyTorch eager)"]["per_family"])
        # Items this program answers differently from the float model bound the paired loss.
        assert paired["float_only"] + paired["program_only"] <= round((1 - row["agreement"]) * report["items"])
        assert 0 <= row["threads_changed"] <= report["timing_items"]
    for name in ("executorch-fp32", "onnx-fp32"):
        assert rows[name]["threads_changed"] == 0  # their kernels split work by output: same answers at any threads
        assert rows[name]["agreement"] == 1.0 and rows[name]["accuracy"] == report["float_accuracy"]
        assert rows[name]["first_token_kl"] < 1e-6
        assert rows[name]["paired"]["loss_95"] == [0.0, 0.0]
    assert rows["onnx-int4"]["bytes"] < rows["onnx-int8"]["bytes"] < rows["onnx-fp32"]["bytes"]
    assert rows["executorch-8da4w"]["bytes"] < rows["executorch-fp32"]["bytes"]
    assert "| executorch-8da4w | 8da4w |" in (result.out_dir / "report.md").read_text()


def test_validation_answers_do_not_depend_on_how_many_programs_run_side_by_side(exported, tmp_path):
    """The answers pass run one program at a time and three side by side: the same report, speed aside."""
    from vlsi_edge.validate.run import validate_export

    result, zoo = exported
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    keep = ["onnx-int4", "onnx-int8"]  # ExecuTorch side by side: the shared export's own report (fp32 agreement 1.0)
    reports = []
    for jobs in (1, 3):
        export_dir = tmp_path / f"jobs{jobs}"
        shutil.copytree(result.out_dir, export_dir)
        (export_dir / "manifest.json").write_text(json.dumps({**manifest, "artifacts": {k: manifest["artifacts"][k] for k in keep}}))
        target = load_target("android-arm64", ["validation.size=20", "validation.timing_size=4", f"validation.jobs={jobs}"])
        reports.append(validate_export(export_dir, zoo.path, ShapesConfig(**zoo.card["data"]), target, "test"))
    speed = {"encode_ms", "first_token_ms", "decode_tokens_per_s", "peak_rss_mb"}
    one, three = ([{k: v for k, v in row.items() if k not in speed} for row in r["rows"]] for r in reports)
    assert [r["jobs"] for r in reports] == [1, 3] and one == three and len(one) == 3


def test_validation_float_row_scores_like_the_training_evaluator(exported):
    """The float row (eager parts through the host loop) and `evaluate` (batched transformers generate,
    what training reports) give the same answers: the two eager generation paths agree."""
    from vlsi_edge.evaluate import generate_answers

    result, zoo = exported
    report = json.loads((result.out_dir / "report.json").read_text())
    samples = validation_items(ShapesConfig(**zoo.card["data"]), report["items"])
    answers = generate_answers(zoo.model, zoo.family, zoo.processor, samples, max_new_tokens=40)
    accuracy = round(float(score(answers, samples)["accuracy"]), 4)
    assert accuracy == report["float_accuracy"] == {r["artifact"]: r for r in report["rows"]}["float (PyTorch eager)"]["accuracy"]


def test_gate_is_the_paired_upper_bound_of_the_loss_against_the_threshold():
    float_right = [True] * 415 + [False] * 585

    def row(program_right):
        return {"accuracy": sum(program_right) / 1000, "paired": paired_loss(float_right, program_right)}

    # 1.5 points lost: 15 more items wrong, none gained. Its upper bound (~2.3) is over a 2-point gate.
    lost = row([True] * 400 + [False] * 600)
    verdict = gate(lost, 0.415, 2.0)
    assert verdict["loss_points"] == 1.5 and verdict["loss_upper_95"] == lost["paired"]["loss_95"][1] > 2.0
    assert verdict["passed"] is False and gate(lost, 0.415, 3.0)["passed"] is True
    # The same 1.5 points as 20 lost and 5 gained: noisier, wider, still refused at 2; 0.5 points pass.
    assert gate(row([True] * 395 + [False] * 15 + [True] * 5 + [False] * 585), 0.415, 2.0)["passed"] is False
    assert gate(row([True] * 410 + [False] * 590), 0.415, 2.0)["passed"] is True
    # Identical answers: [0, 0], passes any gate.
    same = gate(row(float_right), 0.415, 0.0)
    assert same == {"threshold_points": 0.0, "loss_points": 0.0, "loss_upper_95": 0.0, "passed": True}
    assert gate({"error": "cannot load"}, 0.415, 2.0)["passed"] is False
