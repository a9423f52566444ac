"""What a Space installs is the app's runtime only; the README's test command installs the rest,
and .ci/run runs exactly that command."""
from __future__ import annotations

import re

from conftest import ROOT


def _packages(path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower())
    return names


def test_runtime_requirements_carry_no_test_tools():
    runtime = _packages(ROOT / "requirements.txt")
    assert {"torch", "gradio", "av"} <= runtime
    assert not runtime & {"pytest", "playwright"}
    test_file = (ROOT / "requirements-test.txt").read_text()
    assert "-r requirements.txt" in test_file
    assert {"pytest", "playwright"} <= _packages(ROOT / "requirements-test.txt")


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    test_line = next(line for line in block.splitlines() if "pytest" in line).split("#", 1)[0].strip()
    assert "requirements-test.txt" in test_line
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_line in ci_lines


def test_runtime_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for folder in ("/runs/", "/cache/", ".venv/", ".gradio/"):
        assert folder in ignored, folder
