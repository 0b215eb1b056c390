"""Validate every artifact of an export against the float student (each in its own worker process)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from vlsi_edge.validate.inputs import float_reference, validation_items, write_inputs
from vlsi_edge.validate.report import gate, metrics, write_report

log = logging.getLogger(__name__)


def run_worker(export_dir: Path, artifact: str, inputs: Path, threads: int, max_new_tokens: int,
               ignore_eos: bool = False) -> tuple[dict | None, str | None]:
    """(the worker's arrays, None), or (None, the error's last lines) when it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        cmd = [sys.executable, "-m", "vlsi_edge.validate.worker", str(export_dir), artifact, str(inputs), str(out),
               "--threads", str(threads), "--max-new-tokens", str(max_new_tokens), *(["--ignore-eos"] * ignore_eos)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return None, " / ".join(lines[-2:]) or f"exit code {proc.returncode}"
        with np.load(out) as data:
            return {k: data[k] for k in data.files}, None


def validate_export(export_dir: Path, source, model, family, processor, target, command: str) -> dict:
    """Score every artifact in export_dir's manifest; write report.json / .md / .png there; return the report."""
    import json

    manifest = json.loads((export_dir / "manifest.json").read_text())
    tokenizer = family.tokenizer(processor)
    size = target.validation.size
    samples = validation_items(source.data, size)
    threads = min(target.threads, os.cpu_count() or 1) if target.threads else 0
    reference = float_reference(model, family, processor, samples, target.validation.max_new_tokens)
    float_accuracy = metrics_accuracy(reference)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        write_inputs(family, processor, samples, inputs)
        names = [f"float:{source.model_dir}", *manifest["artifacts"]]
        for name in names:
            run, error = run_worker(export_dir, name, inputs, threads, target.validation.max_new_tokens)
            artifact = manifest["artifacts"].get(name)
            row = {"artifact": "float (PyTorch eager)" if artifact is None else name,
                   "runtime": "pytorch" if artifact is None else artifact["runtime"],
                   "scheme": "fp32" if artifact is None else artifact["scheme"],
                   "bytes": None if artifact is None else sum(f["bytes"] for f in artifact["files"].values())}
            if error is not None:
                row["error"] = error
            else:
                answers, start = [], 0
                for n in run["lengths"]:
                    answers.append(tokenizer.decode(run["tokens"][start : start + n].tolist(), skip_special_tokens=True).strip())
                    start += n
                row |= metrics(run, answers, reference)
            if artifact is not None:
                row["gate"] = gate(row, float_accuracy, target.threshold(artifact["scheme"]))
            rows.append(row)
            log.info("validated %s: %s", name, {k: v for k, v in row.items() if k not in ("artifact",)})
    report = {
        "target": target.name,
        "model": str(source.model_dir),
        "family": family.name,
        "items": size,
        "threads": threads or "runtime default",
        "float_accuracy": float_accuracy,
        "rows": rows,
        "passed": all(r["gate"]["passed"] for r in rows if "gate" in r),
        "command": command,
    }
    write_report(report, export_dir)
    return report


def metrics_accuracy(reference) -> float:
    from vlsi_edge.data.scoring import score

    return round(float(score(reference.answers, reference.samples)["accuracy"]), 4)
