"""The tutorials of the documentation run as written: every ```python block of each page under docs/tutorials/
is executed in order, in one namespace per page, in an empty folder, on the bundled demo data; the ```bash
blocks (``python -m fastembed ...``) run as subprocesses at their place in the page. A page that drifts from
the API fails here, not in a user's hands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

TUTORIALS = REPO / "docs" / "tutorials"
PAGES = ["scanpy.md", "command-line.md", "reference.md", "atlas-dask.md"]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```$", re.S | re.M)


def blocks(page: str) -> list[tuple[str, str]]:
    """The page's (language, code) blocks in page order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer((TUTORIALS / page).read_text())]


def shell_commands(code: str) -> list[list[str]]:
    """The argument lists of a bash block's commands; each must be ``python -m fastembed ...``."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if not line:
            continue
        argv = shlex.split(line)
        assert argv[:3] == ["python", "-m", "fastembed"], f"tutorial shell line is not fastembed: {line!r}"
        commands.append([sys.executable, *argv[1:]])
    return commands


def test_every_tutorial_page_is_tested():
    """A new tutorial page is executed too: the list above names every page of docs/tutorials/."""
    on_disk = {p.name for p in TUTORIALS.glob("*.md")} - {"index.md"}
    assert on_disk == set(PAGES)
    for page in PAGES:
        assert page.removesuffix(".md") in (TUTORIALS / "index.md").read_text()
        assert any(lang == "python" for lang, _ in blocks(page)), page


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_tutorial_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["TQDM_DISABLE"] = "1"
    namespace: dict = {"__name__": f"tutorial_{page.removesuffix('.md').replace('-', '_')}"}
    ran = 0
    for i, (lang, code) in enumerate(blocks(page)):
        if lang == "python":
            exec(compile(code, f"{page} block {i}", "exec"), namespace)
            ran += 1
            continue
        for argv in shell_commands(code):
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{page} block {i}: {shlex.join(argv[1:])}\n{done.stderr[-3000:]}"
            ran += 1
    assert ran >= len(blocks(page))  # every block ran (a bash block may hold several commands)


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path, monkeypatch):
    """The README's quick start runs as printed (with two epochs and no UMAP, to stay fast)."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"## Quick start\n\n```python\n(.*?)^```$", text, re.S | re.M)
    assert found, "README.md has no Quick start python block"
    code = found.group(1)
    assert "seed=0)" in code and "sc.tl.umap(adata)\n" in code
    code = code.replace("seed=0)", "seed=0, epochs=2, progress=False)").replace("sc.tl.umap(adata)\n", "")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_quick_start"}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    table = namespace["table"]
    assert {"cell_type", "confidence", "vote_share", "novelty"} <= set(table.columns)
    assert len(table) == namespace["query"].n_obs
