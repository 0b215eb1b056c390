"""The import graph's layering (issue 14, in progress): what each part of the house may not import.

Every import counts, top-level and inside functions. The contracts (run directory, manifest) sit in the
base layer with config, data and families; stages hand files to each other through them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vlsi_edge"
STAGES = {"distill", "deploy", "validate", "runtime", "benchmarks", "zoo", "train", "export", "bench", "app"}

# module (or package) -> top-level vlsi_edge packages it must not import
FORBIDDEN = {
    "contracts": STAGES,
    "data": STAGES | {"contracts"},
    "runtime/onnx_runner.py": STAGES - {"runtime"},
    "runtime/executorch_runner.py": STAGES - {"runtime"},
    "runtime/loop.py": STAGES - {"runtime"},
}


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
            if parts[0] == "vlsi_edge" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_does_not_import_upward(part):
    root = PACKAGE / part
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files, f"{root} has no Python files"
    arrows = {f"{f.relative_to(PACKAGE)} -> {pkg}" for f in files for pkg in vlsi_imports(f) & FORBIDDEN[part]}
    assert not arrows, "upward imports: " + "; ".join(sorted(arrows))


def test_the_walk_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from vlsi_edge.deploy import parts\n    import vlsi_edge.zoo\n")
    assert vlsi_imports(source) == {"deploy", "zoo"}
