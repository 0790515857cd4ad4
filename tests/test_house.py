"""The package's shape stays readable: no import circle, no function over 100 lines, and
the core never imports napari, Qt or magicgui (measured by benchmarks/house.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _house():
    spec = importlib.util.spec_from_file_location("house", ROOT / "benchmarks" / "house.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("house", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_no_import_circle_and_no_function_over_100_lines():
    house = _house()
    found = house.summary(house.read_package())
    assert found["import_circles"] == []
    assert found["functions_over_100_lines"] == []


def test_the_circle_finder_finds_a_circle(tmp_path):
    """The measurement itself: a package whose modules import each other is reported."""
    house = _house()
    package = tmp_path / "napari_unet_cat"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import x\n")
    (package / "b.py").write_text("def x():\n    from .a import y\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    circles = house.import_circles(house.read_package(package))
    assert circles == [["napari_unet_cat.a", "napari_unet_cat.b"]]


def test_the_core_imports_no_gui_toolkit():
    import ast

    gui = {"napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"}
    core = [p for p in (ROOT / "src" / "napari_unet_cat").rglob("*.py") if "_qt" not in p.parts]
    offenders = []
    for path in core:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in gui]
    assert offenders == []
