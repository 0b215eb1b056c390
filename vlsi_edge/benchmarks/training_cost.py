"""What one optimizer step of each objective costs: VLsI interaction vs final-layer KD vs hidden-state L2 vs SFT.

Same pair (the toy teacher and student), same batches (each objective's stream's first steps), same
optimizer; each objective runs `steps` timed steps after `warmup` untimed ones, from a fresh session so
no step benefits from another's caches. The interaction step includes the teacher's forward pass and
the layer matching; the verbalizers are freshly initialised (their values do not change the cost).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from vlsi_edge.config import load_config
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.session import build_session, stage_parameters
from vlsi_edge.distill.trainer import stage_loss
from vlsi_edge.memory import peak_rss_mb, reset_peak_rss
from vlsi_edge.recipes import RunConfig
from vlsi_edge.worker import serve, spawn

OBJECTIVES = {"interact": "vlsi", "final_kd": "final-kd", "hidden_l2": "hidden-l2", "sft": "sft"}


def step_cost(objective: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    config = load_config(RunConfig, overrides=[f"distill.method={OBJECTIVES[objective]}", *overrides])
    session = build_session(config, Parallel.from_env())
    params = stage_parameters(session, objective)
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    times = []
    reset_peak_rss()
    for step in range(warmup + steps):
        samples = session.inputs.batch("labelled" if objective == "sft" else "unlabelled", step, 0)
        tick = time.perf_counter()
        loss, _, _, _ = stage_loss(session, objective, samples, (step, 0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - tick)
    return {"median_step_s": statistics.median(times), "min_step_s": min(times), "max_step_s": max(times),
            "peak_rss_mb": round(peak_rss_mb(), 1), "batch_size": config.train.batch_size, "steps": steps,
            "trainable_parameters": sum(p.numel() for p in params)}


def run(steps: int, warmup: int, overrides: list[str], command: str) -> dict:
    """Every objective, each in its own worker process (its own peak memory)."""
    load_config(RunConfig, None, overrides)  # a bad --set is the user's, not a worker crash
    job = {"steps": steps, "warmup": warmup, "overrides": overrides}
    rows = {objective: spawn("vlsi_edge.benchmarks.training_cost", {**job, "objective": objective})
            for objective in OBJECTIVES}
    return {"command": command, "warmup": warmup, "rows": rows}


def _work(job: dict) -> dict:
    return step_cost(job["objective"], job["steps"], job["warmup"], job["overrides"])


def markdown(result: dict) -> str:
    sft = result["rows"]["sft"]["median_step_s"]
    lines = ["| step | median s (min–max) | vs SFT | peak RSS MB | trainable params |", "|---|---|---|---|---|"]
    names = {"interact": "VLsI interaction (step 2)", "final_kd": "final-layer KD", "hidden_l2": "hidden-state L2",
             "sft": "SFT"}
    for key, r in result["rows"].items():
        lines.append(f"| {names[key]} | {r['median_step_s']:.4f} ({r['min_step_s']:.4f}–{r['max_step_s']:.4f}) | "
                     f"{r['median_step_s'] / sft:.2f}x | {r['peak_rss_mb']:.0f} | {r['trainable_parameters']:,} |")
    lines += ["", f"Batch {result['rows']['sft']['batch_size']}, {result['rows']['sft']['steps']} timed steps each "
              f"after {result['warmup']} warm-up, one process per objective. Measured by `{result['command']}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(serve(_work))
