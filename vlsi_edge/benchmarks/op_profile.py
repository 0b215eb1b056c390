"""Where a decode step's time goes, op by op, in one exported program's text decoder.

    python -m vlsi_edge.bench op-profile --export DIR --artifact executorch-8da4w

ExecuTorch: ETDump (the runtime's own event trace: every operator it runs, every XNNPACK kernel inside a
delegate call), read with ExecuTorch's `Inspector`. onnxruntime: its session profiler (every node's kernel
time). Both run the decoder alone on random embeddings: a `prompt`-token prefill, then `steps` single-token
steps; only the steps count. Each runs in a worker process of its own (`python -m
vlsi_edge.benchmarks.op_profile`), on `threads` threads. Rows: op (as the runtime names it; XNNPACK
kernels with their instance number dropped), total ms over the steps, calls, share of the steps' time.
ExecuTorch's rows nest (an XNNPACK kernel inside its delegate call, a kernel inside its operator call), so
they add up by level: "delegate calls (XNNPACK)" + "operator calls" + "runtime (between calls)" = 100%.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from vlsi_edge.worker import serve, spawn


def profile(export_dir: Path, artifact: str, threads: int, prompt: int = 80, steps: int = 32) -> dict:
    """The op table of `artifact`'s decoder (see the module docstring), measured in a worker process."""
    from vlsi_edge.contracts.manifest import verified_artifact

    _, entry, files = verified_artifact(export_dir, artifact)
    job = {"runtime": entry["runtime"], "files": {k: str(v) for k, v in files.items()}, "threads": threads,
           "prompt": prompt, "steps": steps}
    result = spawn("vlsi_edge.benchmarks.op_profile", job, threads=threads)
    return {"artifact": artifact, "export": str(export_dir), "threads": threads, "prompt": prompt, "steps": steps,
            **result}


def _executorch(job: dict) -> dict:
    import executorch.kernels.quantized  # noqa: F401
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401
    from executorch.extension.pybindings import portable_lib

    torch.set_num_threads(job["threads"])
    module = portable_lib._load_for_executorch(job["files"]["program"], enable_etdump=True)
    hidden = list(module.method_meta("text_decoder").input_tensor_meta(0).sizes())[-1]
    prompt, steps = job["prompt"], job["steps"]
    torch.manual_seed(0)
    module.run_method("text_decoder", (torch.randn(1, prompt, hidden), torch.arange(prompt)))
    start = time.perf_counter()
    for i in range(steps):
        module.run_method("text_decoder", (torch.randn(1, 1, hidden), torch.tensor([prompt + i])))
    wall_ms = (time.perf_counter() - start) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.etdp"
        module.write_etdump_result_to_file(str(path))
        inspector = Inspector(etdump_path=str(path))
    total, calls = Counter(), Counter()
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            if event.perf_data is None or len(event.perf_data.raw) != steps + 1:
                continue
            name = re.sub(r" #\d+$", "", event.name)  # "Fully Connected (...) GEMM #3" -> one row per kernel kind
            total[name] += sum(event.perf_data.raw[1:])  # raw[0] is the prefill
            calls[name] += steps
    execute = total.get("Method::execute") or wall_ms
    delegate, operator = total.pop("DELEGATE_CALL", 0.0), total.pop("OPERATOR_CALL", 0.0)
    total.pop("Method::execute", None)
    rows = [{"op": "delegate calls (XNNPACK)", "ms": delegate, "calls": calls["DELEGATE_CALL"], "level": 0},
            {"op": "operator calls (ExecuTorch kernels)", "ms": operator, "calls": calls["OPERATOR_CALL"], "level": 0},
            {"op": "runtime (between calls)", "ms": max(execute - delegate - operator, 0.0), "calls": 0, "level": 0}]
    rows += [{"op": name, "ms": ms, "calls": calls[name], "level": 1} for name, ms in total.most_common()]
    return {"decode_ms_per_step": execute / steps, "wall_ms_per_step": wall_ms / steps,
            "rows": [{**r, "share": r["ms"] / execute} for r in rows]}


def _onnx(job: dict) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = job["threads"]
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(job["files"]["decoder_model_merged"], options, providers=["CPUExecutionProvider"])
        inputs = session.get_inputs()
        hidden = next(i for i in inputs if i.name == "inputs_embeds").shape[2]
        rng = np.random.default_rng(0)
        past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in inputs
                if i.name.startswith("past_key_values.")}
        n = job["prompt"]
        names = {i.name for i in inputs}  # int4_cpu's builder decoder takes no position_ids

        def declared(feeds: dict) -> dict:
            return {k: v for k, v in feeds.items() if k in names}

        feeds = declared({"inputs_embeds": rng.standard_normal((1, n, hidden)).astype(np.float32),
                          "attention_mask": np.ones((1, n), np.int64), "position_ids": np.arange(n)[None], **past})
        start = None
        for step in range(job["steps"] + 1):
            if step == 1:
                start = time.perf_counter()
            out = session.run(None, feeds)
            past = {i.name: v for i, v in zip([i for i in inputs if i.name.startswith("past_key_values.")], out[1:])}
            feeds = declared({"inputs_embeds": rng.standard_normal((1, 1, hidden)).astype(np.float32),
                              "attention_mask": np.ones((1, n + step + 1), np.int64),
                              "position_ids": np.array([[n + step]]), **past})
        wall_ms = (time.perf_counter() - start) * 1000
        trace = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in trace if e.get("name") == "model_run"), key=lambda e: e["ts"])[1:]  # drop the prefill
    total, calls = Counter(), Counter()
    execute = sum(r["dur"] for r in runs) / 1000
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if any(r["ts"] <= event["ts"] <= r["ts"] + r["dur"] for r in runs):
            op = event["args"]["op_name"]
            total[op] += event["dur"] / 1000
            calls[op] += 1
    kernels = sum(total.values())
    rows = [{"op": op, "ms": ms, "calls": calls[op], "level": 1} for op, ms in total.most_common()]
    rows.append({"op": "runtime (between kernels)", "ms": max(execute - kernels, 0.0), "calls": 0, "level": 0})
    return {"decode_ms_per_step": execute / job["steps"], "wall_ms_per_step": wall_ms / job["steps"],
            "rows": [{**r, "share": r["ms"] / execute} for r in rows]}


def markdown(result: dict, command: str, top: int = 15) -> str:
    lines = [f"### {result['artifact']}: a decode step, op by op", "",
             f"{result['decode_ms_per_step']:.2f} ms per step in the runtime's own trace "
             f"({result['wall_ms_per_step']:.2f} ms wall), {result['steps']} steps after a {result['prompt']}-token "
             f"prefill, {result['threads']} threads.", "", "| op | ms per step | calls per step | share |", "|---|---|---|---|"]
    for row in result["rows"][: top + 3]:
        name = row["op"] if row["level"] == 0 else f"&nbsp;&nbsp;{row['op']}"
        lines.append(f"| {name} | {row['ms'] / result['steps']:.3f} | {row['calls'] / result['steps']:.0f} | "
                     f"{row['share']:.1%} |")
    lines += ["", f"Measured by `{command}`.", ""]
    return "\n".join(lines)


def _work(job: dict) -> dict:
    return _executorch(job) if job["runtime"] == "executorch" else _onnx(job)


if __name__ == "__main__":  # the worker: profile one program per process
    sys.exit(serve(_work))
