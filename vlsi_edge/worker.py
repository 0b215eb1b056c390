"""Work in a fresh process, one way for every caller: `python -m <module> JOB_JSON RESULT_JSON`.

A worker module ends with `sys.exit(serve(handler))`; `handler(job: dict) -> dict` does the work and
returns a JSON-able result (large arrays go to a file the job names). `spawn` runs it and returns
that result, or raises `WorkerError` with the last lines the worker printed. A process per job keeps
each job's peak memory and thread pool its own (the exported programs, transformers' baseline,
llama.cpp, one training objective).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vlsi_edge.config import ConfigError


CONFIG_ERROR = "config_error"


class WorkerError(RuntimeError):
    """A worker exited with an error; the message ends with the last lines of its output."""


def spawn(module: str, job: dict, threads: int | None = None, timeout_s: float | None = None) -> dict:
    """Run `module`'s worker on `job` in a fresh Python; its result (threads caps OpenMP's pool)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run([sys.executable, "-m", module, json.dumps(job), str(result)],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0 or not result.is_file():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            raise WorkerError(" / ".join(lines[-2:]) or f"{module} exited with {proc.returncode}")
        out = json.loads(result.read_text())
        if isinstance(out, dict) and CONFIG_ERROR in out:  # bad input found in the worker: the caller's error too
            raise ConfigError(out[CONFIG_ERROR])
        return out


def spawn_arrays(module: str, job: dict, threads: int | None = None) -> tuple[dict | None, str | None]:
    """Run a worker that writes its arrays to job["out"] (an .npz this call provides): (arrays, None), or
    (None, the worker's last lines) when it failed."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        try:
            spawn(module, {**job, "out": str(out)}, threads=threads)
        except WorkerError as e:
            return None, str(e)
        with np.load(out) as data:
            return {k: data[k] for k in data.files}, None


def serve(handler: Callable[[dict], dict], argv: list[str] | None = None) -> int:
    """A worker module's main: read the job, run the handler, write its result."""
    job, result = sys.argv[1:] if argv is None else argv
    try:
        out = handler(json.loads(job))
    except ConfigError as e:  # bad input, not a crash: `spawn` raises it again in the caller, message intact
        out = {CONFIG_ERROR: str(e)}
    Path(result).write_text(json.dumps(out))
    return 0
