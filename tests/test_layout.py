"""The packages of emoe_cli import one way: no two packages reach each other through imports
(docs/development.md "Import arrows"), so each layer can be read without the ones above it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

GRAPH = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


def package_edges() -> set[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("import_graph", GRAPH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.edges()


def test_no_two_packages_import_each_other_even_around_a_loop():
    graph: dict[str, set[str]] = {}
    for a, b in package_edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    loops = sorted((a, b) for a in graph for b in graph[a] if reaches(b, a))
    assert not loops, f"packages importing back: {loops}"


def test_the_loop_knows_nothing_of_the_method():
    """training/ gets the router refresh and the balancing loss as hooks (LoopHooks); only
    the LoRA step, which wraps converted layers, may import moe/."""
    loop = (Path(__file__).resolve().parents[1] / "emoe_cli" / "training" / "loop.py").read_text()
    assert "emoe_cli.moe" not in loop
