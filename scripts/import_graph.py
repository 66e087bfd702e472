"""Print the package-level import graph of emoe_cli, so that backward arrows show up in review.

Each edge is `A -> B`: some module of unit A imports from unit B (a unit is a subpackage, or a
top-level module). Imports inside functions count too: they still tie the layers together.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "emoe_cli"


def unit(dotted: str) -> str:
    """The package (or top-level module) a dotted emoe_cli name belongs to."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "emoe_cli"


def edges() -> set[tuple[str, str]]:
    found = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        if "conf" in rel.parts:
            continue
        src = unit(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("emoe_cli."):
                    dst = unit(name)
                    is_unit = (ROOT / dst).is_dir() or (ROOT / f"{dst}.py").exists()
                    if dst != src and is_unit:
                        found.add((src, dst))
    return found


if __name__ == "__main__":
    for a, b in sorted(edges()):
        print(f"{a} -> {b}")
