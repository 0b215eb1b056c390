"""Smoke tests of `python -m vlsi_edge.bench`: each command runs end to end on a tiny budget and its
tables hold consistent values. The numbers in docs/BENCHMARKS.md come from the full commands, never
from here (nothing below asserts a speed)."""

from __future__ import annotations

import json

import pytest

from vlsi_edge.bench import main
from vlsi_edge.benchmarks.runtime import decoder_bytes_per_token


def test_distill_table_runs_and_reports_gap_closed(tmp_path):
    args = ["--out", str(tmp_path / "out"), "distill", "--seeds", "0", "--runs-dir", str(tmp_path / "runs"),
            "--rows", "SFT only", "VLsI (adaptive matching)"]
    tiny = ["train.verbalize.steps=2", "train.interact.steps=2", "train.sft.steps=2", "data.eval_size=16"]
    assert main(args + [a for o in tiny for a in ("--set", o)]) == 0
    result = json.loads((tmp_path / "out" / "distill.json").read_text())
    rows = result["rows"]
    assert set(rows) == {"teacher", "student base", "SFT only", "VLsI (adaptive matching)"}
    teacher, base = rows["teacher"]["test"]["overall"]["mean"], rows["student base"]["test"]["overall"]["mean"]
    for name in ("SFT only", "VLsI (adaptive matching)"):
        test = rows[name]["test"]["overall"]
        assert test["values"] == [test["mean"]] and 0 <= test["mean"] <= 1
        assert abs(test["gap_closed"] - (test["mean"] - base) / (teacher - base)) < 1e-9
    # The one paired comparison both rows allow, from one seed: the difference, no interval.
    (comparison,) = result["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("VLsI (adaptive matching)", "SFT only")
    vlsi, sft = rows["VLsI (adaptive matching)"]["test"]["overall"]["mean"], rows["SFT only"]["test"]["overall"]["mean"]
    assert comparison["test"]["overall"]["mean"] == pytest.approx(vlsi - sft)
    # Matching uniformity exists for the row that samples matches, not for SFT only.
    assert 0 <= rows["VLsI (adaptive matching)"]["match_uniformity"] <= 1 and "match_uniformity" not in rows["SFT only"]
    assert (tmp_path / "out" / "distill.png").stat().st_size > 0
    assert "| VLsI (adaptive matching) |" in (tmp_path / "out" / "distill.md").read_text()
    # A second call reuses the finished runs (no training): same numbers.
    assert main(args + [a for o in tiny for a in ("--set", o)]) == 0
    assert json.loads((tmp_path / "out" / "distill.json").read_text())["rows"] == rows


def test_runtime_benchmark_runs_every_runtime_on_the_toy_student(tmp_path):
    args = ["--out", str(tmp_path / "out"), "runtime", "--models", "toy", "--items", "2", "--decode-tokens", "4", "--repeats", "2",
            "--threads", "1", "--work", str(tmp_path / "work"),
            "--set", "executorch.schemes=[fp32]", "--set", "onnx.schemes=[fp32, int8]"]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "runtime.json").read_text())
    rows = result["models"]["toy"]["rows"]
    assert set(rows) == {"hf", "executorch-fp32", "onnx-fp32", "onnx-int8"}
    for name, row in rows.items():
        assert "error" not in row, row
        for key in ("encode_ms", "first_token_ms", "decode_tokens_per_s"):
            assert 0 < row[key]["min"] <= row[key]["median"] <= row[key]["max"], (name, key)
            assert len(row[key]["runs"]) == 2 and row[key]["median"] == pytest.approx(sum(row[key]["runs"]) / 2)
        assert row["peak_rss_mb"] > 10
    assert rows["onnx-int8"]["bytes"] < rows["onnx-fp32"]["bytes"]
    # int8 weights are a quarter of fp32 ones; the toy's small matrices add scales and graph overhead.
    assert 0.25 < rows["onnx-int8"]["decoder_bytes_per_token"] / rows["onnx-fp32"]["decoder_bytes_per_token"] < 1
    assert "| onnx-int8 |" in (tmp_path / "out" / "runtime.md").read_text()


