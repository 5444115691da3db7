"""Walking a NIR graph: inlining nested graphs, and ordering nodes with their back-edges.

Shared by the float reference (``backends/float_ref.py``) and the normalizer
(``neurocompile.normalize``), so both agree on names, edges and which edges are recurrent.
"""

from __future__ import annotations

import nir

from .errors import GraphError


class InlinedBoundary:
    """The Input or Output node of an inlined nested graph: passes its input through."""


def flatten_graph(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges of ``graph`` with nested graphs inlined (names ``outer.inner``).

    An edge into a nested graph goes to its Input node(s); an edge out of it leaves its
    Output node(s). Those inner Input/Output nodes become :class:`InlinedBoundary` nodes.
    """
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = flatten_graph(node, prefix=f"{full}.")
            ins = [f"{full}.{n}" for n, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [f"{full}.{n}" for n, v in node.nodes.items() if isinstance(v, nir.Output)]
            if not ins or not outs:
                raise GraphError("nested graph needs Input and Output nodes", node=full)
            for boundary in ins + outs:
                inner_nodes[boundary] = InlinedBoundary()
            nodes.update(inner_nodes)
            edges.extend(inner_edges)
            entry[full], exit_[full] = ins, outs
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        src_full, dst_full = f"{prefix}{src}", f"{prefix}{dst}"
        for end in (src_full, dst_full):
            if end not in nodes and end not in entry:
                raise GraphError(
                    f"edge ('{src}', '{dst}') names node '{end}', which does not exist",
                    node=prefix[:-1] or "<graph>",
                    field="edges",
                )
        for s in exit_.get(src_full, [src_full]):
            for d in entry.get(dst_full, [dst_full]):
                edges.append((s, d))
    return nodes, edges


def order_graph(nodes, edges: list[tuple[str, str]], roots: list[str]) -> tuple[list[str], set[tuple[str, str]]]:
    """Topological order of the forward edges and the set of back-edges (recurrent edges).

    Depth-first search from ``roots`` (then any node not reached), following edges in their
    listed order: an edge into a node still on the search stack closes a cycle and is a
    back-edge, delivering the previous step's value.
    """
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        succ[src].append(dst)
    state: dict[str, int] = {}  # 1 on stack, 2 done
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    for root in list(roots) + list(nodes):
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[node] = 2
                post.append(node)
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))
    return post[::-1], back
