"""Walking a NIR graph: inlining nested graphs, and ordering nodes with their back-edges.

Shared by the float reference (``backends/float_ref.py``) and the normalizer
(``neurocompile.compiler.normalize``), so both agree on names, edges and which edges are recurrent.
"""

from __future__ import annotations

import nir

from neurocompile.errors import GraphError


class InlinedBoundary:
    """The Input or Output node of an inlined nested graph: passes its input through."""


def dotted(outer: str, inner: str) -> str:
    """Default name of node ``inner`` of the nested graph ``outer``."""
    return f"{outer}.{inner}"


def flatten_graph(graph: nir.NIRGraph, join=dotted, _outer: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges of ``graph`` with nested graphs inlined (names ``join(outer, inner)``).

    An edge into a nested graph goes to its Input node(s); an edge out of it leaves its
    Output node(s). Those inner Input/Output nodes become :class:`InlinedBoundary` nodes
    (:func:`bypass_boundaries` removes them).
    """
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}

    def full(name: str) -> str:
        return join(_outer, name) if _outer else name

    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = flatten_graph(node, join, full(name))
            ins = [join(full(name), n) for n, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [join(full(name), n) for n, v in node.nodes.items() if isinstance(v, nir.Output)]
            if not ins or not outs:
                raise GraphError("nested graph needs Input and Output nodes", node=full(name))
            for boundary in ins + outs:
                inner_nodes[boundary] = InlinedBoundary()
            nodes.update(inner_nodes)
            edges.extend(inner_edges)
            entry[full(name)], exit_[full(name)] = ins, outs
        else:
            nodes[full(name)] = node
    for src, dst in graph.edges:
        for end in (full(src), full(dst)):
            if end not in nodes and end not in entry:
                raise GraphError(
                    f"edge ('{src}', '{dst}') names node '{end}', which does not exist",
                    node=_outer or "<graph>",
                    field="edges",
                )
        edges.extend((s, d) for s in exit_.get(full(src), [full(src)]) for d in entry.get(full(dst), [full(dst)]))
    return nodes, edges


def bypass_boundaries(nodes: dict, edges: list[tuple[str, str]]) -> tuple[dict, list[tuple[str, str]]]:
    """Drop the :class:`InlinedBoundary` nodes, joining each predecessor to each successor."""
    for name in [n for n, v in nodes.items() if isinstance(v, InlinedBoundary)]:
        into = [s for s, d in edges if d == name]
        out_of = [d for s, d in edges if s == name]
        edges = [e for e in edges if name not in e] + [(s, d) for s in into for d in out_of]
        del nodes[name]
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
