"""Per-artifact metrics against the float student, the gate verdicts, and report.json / report.md / plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlsi_edge import atomic  # noqa: E402
from vlsi_edge.data.scoring import exact_match, normalize_answer, score  # noqa: E402
from vlsi_edge.validate.inputs import Reference  # noqa: E402
from vlsi_edge.validate.stats import paired_loss, wilson  # noqa: E402


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def first_token_kl(reference: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(float || program) of the first answer token's distribution."""
    p_log, q_log = log_softmax(reference.astype(np.float64)), log_softmax(logits.astype(np.float64))
    return float((np.exp(p_log) * (p_log - q_log)).sum(axis=-1).mean())


def metrics(run: dict, answers: list[str], reference: Reference) -> dict:
    """Accuracy (with its 95% interval and per question family), the paired loss against the float answers on the
    same items, agreement with them and first-token KL of one worker run."""
    scored = score(answers, reference.samples)
    agree = np.mean([normalize_answer(a) == normalize_answer(b) for a, b in zip(answers, reference.answers)])
    right = [exact_match(a, s.answer) for a, s in zip(answers, reference.samples)]
    float_right = [exact_match(a, s.answer) for a, s in zip(reference.answers, reference.samples)]
    margin = np.diff(np.sort(reference.first_logits, axis=-1)[:, -2:], axis=-1)[:, 0]  # float's top-1 minus top-2
    changed = np.array([normalize_answer(a) != normalize_answer(b) for a, b in zip(answers, reference.answers)])
    return {
        "accuracy": round(float(scored["accuracy"]), 4),
        "accuracy_95": [round(v, 4) for v in wilson(scored["correct"], scored["total"])],
        "per_family": {f: round(v["accuracy"], 4) for f, v in scored["per_family"].items()},
        "paired": paired_loss(float_right, right),
        "agreement": round(float(agree), 4),
        # Where answers change: [items, changed] by how sure the float student was of the first answer token.
        "changed_by_margin": {name: [int(m.sum()), int(changed[m].sum())] for name, m in (
            ("< 0.25", margin < 0.25), ("0.25-2", (margin >= 0.25) & (margin < 2)), (">= 2", margin >= 2))},
        "first_token_kl": float(f"{first_token_kl(reference.first_logits, run['first_logits']):.3g}"),
    }


def speed(run: dict) -> dict:
    """Medians of encode and TTFT, decode tokens/s and the process's peak RSS of one worker run."""
    steps, decode_s = run["decode_steps"].sum(), run["decode_s"].sum()
    return {
        "encode_ms": round(1000 * float(np.median(run["encode_s"])), 3),
        "first_token_ms": round(1000 * float(np.median(run["first_token_s"])), 3),
        "decode_tokens_per_s": round(float(steps / decode_s), 1) if decode_s > 0 else None,
        "peak_rss_mb": round(float(run["peak_rss_mb"]), 1),
    }


def gate(row: dict, float_accuracy: float, threshold: float) -> dict:
    """Pass when the program ran and, with 95% confidence, loses at most `threshold` points of accuracy: the upper
    end of the paired interval of its loss against the float student is <= threshold. A point loss under the
    threshold is not enough when the items cannot tell it from a larger one."""
    if row.get("error"):
        return {"threshold_points": threshold, "loss_points": None, "loss_upper_95": None, "passed": False}
    loss = round(100 * (float_accuracy - row["accuracy"]), 2)
    upper = row["paired"]["loss_95"][1]
    return {"threshold_points": threshold, "loss_points": loss, "loss_upper_95": upper, "passed": upper <= threshold}


COLUMNS = [
    ("artifact", "artifact"), ("scheme", "scheme"), ("accuracy", "accuracy [95%]"), ("loss", "loss (pts) [95%, paired]"),
    ("agreement", "agreement"), ("first_token_kl", "1st-token KL"), ("encode_ms", "encode ms"),
    ("first_token_ms", "TTFT ms"), ("decode_tokens_per_s", "decode tok/s"), ("peak_rss_mb", "peak RSS MB"),
    ("size", "size"), ("gate", "gate"),
]


