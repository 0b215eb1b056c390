"""The quantize-aware contract between training and export: which program a student was trained through.

`distill.quantize_aware` trains steps 2-3 through one 4-bit program's arithmetic (vlsi_edge.distill.quant_aware);
the run writes `quantize_aware.json` into `student/`, and the export refuses 4-bit programs of another scheme
for it (`quantize_aware_mismatches`). The ExecuTorch arithmetic both sides use is `executorch_linear_config`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vlsi_edge import atomic
from vlsi_edge.config import ConfigError

SCHEMES = {"8da4w": "executorch", "int4": "onnx"}  # scheme -> the runtime whose program it mimics
RECORD = "quantize_aware.json"


def executorch_linear_config(scheme: str, group_size: int, method: str):
    """torchao's config for ExecuTorch's 8da4w / 8da8w linears, as ExecuTorch's own LLM export builds it
    (`executorch.extension.llm.export.quantize`), with the scale rule chosen: rtn (round to nearest) or hqq
    (HQQ's scale search, ExecuTorch's default). Quantization-aware training prepares from this same config."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    return Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int4 if scheme == "8da4w" else torch.int8,
        weight_granularity=PerGroup(group_size) if group_size else PerAxis(0),
        intx_choose_qparams_algorithm={"rtn": "affine", "hqq": "hqq_scale_only"}[method],
    )


def record(scheme: str, group_size: int) -> dict:
    """What the student directory says about how it was trained (the exporter checks its programs against it)."""
    return {"scheme": scheme, "runtime": SCHEMES[scheme], "group_size": group_size, "method": "rtn"}


def write_record(student_dir: Path, scheme: str, group_size: int) -> None:
    atomic.write_text(Path(student_dir) / RECORD, json.dumps(record(scheme, group_size), indent=2) + "\n")


def read_record(model_dir: Path) -> dict | None:
    path = Path(model_dir) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["scheme"] not in SCHEMES or not isinstance(data["group_size"], int):
            raise ValueError(f"scheme {data['scheme']!r}")
        return data
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a quantize-aware record ({type(e).__name__}: {e}); "
                          f"expected {{\"scheme\": {' | '.join(SCHEMES)}, \"group_size\": int, ...}}") from None


def quantize_aware_mismatches(record: dict | None, target) -> tuple[list[str], list[str]]:
    """(the export target's 4-bit programs a quantize-aware student was not trained for, the --set fixes);
    target: a vlsi_edge.deploy.targets.TargetConfig."""
    if record is None:
        return [], []
    scheme, group = record["scheme"], record["group_size"]
    et, ox = target.executorch, target.onnx
    wrong, fixes = [], []
    if "executorch" in target.formats and "8da4w" in et.schemes:
        if scheme != "8da4w":
            wrong.append("executorch-8da4w")
            fixes.append(f"--set \"executorch.schemes=[{','.join(s for s in et.schemes if s != '8da4w')}]\"")
        elif (et.group_size, et.int4_method) != (group, "rtn"):
            wrong.append(f"executorch-8da4w (group_size {et.group_size}, int4_method {et.int4_method})")
            fixes.append(f"--set executorch.group_size={group} --set executorch.int4_method=rtn")
    four = [s for s in ("int4", "q4f16", "int4_cpu") if s in ox.schemes] if "onnx" in target.formats else []
    if four and scheme != "int4":
        wrong += [f"onnx-{s}" for s in four]
        fixes.append(f"--set \"onnx.schemes=[{','.join(s for s in ox.schemes if s not in four)}]\"")
    elif four and (ox.block_size, ox.int4_method) != (group, "rtn"):
        wrong += [f"onnx-{s} (block_size {ox.block_size}, int4_method {ox.int4_method})" for s in four]
        fixes.append(f"--set onnx.block_size={group} --set onnx.int4_method=rtn")
    return wrong, fixes
