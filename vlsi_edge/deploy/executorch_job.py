"""The ExecuTorch programs of an export, one per scheme, here or each in its own process
(`python -m vlsi_edge.deploy.executorch_job JOB RESULT`).

ExecuTorch's lowering is single-threaded Python (one to two minutes per program on the toy, more at real
sizes), so the exporter can run one job per scheme side by side (`vlsi_edge.export --jobs`), each
loading the model itself, while it exports the ONNX graphs.
Job: model_dir, image_size, max_context_len, scheme, executorch (the target's `executorch` keys),
metadata (the runner's constant methods), path. Result: the quantization recipe, bytes, seconds.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from vlsi_edge.contracts.manifest import file_entry
from vlsi_edge.deploy.targets import PRECISION, ExecutorchTarget, TargetConfig
from vlsi_edge.worker import serve, spawn

log = logging.getLogger(__name__)


def export_scheme(model, family, size: int, max_context_len: int, scheme: str, target: ExecutorchTarget,
                  metadata: dict, path: Path) -> dict:
    """Quantize a split of `model` (which it rewrites in place: pass a copy) and write the .pte."""
    from vlsi_edge.deploy.executorch_export import export_executorch
    from vlsi_edge.deploy.quantize import quantize_parts
    from vlsi_edge.families.parts import split_model

    start = time.perf_counter()
    parts = split_model(model, family, size, max_cache_len=max_context_len)
    recipe = quantize_parts(parts, scheme, target)
    size_bytes = export_executorch(parts, metadata, path, target.llm_ops)
    return {"recipe": recipe, "bytes": size_bytes, "seconds": round(time.perf_counter() - start, 1),
            "stock_runner": parts.mrope_grid is None}


def start_executorch(model, family, size: int, target: TargetConfig, metadata: dict, staging: Path, artifacts: dict,
                     timings: dict, progress: tqdm, model_dir: Path, jobs: int):
    """One .pte per scheme. jobs 1: here, one after the other, each from a fresh copy of the model
    (quantization rewrites modules in place). jobs > 1: in that many processes side by side
    (`executorch_job`), while the caller goes on; returns the function that waits for them."""
    def record(scheme: str, result: dict) -> None:
        path = staging / f"model-{scheme}.pte"
        artifacts[f"executorch-{scheme}"] = {
            "runtime": "executorch", "backend": "xnnpack", "scheme": scheme, "precision": PRECISION[scheme],
            "quantization": result["recipe"], "files": {"program": file_entry(staging, path)},
            # the runtime must link ExecuTorch's LLM kernels (llama::update_cache / custom_sdpa) when true
            "llm_ops": target.executorch.llm_ops,
            "methods": ["vision_encoder", "token_embedding", "text_decoder", *metadata],
            "stock_runner": result["stock_runner"],  # Qwen2-VL's M-RoPE needs our host loop
        }
        timings[f"executorch-{scheme}"] = result["seconds"]
        log.info("executorch %s: %d bytes in %.0f s", scheme, result["bytes"], result["seconds"])
        progress.update()

    schemes = target.executorch.schemes
    if jobs <= 1:
        for scheme in schemes:
            progress.set_postfix_str(f"executorch-{scheme}")
            record(scheme, export_scheme(copy.deepcopy(model), family, size, target.max_context_len, scheme,
                                         target.executorch, metadata, staging / f"model-{scheme}.pte"))
        return lambda: None
    progress.set_postfix_str(f"executorch: {len(schemes)} schemes in {jobs} processes")
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads that wait on the job processes
    slowest_first = sorted(schemes, key=lambda s: s == "fp32")  # quantized programs lower longest
    futures = {scheme: pool.submit(spawn, "vlsi_edge.deploy.executorch_job",
                                   job_for(model_dir, size, target.max_context_len, scheme, target.executorch, metadata,
                                           staging / f"model-{scheme}.pte"))
               for scheme in slowest_first}

    def wait() -> None:
        try:
            for scheme in schemes:
                record(scheme, futures[scheme].result())
        finally:
            pool.shutdown(cancel_futures=True)

    return wait


def job_for(model_dir: Path, size: int, max_context_len: int, scheme: str, target: ExecutorchTarget,
            metadata: dict, path: Path) -> dict:
    return {"model_dir": str(model_dir), "image_size": size, "max_context_len": max_context_len, "scheme": scheme,
            "executorch": asdict(target), "metadata": metadata, "path": str(path)}


def auto_jobs(model_dir: Path, schemes: int) -> int:
    """Jobs side by side: one per core and scheme, as many as memory holds (a lowering job peaks near four
    times the model's weights plus ~1 GB of torch and ExecuTorch)."""
    import os

    weights = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no such sysconf name (macOS): trust the cores
        available = None
    by_memory = max(1, int(available // (4 * weights + 2**30))) if available else schemes
    return max(1, min(os.cpu_count() or 1, schemes, by_memory))


def handle(job: dict) -> dict:
    from vlsi_edge.families.sources import family_of

    torch.set_num_threads(1)  # one core per job: the jobs run side by side
    family = family_of(job["model_dir"])
    model = family.load(job["model_dir"], torch.float32).eval()
    return export_scheme(model, family, job["image_size"], job["max_context_len"], job["scheme"],
                         ExecutorchTarget(**job["executorch"]), job["metadata"], Path(job["path"]))


if __name__ == "__main__":
    sys.exit(serve(handle))