def test_runtime_rounds_rotate_and_speeds_compare_with_llamacpp_q4_0():
    from vlsi_edge.benchmarks.runtime import across_repeats, add_ratios, rounds

    order = ["hf", "executorch-8da4w", "llama.cpp-Q4_0"]
    plan = rounds(order, 5)
    assert [r[0] for r in plan] == ["hf", "executorch-8da4w", "llama.cpp-Q4_0", "hf", "executorch-8da4w"]
    assert all(sorted(r) == sorted(order) for r in plan)  # every row once per round
    rows = {"executorch-8da4w": across_repeats([{"decode_tokens_per_s": v} for v in (30.0, 50.0, 40.0)]),
            "llama.cpp-Q4_0": across_repeats([{"decode_tokens_per_s": v} for v in (100.0, 80.0, 120.0)]),
            "hf": {"error": "crashed"}}
    add_ratios(rows)
    assert rows["executorch-8da4w"]["decode_tokens_per_s"] == {"median": 40.0, "min": 30.0, "max": 50.0,
                                                               "runs": [30.0, 50.0, 40.0]}
    assert rows["executorch-8da4w"]["vs_llamacpp_q4_0"] == pytest.approx(0.4)
    assert rows["llama.cpp-Q4_0"]["vs_llamacpp_q4_0"] == 1.0 and "vs_llamacpp_q4_0" not in rows["hf"]


def test_decoder_bytes_per_token_counts_the_linear_weights():
    from vlsi_edge.zoo import zoo_path

    model_dir = zoo_path("student")
    config = json.loads((model_dir / "config.json").read_text())["text_config"]
    h, i, n, v = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    weights = n * (2 * h * h + 2 * kv * h + 3 * i * h) + v * h
    manifest = {"artifacts": {"executorch-8da4w": {"quantization": {"group_size": 32}}}}
    assert decoder_bytes_per_token(model_dir, manifest, "hf") == 4 * weights
    assert decoder_bytes_per_token(model_dir, manifest, "executorch-8da4w") == weights // 2 + 4 * weights // 32


def test_train_cost_times_each_objective_in_its_own_process(tmp_path):
    assert main(["--out", str(tmp_path), "train-cost", "--steps", "2", "--warmup", "1",
                 "--set", "train.batch_size=4"]) == 0
    result = json.loads((tmp_path / "train_cost.json").read_text())
    rows = result["rows"]
    assert set(rows) == {"interact", "final_kd", "hidden_l2", "sft"}
    for row in rows.values():
        assert 0 < row["min_step_s"] <= row["median_step_s"] <= row["max_step_s"]
        assert row["batch_size"] == 4 and row["trainable_parameters"] > 0
    assert "| VLsI interaction (step 2) |" in (tmp_path / "train_cost.md").read_text()


def test_op_profile_splits_a_decode_step_into_ops(exported, tmp_path):
    """ETDump's and onnxruntime's traces of the toy's programs: the top-level ExecuTorch rows add up to the step,
    the int4 linears show as XNNPACK's 4-bit GEMM / MatMulNBits, and each layer's attention op is counted."""
    result, zoo = exported
    layers = zoo.model.config.text_config.num_hidden_layers
    assert main(["--out", str(tmp_path), "op-profile", "--export", str(result.out_dir), "--artifact", "executorch-8da4w",
                 "--threads", "1", "--steps", "4", "--prompt", "10"]) == 0
    et = json.loads((tmp_path / "op_profile-executorch-8da4w.json").read_text())
    rows = {r["op"]: r for r in et["rows"]}
    assert sum(r["share"] for r in et["rows"] if r["level"] == 0) == pytest.approx(1.0, abs=0.02)
    assert rows["llama::custom_sdpa.out"]["calls"] == 4 * layers and rows["llama::update_cache.out"]["calls"] == 8 * layers
    assert any("QB4W" in op for op in rows) and 0 < et["decode_ms_per_step"] <= et["wall_ms_per_step"] * 1.5
    assert main(["--out", str(tmp_path), "op-profile", "--export", str(result.out_dir), "--artifact", "onnx-int4",
                 "--threads", "1", "--steps", "4", "--prompt", "10"]) == 0
    ox = json.loads((tmp_path / "op_profile-onnx-int4.json").read_text())
    rows = {r["op"]: r for r in ox["rows"]}
    assert rows["MatMulNBits"]["calls"] == 4 * (7 * layers + 1)  # q k v o gate up down per layer, and lm_head
    assert 0 < sum(r["share"] for r in ox["rows"]) <= 1.0 + 1e-6
    assert "### onnx-int4: a decode step, op by op" in (tmp_path / "op_profile-onnx-int4.md").read_text()
    # int4_cpu's builder decoder (no position_ids input): one GroupQueryAttention per layer and step
    assert main(["--out", str(tmp_path), "op-profile", "--export", str(result.out_dir), "--artifact", "onnx-int4_cpu",
                 "--threads", "1", "--steps", "4", "--prompt", "10"]) == 0
    rows = {r["op"]: r for r in json.loads((tmp_path / "op_profile-onnx-int4_cpu.json").read_text())["rows"]}
    assert rows["GroupQueryAttention"]["calls"] == 4 * layers and rows["MatMulNBits"]["calls"] == 4 * (5 * layers + 1)
