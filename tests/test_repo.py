"""Repository wiring: CI runs the README's test command; numba flags come from the config module."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv [^\n]+)\n```", text)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("fastembed demo") and "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_kernels_take_flags_from_config():
    """Every njit uses a flag dict of fastembed/_config.py (so cache=True and one fastmath policy)."""
    offenders = []
    for path in sorted((REPO / "fastembed").glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"@(numba\.)?njit", line) and not re.search(r"njit\(\*\*[A-Z_]+\)", line):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
            if "fastmath=" in line and path.name != "_config.py":
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offenders, "kernels must compile with the dicts of fastembed/_config.py:\n" + "\n".join(offenders)
