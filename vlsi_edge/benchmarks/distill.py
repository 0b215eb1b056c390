"""The distillation table: VLsI against its baselines and matching ablations, paired over seeds.

Every row trains from the shipped toy student with the same data, the same student-step budget (`BUDGET`,
then any --set) and the same schedule shape (one warm-up + cosine over the student's steps), as `python -m vlsi_edge.train`
runs in subprocesses, one run directory each. Finished runs are reused, so an interrupted table resumes
where it stopped. A run seed fixes initialisation, data order and matching samples, and is shared by
every row, so rows are compared *paired*: per seed, row A minus row B, then the mean difference with
a 95% t-interval over seeds.

Scores (full test and hold-out splits):
- overall exact-match accuracy;
- "scored families": accuracy over the question families where the teacher is ahead of the student
  base by at least `AHEAD` on *val* (decided before any test number is looked at); other families are
  reported separately, per family;
- gap closed = (row - base) / (teacher - base) on the same split and score.
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
from scipy import stats  # noqa: E402

from vlsi_edge import atomic  # noqa: E402
from vlsi_edge.config import ConfigError, load_config  # noqa: E402
from vlsi_edge.contracts.run_dir import SECOND_STAGES, StageName  # noqa: E402
from vlsi_edge.errors import BAD_INPUT, InputError  # noqa: E402
from vlsi_edge.recipes import RunConfig  # noqa: E402

log = logging.getLogger(__name__)

# row -> --set overrides of the default recipe (train/toy.yaml)
ROWS: dict[str, list[str]] = {
    "SFT only": ["distill.method=sft"],
    "final-layer KD + SFT": ["distill.method=final-kd"],
    "hidden-state L2 + SFT": ["distill.method=hidden-l2"],
    "VLsI (adaptive matching)": [],
    "VLsI, uniform matching": ["distill.matching=uniform"],
    "VLsI, random matching": ["distill.matching=random"],
}
EXTRA_ROWS: dict[str, list[str]] = {  # run with --rows NAME (add them to a finished table: its runs are reused)
    "VLsI, scale-invariant temperature": ["distill.temperature_rule=scale-invariant"],
    "VLsI, bottom-1 matching": ["distill.matching=bottom1"],
    "VLsI, no order preservation": ["distill.order=false"],
}
VLSI = "VLsI (adaptive matching)"
# (A, B, question): the paired differences A - B the table reports, when both rows ran
COMPARISONS = [
    ("final-layer KD + SFT", "SFT only", "does the teacher carry signal the labels don't?"),
    (VLSI, "SFT only", "VLsI vs plain fine-tuning"),
    (VLSI, "final-layer KD + SFT", "do intermediate layers add to final-layer KD?"),
    (VLSI, "hidden-state L2 + SFT", "verbalized KL vs hidden-state L2 at the same layers"),
    (VLSI, "VLsI, uniform matching", "adaptive vs uniform matching"),
    (VLSI, "VLsI, random matching", "adaptive vs random matching"),
    ("VLsI, scale-invariant temperature", VLSI, "scale-invariant vs the paper's temperature"),
]
# The table's budget, applied before --set: 300 student steps (200 on the second stage, 100 SFT; SFT-only
# spends all 300 on SFT) so that 5 seeds x 6 rows fit 90 minutes on 2 cores. The default recipe's
# 300 + 200 would take about 2.5 hours. No score after step 2: the table reads only the final student.
BUDGET = ["train.verbalize.steps=100", "train.interact.steps=200", "train.sft.steps=100",
          "train.evaluate_after_step2=false"]
SPLITS = ("test", "holdout")
AHEAD = 0.10  # a family is scored when the teacher beats the student base by this much on val


def run_name(row: str, seed: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug}-seed{seed}"


def overrides_of(row: str, seed: int, extra: list[str]) -> list[str]:
    return [*BUDGET, *{**ROWS, **EXTRA_ROWS}[row], f"seed={seed}", *extra]


def check(seeds: list[int], extra: list[str], rows: list[str]) -> None:
    """Every run's config resolves, before the first of them trains for minutes (ConfigError otherwise)."""
    known = {**ROWS, **EXTRA_ROWS}
    unknown = [row for row in rows if row not in known]
    if unknown:
        raise ConfigError(f"--rows: unknown {unknown}; known: {', '.join(known)}")
    for seed in seeds:
        for row in rows:
            load_config(RunConfig, None, overrides_of(row, seed, extra))


