"""The shape of the package: modules, their sizes, the longest functions and import circles.

    python benchmarks/house.py            # a table for the docs
    python benchmarks/house.py --json     # the same as JSON

Imports are read from the source (every ``from .x import`` or ``import`` of the package,
at module level or inside a function), leaving out those under ``if TYPE_CHECKING:``,
which only annotations use. A circle is a strongly connected group of two or more
modules in that graph.
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "napari_unet_cat"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE


@dataclass
class Module:
    name: str
    lines: int
    imports: set[str] = field(default_factory=set)
    functions: list[tuple[str, int]] = field(default_factory=list)


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The package's modules an ``ImportFrom`` names (``from . import x`` may name a module)."""
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    if not base.startswith(PACKAGE):
        return []
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def read_module(path: Path, root: Path = SOURCE) -> Module:
    name = module_name(path, root)
    tree = ast.parse(path.read_text())
    found = Module(name, len(path.read_text().splitlines()))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, owner: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, owner)
                continue
            if isinstance(child, ast.ImportFrom):
                found.imports.update(_resolve(name, is_package, child))
            elif isinstance(child, ast.Import):
                found.imports.update(a.name for a in child.names if a.name.startswith(PACKAGE))
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualified = f"{owner}.{child.name}" if owner else child.name
                found.functions.append((qualified, child.end_lineno - child.lineno + 1))
                visit(child, qualified)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{owner}.{child.name}" if owner else child.name)
            else:
                visit(child, owner)

    visit(tree, "")
    return found


def read_package(root: Path = SOURCE) -> dict[str, Module]:
    modules = {m.name: m for m in (read_module(p, root) for p in sorted(root.rglob("*.py")))}
    for m in modules.values():  # keep edges to modules only (not to names inside them), never to itself
        m.imports = {i for i in m.imports if i in modules and i != m.name and not m.name.startswith(i + ".")}
    return modules


def import_circles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].imports):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(modules):
        if v not in index:
            connect(v)
    return circles


def summary(modules: dict[str, Module], longest: int = 10) -> dict:
    functions = sorted(((f"{m.name}:{f}", n) for m in modules.values() for f, n in m.functions), key=lambda x: -x[1])
    return {
        "modules": len(modules),
        "lines": sum(m.lines for m in modules.values()),
        "largest_modules": sorted(((m.name, m.lines) for m in modules.values()), key=lambda x: -x[1])[:longest],
        "longest_functions": functions[:longest],
        "functions_over_100_lines": [f for f, n in functions if n > 100],
        "import_circles": import_circles(modules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    found = summary(read_package())
    if args.json:
        print(json.dumps(found, indent=1))
        return
    print(f"{found['modules']} modules, {found['lines']} lines")
    print("largest modules: " + ", ".join(f"{n} ({k})" for n, k in found["largest_modules"]))
    print("longest functions:")
    for name, n in found["longest_functions"]:
        print(f"  {n:4d}  {name}")
    print(f"functions over 100 lines: {len(found['functions_over_100_lines'])}")
    circles = found["import_circles"]
    print(f"import circles: {len(circles)}")
    for group in circles:
        print("  " + " <-> ".join(g.removeprefix(PACKAGE + ".") for g in group))


if __name__ == "__main__":
    main()
