"""`python -m vlsi_edge.train` — VLsI distillation (verbalize -> interact -> SFT) into a run directory.

    python -m vlsi_edge.train                                   # the toy pair, all three steps
    python -m vlsi_edge.train --recipe train/qwen2vl-72b-to-2b.yaml
    python -m vlsi_edge.train --set distill.method=final-kd --set train.sft.steps=100
    python -m vlsi_edge.train --resume runs/latest              # continue a killed run
    python -m vlsi_edge.train --cache-teacher cache/t72b --recipe R  # precompute the teacher for step 2
    python -m vlsi_edge.train --recipe R --set distill.teacher_cache=cache/t72b   # ... then train without it
    torchrun --nproc_per_node 2 -m vlsi_edge.train ...          # data-parallel
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlsi_edge import logs
from vlsi_edge.config import describe, load_config
from vlsi_edge.contracts.run_dir import RunDir
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.report import write_report
from vlsi_edge.errors import boundary
from vlsi_edge.recipes import RunConfig


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m vlsi_edge.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (--set KEY=VALUE):\n" + "\n".join(describe(RunConfig)),
    )
    parser.add_argument("--recipe", type=Path, help="YAML recipe (overrides of the defaults), e.g. train/toy.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. distill.kl=reverse (repeatable)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default: runs)")
    parser.add_argument("--name", help="run directory name (default: <timestamp>-<method>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its last checkpoint")
    parser.add_argument("--cache-teacher", type=Path, metavar="DIR",
                        help="only precompute the teacher's verbalized top-k distributions for step 2 into DIR")
    logs.add_flag(parser)
    return parser.parse_args(argv)


@boundary
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.verbose)
    # Heavy imports (torch, transformers) after argument parsing, so --help is instant.
    from vlsi_edge.distill.session import check_inputs
    from vlsi_edge.distill.trainer import TrainingDiverged, cache_teacher, train

    if args.cache_teacher is not None:
        from vlsi_edge.distill.teacher_cache import check_destination

        config = load_config(RunConfig, args.recipe, args.overrides)
        check_inputs(config)
        check_destination(args.cache_teacher)
        accuracy = cache_teacher(config, args.cache_teacher)
        print(f"teacher cache written to {args.cache_teacher} (teacher accuracy: "
              + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in accuracy.items()) + ")")
        return 0
    if args.resume is not None:
        saved = args.resume / "config.yaml"
        config = load_config(RunConfig, args.recipe or (saved if saved.is_file() else None), args.overrides)
        run = RunDir.resume(args.resume, config)
    else:
        config = load_config(RunConfig, args.recipe, args.overrides)
        check_inputs(config)  # before anything loads or is created
        par = Parallel.from_env()
        name = par.broadcast_object(args.name or _default_name(config))  # every rank: rank 0's name
        run = RunDir.create(args.runs_dir, name, config) if par.is_main else RunDir(args.runs_dir / name)
        par.barrier()

    try:
        progress, session = train(config, run, resume=args.resume is not None)
    except TrainingDiverged as e:
        print(f"error: {e} (run directory: {run.path})", file=sys.stderr)
        return 1
    except BaseException:
        if args.resume is None and Parallel.from_env().is_main:
            run.discard_if_unstarted()  # a run that never started leaves no directory behind
        raise
    if session.par.is_main:
        report = write_report(run, progress, session)
        print((run.path / "report.md").read_text())
        print(f"run directory: {run.path}  ({report['total_wall_time_s']} s of training)")
    session.par.close()
    return 0


def _default_name(config: RunConfig) -> str:
    import time

    return time.strftime("%Y%m%d-%H%M%S") + f"-{config.distill.method}"


if __name__ == "__main__":
    sys.exit(main())