def train_run(runs_dir: Path, row: str, seed: int, extra: list[str]) -> dict:
    """The run's report.json, training it first unless a finished run is already there."""
    run = runs_dir / run_name(row, seed)
    report = run / "report.json"
    if report.is_file():
        return json.loads(report.read_text())
    if run.exists():  # an interrupted run: continue it
        cmd = [sys.executable, "-m", "vlsi_edge.train", "--resume", str(run)]
    else:
        overrides = overrides_of(row, seed, extra)
        cmd = [sys.executable, "-m", "vlsi_edge.train", "--runs-dir", str(runs_dir), "--name", run.name,
               *[arg for o in overrides for arg in ("--set", o)]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == BAD_INPUT:
        raise InputError(f"{' '.join(cmd)}: {(proc.stderr.strip().splitlines() or ['(no message)'])[-1].removeprefix('error: ')}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    log.info("%s seed %d: %.0f s", row, seed, time.perf_counter() - start)
    return json.loads(report.read_text())


def scored_families(teacher: dict, base: dict, margin: float = AHEAD) -> list[str]:
    """Families where the teacher's val accuracy beats the student base's by >= margin."""
    t, b = teacher["val"]["per_family"], base["val"]["per_family"]
    return [f for f in t if t[f]["accuracy"] - b.get(f, {"accuracy": 0.0})["accuracy"] >= margin]


def accuracy_on(result: dict, families: list[str]) -> float:
    """Exact-match accuracy of one split's result restricted to `families` (pooled over items)."""
    per = result["per_family"]
    return sum(per[f]["correct"] for f in families) / sum(per[f]["total"] for f in families)


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of the per-seed differences a - b with a 95% t-interval (n - 1 degrees of freedom)."""
    d = np.asarray(a) - np.asarray(b)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": len(d), "values": d.tolist()}
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(d), "values": d.tolist()}


def table(runs_dir: Path, seeds: list[int], extra: list[str], rows: list[str] | None = None) -> dict:
    rows = list(rows or ROWS)
    check(seeds, extra, rows)
    # Seed-major: every row of seed 0, then of seed 1, ... so an interrupted table already pairs all rows.
    runs = {(seed, row): train_run(runs_dir, row, seed, extra) for seed in seeds for row in rows}
    reports = {row: [runs[seed, row] for seed in seeds] for row in rows}
    first = next(iter(reports.values()))[0]["accuracy"]
    teacher, base = first["teacher"], first["student_base"]
    families = sorted(teacher["test"]["per_family"])
    scored = scored_families(teacher, base) or families  # no family qualifies: score them all (and say so)

    def scores(result: dict) -> dict:
        """Per split: overall, scored-families and per-family accuracy."""
        return {s: {"overall": result[s]["accuracy"], "scored": accuracy_on(result[s], scored),
                    **{f: result[s]["per_family"][f]["accuracy"] for f in families}} for s in SPLITS}

    fixed = {"teacher": scores(teacher), "student base": scores(base)}
    per_seed = {row: [scores(r["accuracy"]["after_step3"]) for r in runs] for row, runs in reports.items()}
    summary = {}
    for name, values in fixed.items():
        summary[name] = {s: {k: {"mean": v, "std": 0.0} for k, v in values[s].items()} for s in SPLITS}
    for row, runs in per_seed.items():
        summary[row] = {}
        for s in SPLITS:
            summary[row][s] = {}
            for k in runs[0][s]:
                vals = [r[s][k] for r in runs]
                gap = fixed["teacher"][s][k] - fixed["student base"][s][k]
                summary[row][s][k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                      "values": vals,
                                      "gap_closed": (float(np.mean(vals)) - fixed["student base"][s][k]) / gap if gap > 0 else None}
        summary[row]["train_s"] = float(np.median([r["total_wall_time_s"] for r in reports[row]]))
        summary[row]["kept_sft_step"] = [r["stages"].get(StageName.SFT, {}).get("early_stopping", {}).get("kept_step") for r in reports[row]]
        uniformity = [r.get("mean_match_uniformity") for r in reports[row]]
        if all(u is not None for u in uniformity):
            summary[row]["match_uniformity"] = float(np.mean(uniformity))
    comparisons = []
    for a, b, question in COMPARISONS:
        if a in per_seed and b in per_seed:
            entry = {"a": a, "b": b, "question": question}
            for s in SPLITS:
                entry[s] = {k: paired([r[s][k] for r in per_seed[a]], [r[s][k] for r in per_seed[b]])
                            for k in per_seed[a][0][s]}
            comparisons.append(entry)
    curves = {row: learning_curves(runs_dir, row, seeds) for row in reports}
    return {"seeds": seeds, "overrides": extra, "scored_families": scored, "ahead_margin": AHEAD,
            "scored_rule_met": scored != families or bool(scored_families(teacher, base)),
            "families": families, "rows": summary, "comparisons": comparisons, "curves": curves}


def learning_curves(runs_dir: Path, row: str, seeds: list[int]) -> dict:
    """Mean over seeds of the val accuracy (early-stopping checks) against the student step, and of the
    second stage's loss terms against its step, read from the runs' report.json and metrics.jsonl."""
    val: dict[int, list[float]] = {}
    losses: dict[str, dict[int, list[float]]] = {}
    for seed in seeds:
        run = runs_dir / run_name(row, seed)
        report = json.loads((run / "report.json").read_text())
        stages = report["stages"]
        offset = next((st["steps"] for name, st in stages.items() if name in SECOND_STAGES), 0)
        for step, accuracy in stages.get(StageName.SFT, {}).get("early_stopping", {}).get("curve", []):
            val.setdefault(offset + step, []).append(accuracy)
        for line in (run / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record["stage"] in (*SECOND_STAGES, StageName.SFT):
                for term in ("loss", "kl_final", "ce"):
                    if term in record:
                        losses.setdefault(f"{record['stage']}:{term}", {}).setdefault(record["step"], []).append(record[term])
    return {"val": sorted((k, float(np.mean(v))) for k, v in val.items()),
            "losses": {t: sorted((k, float(np.mean(v))) for k, v in pts.items()) for t, pts in losses.items()}}


def _interval(p: dict) -> str:
    return f"{p['mean'] * 100:+.1f} [{p['low'] * 100:+.1f}, {p['high'] * 100:+.1f}]"


def markdown(result: dict, command: str) -> str:
    scored = ", ".join(result["scored_families"])
    others = [f for f in result["families"] if f not in result["scored_families"]]
    lines = [
        f"Scored families (teacher ahead of the student base by >= {result['ahead_margin']:.2f} on val): {scored}"
        + (f"; reported separately: {', '.join(others)}." if others else "."),
        "",
        "| method | test, scored | gap closed | hold-out, scored | gap closed | test, all | hold-out, all | train s (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, r in result["rows"].items():
        cells = [row]
        for s in SPLITS:
            v = r[s]["scored"]
            cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if "values" in v else f"{v['mean']:.3f}")
            cells.append(f"{v['gap_closed']:+.2f}" if v.get("gap_closed") is not None else "")
        for s in SPLITS:
            v = r[s]["overall"]
            cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if "values" in v else f"{v['mean']:.3f}")
        cells.append(f"{r['train_s']:.0f}" if "train_s" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    sampled = {row: r["match_uniformity"] for row, r in result["rows"].items() if "match_uniformity" in r}
    if sampled:
        lines += ["", "Layer matching's sampling entropy as a share of uniform sampling over the search range "
                  "(1 = uniform, 0 = always the same layer; mean over steps, targets and seeds): "
                  + "; ".join(f"{row} {u:.3f}" for row, u in sampled.items()) + "."]
    lines += ["", "Paired differences (A - B, accuracy points; mean over seeds [95% t-interval]):", "",
              "| A - B | question | test, scored | hold-out, scored | test, all | hold-out, all |", "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['a']} - {c['b']} | {c['question']} | {_interval(c['test']['scored'])} | "
                     f"{_interval(c['holdout']['scored'])} | {_interval(c['test']['overall'])} | {_interval(c['holdout']['overall'])} |")
    lines += ["", "Per family on test (A - B, points [95% t-interval]):", "",
              "| A - B | " + " | ".join(result["families"]) + " |", "|---" * (len(result["families"]) + 1) + "|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['a']} - {c['b']} | " + " | ".join(_interval(c["test"][f]) for f in result["families"]) + " |")
    lines += ["", f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}); measured by `{command}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict):
    rows = [r for r in result["rows"] if r not in ("teacher", "student base")]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    for ax, s in zip(axes[:2], SPLITS):
        means = [result["rows"][r][s]["scored"]["mean"] for r in rows]
        stds = [result["rows"][r][s]["scored"]["std"] for r in rows]
        ax.barh(rows, means, xerr=stds, color="#2a9d8f", capsize=3)
        for name, style in (("teacher", "--"), ("student base", ":")):
            ax.axvline(result["rows"][name][s]["scored"]["mean"], color="black", ls=style, lw=0.9, label=name)
        marks = [*means, result["rows"]["teacher"][s]["scored"]["mean"], result["rows"]["student base"][s]["scored"]["mean"]]
        ax.set_xlim(max(0.0, min(marks) - 0.05), min(1.0, max(marks) + 0.03))
        ax.set_title(f"{s}, scored families (mean ± std, {len(result['seeds'])} seeds)", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.invert_yaxis()
    axes[0].legend(loc="lower right", fontsize=8)
    axes[1].set_yticklabels([])
    ax = axes[2]
    for row in rows:
        points = result["curves"][row]["val"]
        if points:
            ax.plot(*zip(*points), marker=".", label=row)
    ax.set_xlabel("student step (SFT checks; the first point of a two-stage method is after its second stage)")
    ax.set_ylabel("val accuracy (mean over seeds)")
    ax.set_title("learning curves", fontsize=10)
    ax.legend(fontsize=7)
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
