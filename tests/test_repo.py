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
    """Every njit uses a flag dict of fastembed/settings.py (so cache=True and one fastmath policy)."""
    offenders = []
    for path in sorted((REPO / "fastembed").rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"@(numba\.)?njit", line) and not re.search(r"njit\(\*\*[A-Z_]+\)", line):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
            if "fastmath=" in line and path.name != "settings.py":
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offenders, "kernels must compile with the dicts of fastembed/settings.py:\n" + "\n".join(
        offenders
    )


def test_every_kernel_is_cached():
    """Every numba dispatcher defined in the package caches its machine code on disk (cache=True), so no
    process compiles a kernel that an earlier one compiled."""
    import importlib
    import pkgutil

    import numba
    from numba.core.caching import NullCache

    import fastembed

    kernels, uncached = 0, []
    for info in pkgutil.walk_packages(fastembed.__path__, "fastembed."):
        if info.name in (
            "fastembed.__main__",
            "fastembed.backends.dask",
        ):  # dask needs the optional dask extra
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                isinstance(obj, numba.core.registry.CPUDispatcher)
                and obj.py_func.__module__ == module.__name__
            ):
                kernels += 1
                if isinstance(obj._cache, NullCache):
                    uncached.append(f"{module.__name__}.{name}")
    if numba.config.DISABLE_JIT:
        return  # njit returns plain functions then: nothing to check
    assert kernels > 10 and not uncached, f"kernels compiled without cache=True: {uncached}"
