"""`python -m vlsi_edge.zoo build | evaluate` — rebuild the shipped toy models, or re-check their cards."""

from __future__ import annotations

import argparse
import sys

from vlsi_edge import atomic, logs
from vlsi_edge.data import ShapesConfig
from vlsi_edge.zoo import ZOO_DIR, load_model
from vlsi_edge.errors import boundary
from vlsi_edge.evaluate import evaluate_splits
from vlsi_edge.zoo.build import RECIPES, annotate, build_zoo

TOLERANCE = 0.01  # a re-evaluation may differ from the card by at most 1 point


@boundary
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlsi_edge.zoo", description=__doc__)
    logs.add_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train the zoo models from scratch and save them with their cards")
    build.add_argument("--only", choices=sorted(RECIPES), action="append", help="build only these models")
    ann = sub.add_parser("annotate", help="re-measure what the cards record beyond accuracy: the teacher's "
                         "verbalizer probe, the student's SFT-only reference (build runs this too)")
    ann.add_argument("--only", choices=sorted(RECIPES), action="append")
    ev = sub.add_parser("evaluate", help="re-evaluate the shipped models and compare with their cards")
    ev.add_argument("--only", choices=sorted(RECIPES), action="append")
    args = parser.parse_args(argv)
    logs.setup(args.verbose)

    names = tuple(args.only or RECIPES)
    if args.command == "build":
        atomic.check_writable_dir(ZOO_DIR, "the zoo")
        for name, card in build_zoo(names).items():
            print(f"{name}: {card['parameters']:,} parameters, {card['wall_time_s']} s, {_accuracies(card['accuracy'])}")
        return 0

    if args.command == "annotate":
        for name in annotate(names):
            print(f"{name}: card annotated")
        return 0

    failed = False
    for name in names:
        zoo = load_model(name)
        data = ShapesConfig(**zoo.card["data"])
        measured = evaluate_splits(zoo.model, zoo.family, zoo.processor, data)
        print(f"{name} ({zoo.card['parameters']:,} parameters)")
        for split, result in measured.items():
            recorded = zoo.card["accuracy"][split]["accuracy"]
            delta = result["accuracy"] - recorded
            ok = abs(delta) <= TOLERANCE
            failed |= not ok
            per_family = "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in result["per_family"].items())
            print(f"  {split:8s} {result['accuracy']:.4f} (card {recorded:.4f}, {'ok' if ok else 'MISMATCH'})  {per_family}")
    return 1 if failed else 0


def _accuracies(acc: dict) -> str:
    return ", ".join(f"{split} {r['accuracy']:.3f}" for split, r in acc.items())


if __name__ == "__main__":
    sys.exit(main())
