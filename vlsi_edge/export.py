"""`python -m vlsi_edge.export` — quantize and export the student for a target, validate it, gate it.

    python -m vlsi_edge.export --target android-arm64                 # the latest run (runs/latest)
    python -m vlsi_edge.export --target x86_64 --run runs/my-run
    python -m vlsi_edge.export --target linux-arm64 --model zoo:student
    python -m vlsi_edge.export --target android-arm64 --model ~/ckpt/SmolVLM-256M-Instruct
    python -m vlsi_edge.export --target export/my-board.yaml --set validation.size=500

Writes exports/<run>-<target>/ (DESIGN.md): one .pte per ExecuTorch scheme, onnx/ graphs per ONNX
scheme, the Hugging Face files transformers.js needs, manifest.json, report.json / report.md /
report.png. Exit status: 0 when every artifact passes its gate, 1 when one fails (after writing
everything), 2 on bad input.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vlsi_edge import atomic, logs
from vlsi_edge.config import describe
from vlsi_edge.errors import whole_number
from vlsi_edge.contracts.manifest import MANIFEST, write_manifest
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.errors import boundary
from vlsi_edge.deploy.targets import TargetConfig, known_targets, load_target


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict
    report: dict | None
    seconds: float

    @property
    def passed(self) -> bool:
        return self.report is None or self.report["passed"]


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier export, and that only when asked (`--overwrite`)."""
    out_dir = Path(out_dir)
    blocking = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FileExistsError(f"{out_dir}: {blocking} is a file, not a folder; choose another --out")
    if out_dir.exists() or out_dir.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out_dir}: already exists; pass --overwrite to replace that export, or choose "
                                  "another --out")
        if not out_dir.is_dir() or not (out_dir / MANIFEST).is_file():
            raise FileExistsError(f"{out_dir}: not an export directory (no {MANIFEST}); refusing to replace it even "
                                  "with --overwrite; choose another --out")
    for parent in out_dir.resolve().parents:
        if (parent / MANIFEST).is_file() or RunDir.is_run(parent):
            raise FileExistsError(f"{out_dir}: inside {parent}, an export or a training run; choose another --out")


def export_target(source, target: TargetConfig, out_dir: Path, validate: bool = True, command: str = "",
                  overwrite: bool = False, allow_quant_mismatch: bool = False, jobs: int = 1) -> ExportResult:
    """Export (`deploy`), then validate (`validate`) `source` for `target` into out_dir.

    Everything is written into a staging directory beside out_dir and moved into place at the end
    (reports included, whatever the gate says), so an interrupted export never leaves a half-written
    directory and never damages the previous export. jobs: ExecuTorch programs lowered side by side
    (0: as many as cores, schemes and memory allow).
    """
    from vlsi_edge.deploy.pipeline import export_programs, plan_export
    from vlsi_edge.validate.run import summary, validate_export

    check_destination(out_dir, overwrite)
    start = time.perf_counter()
    plan = plan_export(source, target, allow_quant_mismatch)  # bad target settings are refused before anything is written
    report = None
    with atomic.staged_dir(out_dir) as staging:
        if jobs == 0:
            from vlsi_edge.deploy.executorch_job import auto_jobs

            jobs = auto_jobs(source.model_dir, len(target.executorch.schemes) if "executorch" in target.formats else 0)
        manifest = export_programs(source, target, staging, plan, jobs)
        if validate:
            report = validate_export(staging, source.model_dir, source.data, target, command, teacher=source.teacher)
            manifest["validation"] = summary(report)
            write_manifest(staging, manifest)
    return ExportResult(Path(out_dir), manifest, report, time.perf_counter() - start)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m vlsi_edge.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="target keys (--set KEY=VALUE):\n" + "\n".join(describe(TargetConfig)),
    )
    parser.add_argument("--target", required=True, help=f"profile name ({', '.join(known_targets())}) or a YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one target key, e.g. onnx.block_size=64 (repeatable)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="training run directory (default: runs/latest)")
    source.add_argument("--model", help="a model directory of a supported family, or zoo:<name>")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/latest is looked up")
    parser.add_argument("--out", type=Path, help="export directory (default: exports/<run>-<target>)")
    parser.add_argument("--no-validate", action="store_true", help="export only (no report, no gate)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it is an earlier export")
    parser.add_argument("--jobs", type=whole_number(0), default=0,
                        help="ExecuTorch programs lowered side by side, each in its own process (default 0: one per "
                             "core and scheme, as many as memory holds; 1: one after the other, in this process)")
    parser.add_argument("--allow-quant-mismatch", action="store_true",
                        help="export 4-bit schemes a quantize-aware student was not trained for (see distill.quantize_aware)")
    logs.add_flag(parser)
    return parser.parse_args(argv)


@boundary
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logs.setup(args.verbose)
    target = load_target(args.target, args.overrides)
    from vlsi_edge.deploy.pipeline import resolve_source

    source = resolve_source(args.run, args.model, args.runs_dir)
    out = args.out or Path("exports") / f"{source.name}-{target.name}"
    command = shlex.join(["python", "-m", "vlsi_edge.export", *argv])
    check_destination(out, args.overwrite)  # before minutes of lowering
    result = export_target(source, target, out, validate=not args.no_validate, command=command,
                           overwrite=args.overwrite, allow_quant_mismatch=args.allow_quant_mismatch, jobs=args.jobs)
    print(f"exported {len(result.manifest['artifacts'])} artifacts to {out} in {result.seconds:.0f} s")
    if result.report is not None:
        print((out / "report.md").read_text())
        if not result.passed:
            failed = [r["artifact"] for r in result.report["rows"] if "gate" in r and not r["gate"]["passed"]]
            print(f"GATE FAILED: {', '.join(failed)} (see {out / 'report.md'})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
