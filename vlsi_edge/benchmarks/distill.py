"""The distillation table: VLsI against its baselines and matching ablations, several seeds each.

Every row trains from the shipped toy student with the same data and step budget (verbalizer steps
are VLsI's own extra; SFT-only and final-KD spend the interaction budget on their own objective), as
`python -m vlsi_edge.train` runs in subprocesses, one run directory each. Finished runs are reused,
so an interrupted table resumes where it stopped.

"gap closed" = (student - base) / (teacher - base) on the same split.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlsi_edge import atomic  # noqa: E402

log = logging.getLogger(__name__)

# row -> --set overrides of the default recipe (train/toy.yaml)
ROWS: dict[str, list[str]] = {
    "SFT only": ["distill.method=sft"],
    "final-layer KD + SFT": ["distill.method=final-kd"],
    "VLsI (adaptive matching)": [],
    "VLsI, uniform matching": ["distill.matching=uniform"],
    "VLsI, bottom-1 matching": ["distill.matching=bottom1"],
    "VLsI, random matching": ["distill.matching=random"],
    "VLsI, no order preservation": ["distill.order=false"],
}
SPLITS = ("test", "holdout")


def run_name(row: str, seed: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug}-seed{seed}"


def train_run(runs_dir: Path, row: str, seed: int, extra: list[str]) -> dict:
    """The run's report.json, training it first unless a finished run is already there."""
    run = runs_dir / run_name(row, seed)
    report = run / "report.json"
    if report.is_file():
        return json.loads(report.read_text())
    if run.exists():  # an interrupted run: continue it
        cmd = [sys.executable, "-m", "vlsi_edge.train", "--resume", str(run)]
    else:
        overrides = [*ROWS[row], f"seed={seed}", *extra]
        cmd = [sys.executable, "-m", "vlsi_edge.train", "--runs-dir", str(runs_dir), "--name", run.name,
               *[arg for o in overrides for arg in ("--set", o)]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    log.info("%s seed %d: %.0f s", row, seed, time.perf_counter() - start)
    return json.loads(report.read_text())


def table(runs_dir: Path, seeds: list[int], extra: list[str], rows: list[str] | None = None) -> dict:
    unknown = set(rows or ()) - set(ROWS)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    reports = {row: [train_run(runs_dir, row, seed, extra) for seed in seeds] for row in (rows or ROWS)}
    first = next(iter(reports.values()))[0]["accuracy"]
    teacher = {s: first["teacher"][s]["accuracy"] for s in SPLITS}
    base = {s: first["student_base"][s]["accuracy"] for s in SPLITS}
    rows = {"teacher": {s: {"mean": teacher[s], "std": 0.0, "values": [teacher[s]]} for s in SPLITS},
            "student base": {s: {"mean": base[s], "std": 0.0, "values": [base[s]], "gap_closed": 0.0} for s in SPLITS}}
    for row, runs in reports.items():
        rows[row] = {}
        for s in SPLITS:
            values = [r["accuracy"]["after_step3"][s]["accuracy"] for r in runs]
            mean = float(np.mean(values))
            rows[row][s] = {"mean": mean, "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                            "values": values, "gap_closed": (mean - base[s]) / (teacher[s] - base[s])}
        rows[row]["train_s"] = float(np.mean([r["total_wall_time_s"] for r in runs]))
    return {"seeds": seeds, "overrides": extra, "rows": rows}


def markdown(result: dict, command: str) -> str:
    lines = [
        "| method | test (mean ± std) | gap closed (test) | hold-out (mean ± std) | gap closed (hold-out) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for row, r in result["rows"].items():
        cells = [row]
        for s in SPLITS:
            cells.append(f"{r[s]['mean']:.3f} ± {r[s]['std']:.3f}" if r[s]["std"] or row not in ("teacher", "student base")
                         else f"{r[s]['mean']:.3f}")
            cells.append(f"{r[s]['gap_closed']:+.2f}" if "gap_closed" in r[s] else "")
        cells.append(f"{r['train_s']:.0f}" if "train_s" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}); measured by `{command}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict):
    rows = [r for r in result["rows"] if r != "teacher"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, s in zip(axes, SPLITS):
        means = [result["rows"][r][s]["mean"] for r in rows]
        stds = [result["rows"][r][s]["std"] for r in rows]
        ax.barh(rows, means, xerr=stds, color=["#888888"] + ["#2a9d8f"] * (len(rows) - 1), capsize=3)
        ax.axvline(result["rows"]["teacher"][s]["mean"], color="black", ls="--", lw=0.8, label="teacher")
        ax.axvline(result["rows"]["student base"][s]["mean"], color="grey", ls=":", lw=0.8, label="student base")
        marks = [*means, result["rows"]["teacher"][s]["mean"]]
        ax.set_xlim(max(0.0, min(marks) - 0.05), min(1.0, max(marks) + 0.03))
        ax.set_title(f"ShapesVQA {s} accuracy (mean ± std over {len(result['seeds'])} seeds)")
        ax.invert_yaxis()
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    return fig


def run(out: Path, runs_dir: Path, seeds: list[int], extra: list[str], command: str,
        rows: list[str] | None = None) -> dict:
    result = table(runs_dir, seeds, extra, rows)
    result["command"] = command
    atomic.write_json(out / "distill.json", result)
    atomic.write_text(out / "distill.md", markdown(result, command))
    atomic.write_figure(out / "distill.png", plot(result))
    return result
