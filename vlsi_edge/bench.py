"""`python -m vlsi_edge.bench` — the benchmarks behind docs/BENCHMARKS.md.

    python -m vlsi_edge.bench distill                 # VLsI vs baselines and matching ablations, 5 seeds, paired
    python -m vlsi_edge.bench distill --seeds 0 --set train.sft.steps=50   # a smaller budget
    python -m vlsi_edge.bench runtime                 # eager vs ExecuTorch vs onnxruntime (+ llama.cpp, onnxruntime-genai)
    python -m vlsi_edge.bench op-profile --export DIR --artifact executorch-8da4w   # a decode step, op by op
    python -m vlsi_edge.bench train-cost              # one interaction / final-KD / SFT step: time, memory
    python -m vlsi_edge.bench probe --model zoo:teacher   # per-layer verbalizer accuracy: pick target layers
    python -m vlsi_edge.bench preprocess --export DIR  # the export's Python processor vs transformers.js, resized images

Each writes <name>.json, <name>.md (the table, with this command) and a plot into --out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from vlsi_edge import atomic, logs
from vlsi_edge.errors import boundary, whole_number


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m vlsi_edge.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="where results go (default: docs/bench)")
    logs.add_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    distill = sub.add_parser("distill", help="the distillation table on the toy pair")
    distill.add_argument("--seeds", type=whole_number(0), nargs="+", default=[0, 1, 2, 3, 4])
    distill.add_argument("--rows", nargs="+", help="only these rows (default: all); names as in the table")
    distill.add_argument("--runs-dir", type=Path, default=Path("runs/bench-distill"),
                         help="one run directory per (row, seed); finished runs are reused")
    distill.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="training override applied to every row, e.g. train.sft.steps=100")
    runtime = sub.add_parser("runtime", help="eager vs ExecuTorch vs onnxruntime (vs llama.cpp), same inputs")
    runtime.add_argument("--models", nargs="+", default=["toy", "smolvlm-256m", "smolvlm-500m"],
                         help="toy (the shipped student) and/or real-size random architectures")
    runtime.add_argument("--threads", type=whole_number(1), default=os.cpu_count(), help="runtime threads (default: all cores)")
    runtime.add_argument("--items", type=whole_number(1), default=5, help="ShapesVQA items per program (after one warm-up)")
    runtime.add_argument("--decode-tokens", type=whole_number(1), default=32, help="tokens decoded per item (EOS ignored)")
    runtime.add_argument("--repeats", type=whole_number(1), default=5,
                         help="interleaved rounds: every row (ours and llama.cpp) once per round, order rotated")
    runtime.add_argument("--work", type=Path, default=Path("runs/bench-runtime"),
                         help="models and exports are built here once and reused")
    runtime.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="export target override, e.g. executorch.schemes=[fp32] (fresh --work needed)")
    ops = sub.add_parser("op-profile", help="one exported program's decode step, op by op (ETDump / onnxruntime's profiler)")
    ops.add_argument("--export", type=Path, required=True, help="an export directory (python -m vlsi_edge.export)")
    ops.add_argument("--artifact", required=True, help="e.g. executorch-8da4w, onnx-int4_cpu")
    ops.add_argument("--threads", type=whole_number(1), default=os.cpu_count())
    ops.add_argument("--prompt", type=whole_number(1), default=80, help="prefill tokens before the timed steps")
    ops.add_argument("--steps", type=whole_number(1), default=32, help="decode steps profiled")
    probe = sub.add_parser("probe", help="verbalizer probe: first-answer-token accuracy of every decoder layer")
    probe.add_argument("--model", default="zoo:teacher", help="zoo:<name>, a local checkpoint or tiny:<layers>")
    probe.add_argument("--family", help="model family (default: from the checkpoint's config.json)")
    probe.add_argument("--steps", type=whole_number(1), default=300, help="verbalizer training steps (batch 32)")
    probe.add_argument("--items", type=whole_number(1), default=500, help="ShapesVQA val items scored")
    probe.add_argument("--seed", type=whole_number(0), default=0)
    pre = sub.add_parser("preprocess", help="the export's Python processor vs transformers.js on resized images")
    pre.add_argument("--export", type=Path, required=True, help="an export directory (python -m vlsi_edge.export)")
    pre.add_argument("--items", type=whole_number(1), default=100, help="ShapesVQA test items, each resized")
    pre.add_argument("--dtype", default="fp32", help="transformers.js dtype of the ONNX graphs both paths run")
    cost = sub.add_parser("train-cost", help="one interaction / final-KD / SFT step on the toy pair")
    cost.add_argument("--steps", type=whole_number(1), default=20)
    cost.add_argument("--warmup", type=whole_number(0), default=3)
    cost.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


@boundary
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logs.setup(args.verbose)
    command = shlex.join(["python", "-m", "vlsi_edge.bench", *argv])
    atomic.check_writable_dir(args.out, "--out")  # before an hour of measuring, not after
    if args.command == "distill":
        from vlsi_edge.benchmarks.distill import markdown, run

        atomic.check_writable_dir(args.runs_dir, "--runs-dir")
        result = run(args.out, args.runs_dir, args.seeds, args.overrides, command, args.rows)
        print(markdown(result, command))
    elif args.command == "runtime":
        from vlsi_edge.benchmarks import runtime

        atomic.check_writable_dir(args.work, "--work")
        result = runtime.run(args.out, args.work, args.models, args.threads, args.items, args.decode_tokens, command,
                             args.overrides, args.repeats)
        print(runtime.markdown(result))
    elif args.command == "op-profile":
        from vlsi_edge.benchmarks import op_profile

        result = op_profile.profile(args.export, args.artifact, args.threads, args.prompt, args.steps)
        name = f"op_profile-{args.artifact}"
        atomic.write_json(args.out / f"{name}.json", {"command": command, **result})
        atomic.write_text(args.out / f"{name}.md", op_profile.markdown(result, command))
        print(op_profile.markdown(result, command))
    elif args.command == "probe":
        from vlsi_edge.benchmarks import probe

        result = probe.run(args.out, args.model, command, family_name=args.family, steps=args.steps,
                           items=args.items, seed=args.seed)
        print(probe.markdown(result, command))
    elif args.command == "preprocess":
        from vlsi_edge.benchmarks import preprocess

        result = preprocess.run(args.out, args.export, args.items, args.dtype, command)
        print(preprocess.markdown(result))
    elif args.command == "train-cost":
        from vlsi_edge.benchmarks import training_cost

        result = training_cost.run(args.steps, args.warmup, args.overrides, command)
        atomic.write_json(args.out / "train_cost.json", result)
        atomic.write_text(args.out / "train_cost.md", training_cost.markdown(result))
        print(training_cost.markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
