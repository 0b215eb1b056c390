"""The import graph's layering: no upward arrows, no stage importing a sibling stage, no cycles.

Every import counts, top-level and inside functions. Each top-level part of `vlsi_edge` sits in a layer
and may import only its own layer or lower ones:

    0  atomic config errors memory logs schedule worker   plumbing (the standard library, torch at most)
    1  data                                               ShapesVQA, conversation files, scoring
    2  families                                           everything model-specific, the split into programs
    3  recipes contracts evaluate                         the run config, run directory + manifest, the float evaluator
    4  distill deploy runtime validate                    stages: hand files to each other through the contracts only
    5  train export bench benchmarks app zoo              the CLIs and tools that compose stages

A stage reaches another stage's process by module name (`vlsi_edge.worker.spawn`), never by import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vlsi_edge"
LAYERS = [
    {"atomic", "config", "errors", "memory", "logs", "schedule", "worker"},
    {"data"},
    {"families"},
    {"recipes", "contracts", "evaluate"},
    {"distill", "deploy", "runtime", "validate"},
    {"train", "export", "bench", "benchmarks", "app", "zoo"},
]
STAGES = LAYERS[4]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def vlsi_imports(path: Path) -> set[str]:
    """The first package below vlsi_edge of every import in the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vlsi_edge" and len(parts) > 1 and parts[1] in LAYER:
                found.add(parts[1])
    return found


def graph() -> dict[str, dict[str, set[str]]]:
    """part -> imported part -> the files that import it."""
    edges: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py" and path.parent == PACKAGE:
            continue
        src = part_of(path)
        for dst in vlsi_imports(path) - {src}:
            edges.setdefault(src, {}).setdefault(dst, set()).add(str(path.relative_to(PACKAGE)))
    return edges


def test_every_part_has_a_layer():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert parts <= set(LAYER), f"parts without a layer: {sorted(parts - set(LAYER))}; add them to LAYERS"


def test_no_upward_imports_and_no_stage_imports_a_sibling():
    arrows = [
        f"{', '.join(sorted(files))}: {src} (layer {LAYER[src]}) -> {dst} (layer {LAYER[dst]})"
        for src, targets in graph().items() for dst, files in targets.items()
        if LAYER[dst] > LAYER[src] or (src in STAGES and dst in STAGES)
    ]
    assert not arrows, "imports against the layering:\n" + "\n".join(arrows)


def test_no_import_cycles_between_parts():
    edges = {src: set(targets) for src, targets in graph().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, set()))
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_import_cycles_inside_a_stage():
    for stage in STAGES:
        modules = {p.stem: p for p in (PACKAGE / stage).glob("*.py") if p.stem != "__init__"}
        edges = {}
        for name, path in modules.items():
            tree = ast.parse(path.read_text())
            edges[name] = {node.module.split(".")[2] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                           and node.module and node.module.startswith(f"vlsi_edge.{stage}.")} & set(modules)
        for a in edges:
            for b in edges[a]:
                assert a not in edges.get(b, set()), f"{stage}/{a}.py and {stage}/{b}.py import each other"


@pytest.mark.parametrize("source,expected", [
    ("import os\n\ndef f():\n    from vlsi_edge.deploy import parts\n    import vlsi_edge.zoo\n", {"deploy", "zoo"}),
    ("from vlsi_edge.runtime.worker import run\n", {"runtime"}),
])
def test_the_walk_sees_function_level_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert vlsi_imports(path) == expected


def test_no_file_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files over 400 lines: {long}"
