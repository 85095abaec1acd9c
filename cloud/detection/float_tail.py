"""Which nodes of a detector graph INT8 must leave in float: the decode and the head convs that feed it.

Naive INT8 collapses detectors (the heatmap's small scores and the box regression lose their resolution), so the
sensitive tail stays float: everything between the outputs and the last convs, the last convs, and optionally
`extra_levels` more layers of convs behind them.
"""

from __future__ import annotations

import onnx

_CONV_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def tail_nodes(model: onnx.ModelProto, extra_levels: int = 0) -> list[str]:
    """Names of the nodes from each output back to (and including) the nearest conv layers, plus extra levels."""
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {i.name for i in model.graph.initializer}
    found: list[str] = []
    seen: set[int] = set()
    frontier = [o.name for o in model.graph.output]
    for level in range(extra_levels + 1):
        convs: list[onnx.NodeProto] = []
        while frontier:
            node = producers.get(frontier.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.name and node.name not in found:
                found.append(node.name)
            if node.op_type in _CONV_OPS:
                convs.append(node)
                continue
            frontier.extend(i for i in node.input if i and i not in initializers)
        if level == extra_levels:
            break
        frontier = [i for c in convs for i in c.input if i and i not in initializers]
    return found
