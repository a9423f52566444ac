"""The codebase's own rules, checked (issue 13): no module in core/ over ~450 lines without the
reason at its top, no class swapping, no import of another module's private names, one forward
per model block (no second copy of the model for inference)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

LIMIT = 470  # "about 450"
REASON = "Why this module is long"


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_long_core_modules_say_why_at_their_top():
    long = []
    for path in _sources("core"):
        lines = path.read_text().splitlines()
        doc = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > LIMIT and REASON not in doc:
            long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not long, f"over {LIMIT} lines without '{REASON}' in the docstring: {long}"


def test_no_class_is_swapped_and_no_private_name_is_imported():
    problems = []
    for path in _sources("core", "app", "bench", "tools") + [ROOT / "app.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "__class__"
                                                    for t in node.targets):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} assigns __class__")
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in ("core", "app")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {private} from {node.module}")
    assert not problems, problems


def test_one_forward_per_block():
    """The inference copy is the same classes with fused blocks, not a second implementation."""
    source = (ROOT / "core" / "model" / "inference.py").read_text()
    tree = ast.parse(source)
    assert not [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "forward"]
    assert not [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for name in ("backbone", "temporal", "spatial", "stmanet"):
        module = ast.parse((ROOT / "core" / "model" / f"{name}.py").read_text())
        for cls in (n for n in module.body if isinstance(n, ast.ClassDef)):
            forwards = [f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward"]
            assert len(forwards) <= 1, f"{name}.{cls.name}"
