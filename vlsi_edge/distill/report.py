"""The run report: accuracies per stage (next to the teacher, the student base and the zoo card's SFT-only
reference), time and memory per stage, loss curves, matched-layer heat map, matcher entropy."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display here or on a training server
import matplotlib.pyplot as plt  # noqa: E402

from vlsi_edge import atomic  # noqa: E402
from vlsi_edge.contracts.run_dir import RunDir, StageName  # noqa: E402

log = logging.getLogger(__name__)

ROWS = (
    ("teacher", "teacher"),
    ("student_base", "student base"),
    ("sft_only_reference", "SFT-only reference (zoo card)"),
    ("after_step2", "after step 2 (interaction / KD baseline)"),
    ("after_step3", "after step 3 (SFT): this run's student"),
)


def write_report(run: RunDir, progress, session) -> dict:
    c = session.config
    report = {
        "run": run.path.name,
        "method": c.distill.method,
        "teacher": session.models.teacher_source,
        "student": session.models.student_source,
        "teacher_layers": session.heads.teacher_layers,
        "student_layers": session.heads.student_verbalizers.layers,
        "accuracy": {key: progress.evals[key] for key, _ in ROWS if progress.evals.get(key)},
        "stages": progress.stages,
        "total_wall_time_s": round(sum(st.get("wall_time_s", 0.0) for st in progress.stages.values()), 1),
        "matching_heatmap": progress.heatmap,
        "match_entropy": progress.match_entropy,
        "match_uniformity": progress.match_uniformity,
        "mean_match_uniformity": mean_uniformity(progress.match_uniformity),
        "sft_only_reference_command": progress.evals.get("sft_only_reference_command"),
    }
    atomic.write_json(run.path / "report.json", report)
    atomic.write_text(run.path / "report.md", _markdown(report))
    plot_losses(run.read_metrics(), run.path / "loss_curves.png")
    if progress.heatmap:
        plot_heatmap(progress.heatmap, report["student_layers"], report["teacher_layers"], run.path / "matching_heatmap.png")
    if progress.match_uniformity:
        plot_uniformity(progress.match_uniformity, report["student_layers"], run.path / "matching_entropy.png")
    return report


def _markdown(report: dict) -> str:
    lines = [f"# Run {report['run']} ({report['method']})", "", f"teacher `{report['teacher']}` -> student `{report['student']}`", ""]
    accuracy = report["accuracy"]
    present = {split for result in accuracy.values() for split in result}
    splits = [s for s in ("val", "test", "holdout") if s in present] + sorted(present - {"val", "test", "holdout"})
    if splits:
        lines += ["## Accuracy (exact match)", "", "| model | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
        for key, label in ROWS:
            if key in accuracy:
                lines.append(f"| {label} | " + " | ".join(
                    f"{accuracy[key][s]['accuracy']:.3f}" if s in accuracy[key] else "" for s in splits) + " |")
        lines.append("")
        if report.get("sft_only_reference_command"):
            lines += [f"SFT-only reference: `{report['sft_only_reference_command']}` (the zoo card's seed-0 run of "
                      "the default recipe; compare with the same budget only).", ""]
        test = {key: accuracy[key]["test"]["per_family"] for key, _ in ROWS
                if "test" in accuracy.get(key, {}) and "per_family" in accuracy[key]["test"]}
        families = sorted({f for per in test.values() for f in per})
        if families:
            lines += ["Per question family on test:", "", "| model | " + " | ".join(families) + " |",
                      "|---" * (len(families) + 1) + "|"]
            for key, label in ROWS:
                if key in test:
                    lines.append(f"| {label} | " + " | ".join(
                        f"{test[key][f]['accuracy']:.3f}" if f in test[key] else "" for f in families) + " |")
            lines.append("")
    lines += ["## Stages", "", "| stage | steps | wall time (s) | median step (s) | peak RSS (MB) |", "|---|---|---|---|---|"]
    for name, st in report["stages"].items():
        note = " (teacher verbalizers from cache)" if st.get("from_cache") else ""
        lines.append(
            f"| {name}{note} | {st.get('steps', 0)} | {st.get('wall_time_s', 0)} | {st.get('median_step_s', '-')} "
            f"| {st.get('peak_rss_mb', 0)} |"
        )
    lines += ["", f"Total training time: {report['total_wall_time_s']} s.", ""]
    stop = report["stages"].get(StageName.SFT, {}).get("early_stopping")
    if stop:
        curve = ", ".join(f"{step}: {acc:.3f}" for step, acc in stop["curve"])
        lines += [f"SFT early stopping: kept step {stop['kept_step']} (val {stop['val']:.3f}); val by step: {curve}.", ""]
    if report["matching_heatmap"]:
        lines += [
            f"Target layers: student {report['student_layers']}, teacher {report['teacher_layers']}. "
            "Matched-layer counts: `matching_heatmap.png`; loss terms: `loss_curves.png`.",
            "",
        ]
    if report.get("mean_match_uniformity") is not None:
        lines += [
            f"Layer matching sampled at {report['mean_match_uniformity']:.3f} of the uniform distribution's entropy "
            "(mean over steps and targets with a choice; 1 = uniform over the search range, 0 = always the same "
            "layer): `matching_entropy.png`.",
            "",
        ]
    return "\n".join(lines)


def plot_losses(metrics: list[dict], path: Path) -> None:
    """One panel per stage, one line per logged loss term."""
    skip = {"stage", "step", "lr", "step_s", "tokens_per_s", "peak_rss_mb", "matched", "temperatures", "match_entropy",
            "match_uniformity",
            "val_accuracy"}
    stages = list(dict.fromkeys(m["stage"] for m in metrics))
    if not stages:
        return
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.5), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [m for m in metrics if m["stage"] == stage]
        for term in dict.fromkeys(k for m in rows for k in m if k not in skip):
            points = [(m["step"], m[term]) for m in rows if term in m]
            ax.plot(*zip(*points), label=term)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic.write_figure(path, fig)


def plot_heatmap(heatmap: dict, student_layers: list[int], teacher_layers: list[int], path: Path) -> None:
    """Matched (student target x teacher target) counts, early vs late in step 2 (the paper's Fig. 5)."""
    halves = [h for h in ("early", "late") if h in heatmap]
    fig, axes = plt.subplots(1, len(halves), figsize=(4 * len(halves), 3.2), squeeze=False)
    for ax, half in zip(axes[0], halves):
        ax.imshow(heatmap[half], cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(teacher_layers)), [str(t) for t in teacher_layers], fontsize=7)
        ax.set_yticks(range(len(student_layers)), [str(s) for s in student_layers], fontsize=7)
        ax.set_xlabel("teacher layer")
        ax.set_ylabel("student layer")
        ax.set_title(f"{half} half of step 2")
    fig.tight_layout()
    atomic.write_figure(path, fig)


def mean_uniformity(uniformity: list[list[float | None]]) -> float | None:
    """Mean of entropy / log(candidates) over every step and every target that had a choice."""
    values = [u for row in uniformity for u in row if u is not None]
    return round(sum(values) / len(values), 4) if values else None


def plot_uniformity(uniformity: list[list[float | None]], student_layers: list[int], path: Path, window: int = 10) -> None:
    """Per step of step 2, the entropy of the distribution each student target's match is sampled from,
    divided by log(number of candidates) (moving average over `window` steps): 1 is uniform sampling over
    the search range, 0 a fixed choice. Steps where a target had a single candidate are left out."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, layer in enumerate(student_layers):
        points = [(j, row[i]) for j, row in enumerate(uniformity) if row[i] is not None]
        if not points:
            continue
        steps, series = zip(*points)
        smooth = [sum(series[max(0, j - window + 1) : j + 1]) / len(series[max(0, j - window + 1) : j + 1])
                  for j in range(len(series))]
        ax.plot(steps, smooth, label=f"student layer {layer}", lw=1)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("step of step 2")
    ax.set_ylabel("entropy / log(candidates)")
    ax.set_title(f"layer-matching sampling: 1 = uniform over the candidates ({window}-step mean)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic.write_figure(path, fig)
