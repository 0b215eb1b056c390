"""Graph rewrites that let XNNPACK take ops it otherwise leaves to ExecuTorch's one-thread portable kernels.

A program exported with a dynamic token count carries the count as a symbol in its reshapes
([1, s, -1, 64]); XNNPACK's partitioner takes a reshape only when every size is a number with at most
one inferred (-1), and a mean only over the two innermost dimensions of a 4-D tensor. Every op it
refuses ends one delegate partition and starts another, so a decoder layer fell into five islands, each
a separate XNNPACK call per step and a separate (slow) preprocessing at export. Rewritten, each op
computes exactly what it did:

    view / reshape / unsqueeze   the output's sizes, the one symbolic size written as -1   ([1, -1, 9, 64])
    mean over the last dim of [B, S, D], keepdim (RMSNorm)   view [B, S, D, 1] -> mean over the last two
                                                             dims -> view back to [B, S, 1]

Applied to the exported program before `to_edge_transform_and_lower` (ExportedProgram graphs are mutable
in place; ExecuTorch's own passes work the same way).
"""

from __future__ import annotations

import torch
from torch.export import ExportedProgram

aten = torch.ops.aten
RESHAPES = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.unsqueeze.default)


def numeric_shape(node: torch.fx.Node) -> list[int] | None:
    """The node's output sizes with its one symbolic size as -1, or None when there are more."""
    shape = [d if isinstance(d, int) else -1 for d in node.meta["val"].shape]
    return shape if shape.count(-1) <= 1 else None


def delegable(program: ExportedProgram) -> dict[str, int]:
    """Rewrite `program` in place (see the module docstring); returns how many ops each rule changed."""
    graph = program.graph
    counts = {"reshape": 0, "mean": 0}
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in RESHAPES and not all(isinstance(d, int) for d in node.meta["val"].shape):
            shape = numeric_shape(node)
            if shape is not None:
                node.target, node.args, node.kwargs = aten.view.default, (node.args[0], shape), {}
                counts["reshape"] += 1
        elif node.target == aten.mean.dim and _last_dim_mean(node):
            _rewrite_mean(graph, node)
            counts["mean"] += 1
    graph.lint()
    program.graph_module.recompile()
    return counts


def _last_dim_mean(node: torch.fx.Node) -> bool:
    """mean over the last dim, keepdim, of a 3-D tensor with at most one symbolic size (RMSNorm's)."""
    x = node.args[0]
    dims = node.args[1] if len(node.args) > 1 else None
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return (x.meta["val"].dim() == 3 and keepdim and dims is not None and len(dims) == 1 and dims[0] in (-1, 2)
            and node.kwargs.get("dtype") is None and numeric_shape(x) is not None)


def _rewrite_mean(graph: torch.fx.Graph, node: torch.fx.Node) -> None:
    """mean(x [B, S, D], -1, keepdim) -> view(mean(view(x, [B, S, D, 1]), [2, 3], keepdim), [B, S, 1])."""
    x = node.args[0]
    with graph.inserting_before(node):
        four_d = graph.call_function(aten.view.default, (x, [*numeric_shape(x), 1]))
        four_d.meta["val"] = x.meta["val"].unsqueeze(-1)
        pooled = graph.call_function(aten.mean.dim, (four_d, [2, 3], True))
        pooled.meta["val"] = four_d.meta["val"].mean([2, 3], keepdim=True)
        back = graph.call_function(aten.view.default, (pooled, numeric_shape(node)))
        back.meta["val"] = node.meta["val"]
    node.replace_all_uses_with(back)
    graph.erase_node(node)