def _cell(row: dict, key: str) -> str:
    if key == "loss":
        loss = row.get("gate", {}).get("loss_points")
        if loss is None:
            return ""
        low, high = row["paired"]["loss_95"]
        return f"{loss:+.1f} [{low:+.1f}, {high:+.1f}]"
    if key == "size":
        return f"{row['bytes'] / 1e6:.2f} MB" if row.get("bytes") else ""
    if key == "gate":
        if "gate" not in row:
            return "reference"
        return ("pass" if row["gate"]["passed"] else "**FAIL**") + f" (upper <= {row['gate']['threshold_points']:g})"
    value = row.get(key)
    if value is None:
        return ""
    if key == "accuracy" and row.get("accuracy_95"):
        return f"{value:.3f} [{row['accuracy_95'][0]:.3f}, {row['accuracy_95'][1]:.3f}]"
    if key in ("accuracy", "agreement"):
        return f"{value:.3f}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def markdown(report: dict) -> str:
    lines = [
        f"# Export validation: {report['target']}",
        "",
        f"Model: `{report['model']}` ({report['family']}). {report['items']} ShapesVQA test items (real rendered "
        f"images), greedy answers ({report['jobs']} programs side by side, one thread each); speed on the first "
        f"{report['timing_items']} of them, one program at a time, {report['threads']} thread(s). Gate: the upper end "
        f"of the 95% paired interval of the accuracy lost against the float student, in points. Verdict: **{'PASS' if report['passed'] else 'FAIL'}**.",
        "",
        *chain(report),
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in report["rows"]:
        cells = [_cell(row, key) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"- `{row['artifact']}` failed to run: {row['error']}" for row in report["rows"] if row.get("error")]
    lines += ["", *errors] if errors else []
    drift = [f"- `{row['artifact']}`: {row['threads_changed']} of the {report['timing_items']} speed-pass answers "
             f"differ with {report['threads']} threads from its answers with one"
             for row in report["rows"] if row.get("threads_changed")]
    lines += ["", *drift] if drift else []
    lines += ["", *per_family_table(report["rows"]), "", *margin_table(report["rows"])]
    lines += [
        "",
        "accuracy: exact match on the test items through the artifact's own runtime, with its 95% Wilson "
        "interval; loss: accuracy points lost against the float student on the same items, with a 95% paired "
        "bootstrap interval (only items where the two differ count); agreement: same "
        "normalised answer as the float student; 1st-token KL: mean KL(float || program) of the first "
        "answer token; encode / TTFT (image in -> first token): medians; decode tok/s: all decode steps / "
        "their time; peak RSS: the runtime's whole process (the speed pass).",
        "",
        f"Measured by: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


def chain(report: dict) -> list[str]:
    """Where the points went: teacher -> float student -> each program, accuracy and what each step lost."""
    student = report["rows"][0]
    lines = ["## Teacher -> float student -> programs", "",
             "| model | accuracy | points lost vs the step before | agreement with the float student |",
             "|---|---|---|---|"]
    teacher = report.get("teacher")
    if teacher:
        note = "" if teacher["items"] == report["items"] else f" ({teacher['items']} items)"
        lines.append(f"| teacher `{teacher.get('model')}` (training run's test score{note}) | {teacher['accuracy']:.3f} | | |")
        lost = f"{100 * (teacher['accuracy'] - student['accuracy']):+.1f} (distillation)"
    else:
        lost = ""
    lines.append(f"| float student | {student['accuracy']:.3f} | {lost} | 1.000 |")
    for row in report["rows"][1:]:
        if row.get("error"):
            lines.append(f"| {row['artifact']} | failed | | |")
            continue
        low, high = row["paired"]["loss_95"]
        lines.append(f"| {row['artifact']} | {row['accuracy']:.3f} | {row['paired']['loss_points']:+.1f} "
                     f"[{low:+.1f}, {high:+.1f}] (quantization, export) | {row['agreement']:.3f} |")
    return [*lines, ""]


def margin_table(rows: list[dict]) -> list[str]:
    """Changed answers by the float student's first-token margin (top-1 minus top-2 logit): near-ties flip first."""
    rows = [r for r in rows[1:] if r.get("changed_by_margin") and r["agreement"] < 1]
    if not rows:
        return []
    bins = list(rows[0]["changed_by_margin"])
    counts = rows[0]["changed_by_margin"]
    lines = ["| changed answers, by the float's first-token margin (items) | "
             + " | ".join(f"{b} ({counts[b][0]})" for b in bins) + " |", "|" + "---|" * (len(bins) + 1)]
    for r in rows:
        lines.append(f"| {r['artifact']} | " + " | ".join(str(r["changed_by_margin"][b][1]) for b in bins) + " |")
    return lines


def per_family_table(rows: list[dict]) -> list[str]:
    """Accuracy per question family and artifact (where the points went)."""
    rows = [r for r in rows if r.get("per_family")]
    if not rows:
        return []
    families = list(rows[0]["per_family"])
    lines = ["| artifact | " + " | ".join(families) + " |", "|" + "---|" * (len(families) + 1)]
    for r in rows:
        lines.append(f"| {r['artifact']} | " + " | ".join(f"{r['per_family'].get(f, 0):.3f}" for f in families) + " |")
    return lines


def plot(report: dict):
    rows = [r for r in report["rows"] if not r.get("error")]
    names = [r["artifact"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("accuracy", "test accuracy"), ("first_token_ms", "time to first token (ms)"), ("bytes", "size (MB)")]
    for ax, (key, title) in zip(axes, panels):
        values = [(r.get(key) or 0) / (1e6 if key == "bytes" else 1) for r in rows]
        colors = ["#888888" if "gate" not in r else ("#2a9d8f" if r["gate"]["passed"] else "#e76f51") for r in rows]
        ax.barh(names, values, color=colors)
        ax.set_title(title)
        ax.invert_yaxis()
        if key == "accuracy" and rows:
            ax.axvline(rows[0]["accuracy"], color="black", lw=0.8, ls="--")
        if ax is not axes[0]:
            ax.set_yticklabels([])
    fig.suptitle(f"{report['target']}: exported programs vs the float student (grey; green pass, red fail)")
    fig.tight_layout()
    return fig


def write_report(report: dict, out_dir: Path) -> None:
    atomic.write_json(out_dir / "report.json", report)
    atomic.write_text(out_dir / "report.md", markdown(report))
    atomic.write_figure(out_dir / "report.png", plot(report))
