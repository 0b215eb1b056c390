"""Validate every artifact of an export against the float student (each run in its own worker process).

Two passes. Answers: every validation item through every program (and the float student's eager parts,
through the same host loop and worker, `vlsi_edge.runtime.worker`, spawned by module name), `validation.jobs`
programs side by side with one thread each; the float student's answers and first-token logits are the
reference every program's agreement and KL are measured against, and its accuracy the gate's baseline.
Speed: the first `validation.timing_size` items again, one program at a time with the target's threads,
so no timing shares the machine with another run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from vlsi_edge.contracts.manifest import load_manifest
from vlsi_edge.data import ShapesConfig
from vlsi_edge.data.scoring import score
from vlsi_edge.families.inputs import write_inputs
from vlsi_edge.families.sources import family_of
from vlsi_edge.validate.inputs import Reference, validation_items
from vlsi_edge.validate.report import gate, metrics, speed, write_report
from vlsi_edge.worker import spawn_arrays

log = logging.getLogger(__name__)
FLOAT_ROW = "float (PyTorch eager)"


def run_program(export_dir: Path, artifact: str, inputs: Path, threads: int, max_new_tokens: int,
                ignore_eos: bool = False) -> tuple[dict | None, str | None]:
    """(the program's arrays, None), or (None, the error's last lines) when its worker failed."""
    job = {"export_dir": str(export_dir), "artifact": artifact, "inputs": str(inputs), "threads": threads,
           "max_new_tokens": max_new_tokens, "ignore_eos": ignore_eos}
    return spawn_arrays("vlsi_edge.runtime.worker", job, threads=threads or None)


def decode_answers(tokenizer, run: dict) -> list[str]:
    answers, start = [], 0
    for n in run["lengths"]:
        answers.append(tokenizer.decode(run["tokens"][start : start + n].tolist(), skip_special_tokens=True).strip())
        start += n
    return answers


def validate_export(export_dir: Path, model_dir: Path, data: ShapesConfig, target, command: str,
                    teacher: dict | None = None) -> dict:
    """Score every artifact in export_dir's manifest; write report.json / .md / .png there; return the report.
    teacher: its test accuracy from the training run (the report's chain starts there), or None."""
    manifest = load_manifest(export_dir)
    family = family_of(model_dir)
    processor = family.load_processor(export_dir)  # the shipped processor: the programs' fixed input
    tokenizer = family.tokenizer(processor)
    samples = validation_items(data, target.validation.size)
    timing_items = min(target.validation.timing_size, len(samples))
    threads = min(target.threads, os.cpu_count() or 1) if target.threads else 0
    names = [f"float:{model_dir}", *manifest["artifacts"]]
    jobs = min(target.validation.jobs or os.cpu_count() or 1, len(names))
    with tempfile.TemporaryDirectory() as tmp:
        inputs, timing_inputs = Path(tmp) / "inputs.npz", Path(tmp) / "timing.npz"
        write_inputs(family, processor, samples, inputs)
        write_inputs(family, processor, samples[:timing_items], timing_inputs)
        with ThreadPoolExecutor(jobs) as pool:  # threads that wait on the worker processes
            answered = list(tqdm(pool.map(lambda name: run_program(export_dir, name, inputs, 1, target.max_new_tokens),
                                          names), total=len(names), desc="validate: answers", unit="artifact"))
        if answered[0][1] is not None:  # no reference: nothing to time either
            raise RuntimeError(f"the float student {model_dir} failed in the validation worker: {answered[0][1]}")
        timed = [run_program(export_dir, name, timing_inputs, threads, target.max_new_tokens)
                 for name in tqdm(names, desc="validate: speed", unit="artifact")]
    (run, _), (timing, timing_error) = answered[0], timed[0]
    if timing_error is not None:
        raise RuntimeError(f"the float student {model_dir} failed in the validation worker: {timing_error}")
    reference = Reference(samples, decode_answers(tokenizer, run), run["first_logits"])
    float_accuracy = round(float(score(reference.answers, samples)["accuracy"]), 4)
    rows = [{"artifact": FLOAT_ROW, "runtime": "pytorch", "scheme": "fp32", "bytes": None,
             **metrics(run, reference.answers, reference), **speed(timing),
             "threads_changed": changed(reference.answers, decode_answers(tokenizer, timing))}]
    for name, (run, error), (timing, timing_error) in zip(names[1:], answered[1:], timed[1:]):
        artifact = manifest["artifacts"][name]
        row = {"artifact": name, "runtime": artifact["runtime"], "scheme": artifact["scheme"],
               "bytes": sum(f["bytes"] for f in artifact["files"].values())}
        if error is not None or timing_error is not None:
            row["error"] = error or timing_error
        else:
            answers = decode_answers(tokenizer, run)
            row |= {**metrics(run, answers, reference), **speed(timing),
                    "threads_changed": changed(answers, decode_answers(tokenizer, timing))}
        row["gate"] = gate(row, float_accuracy, target.threshold(artifact["scheme"]))
        rows.append(row)
        log.info("validated %s: %s", name, {k: v for k, v in row.items() if k != "artifact"})
    report = {
        "target": target.name,
        "model": str(model_dir),
        "family": family.name,
        "items": len(samples),
        "jobs": jobs,
        "timing_items": timing_items,
        "threads": threads or "runtime default",
        "float_accuracy": float_accuracy,
        "teacher": teacher,
        "rows": rows,
        "passed": all(r["gate"]["passed"] for r in rows if "gate" in r),
        "command": command,
    }
    write_report(report, export_dir)
    return report


def changed(answers: list[str], timed_answers: list[str]) -> int:
    """Items of the speed pass answered differently with the target's threads than with one thread: thread-count
    numerics (0 for runtimes whose kernels split work by output only)."""
    return sum(a != b for a, b in zip(answers, timed_answers))


def summary(report: dict) -> dict:
    """What the manifest records of a validation (its `validation` key)."""
    return {
        "report": "report.json", "passed": report["passed"],
        "artifacts": {r["artifact"]: {k: r.get(k) for k in ("accuracy", "agreement", "first_token_kl", "gate", "error")}
                      for r in report["rows"] if "gate" in r},
    }
