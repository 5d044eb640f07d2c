"""The package layout's import rules (tests/layout_rules.py) hold, and the checker catches what it must."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from layout_rules import LAYER_DEBTS, LAYERS, PRIVATE_DEBTS, violations

import fastembed

PACKAGE = Path(fastembed.__file__).parent


def test_the_package_keeps_its_import_rules():
    assert violations(PACKAGE, "fastembed", LAYERS, LAYER_DEBTS, PRIVATE_DEBTS) == []


def test_every_room_stands_on_a_layer():
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py")}
    assert rooms <= set().union(*LAYERS), rooms - set().union(*LAYERS)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_planted_module_cycle_fails(tmp_path):
    # a.py -> b.py at the top, b.py -> a.py inside a function: still a loop
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "from pkg.low.b import g\n",
            "low/b.py": "def g():\n    from pkg.low import a\n",
        },
    )
    found = violations(root, "pkg", [{"low"}, {"__init__"}])
    assert found == ["module import cycle: pkg.low.a <-> pkg.low.b"]


def test_a_planted_room_cycle_and_an_upward_import_fail(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "from ..high.b import g\n",  # relative imports are read too
            "high/__init__.py": "",
            "high/b.py": "from pkg.low.c import h\ndef g():\n    pass\n",
            "low/c.py": "def h():\n    pass\n",
        },
    )
    found = violations(root, "pkg", [{"low"}, {"high"}, {"__init__"}])
    assert "room import cycle: high <-> low" in found
    assert any("pkg.low.a:1 imports pkg.high.b: room 'low' stands below 'high'" in f for f in found)
    assert not any("module import cycle" in f for f in found)  # the modules themselves do not loop


def test_a_private_name_across_rooms_fails_and_within_a_room_passes(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/_rng.py": "def _draw():\n    pass\ndef draw():\n    pass\n",
            "low/k.py": "from pkg.low._rng import _draw\n",  # same room: fine
            "top.py": "from pkg.low._rng import draw\nfrom pkg.low.k import _secret\n",
        },
    )
    found = violations(root, "pkg", [{"low"}, {"top", "__init__"}])
    assert found == [
        "pkg.top:1 imports private '_rng' of room 'low'",
        "pkg.top:2 imports private '_secret' of room 'low'",
    ]


def test_a_paid_debt_must_leave_the_list(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "a.py": "", "b.py": "import pkg.a\n"})
    found = violations(root, "pkg", [{"a", "b", "__init__"}], {("pkg.b", "pkg.c"): "why"})
    assert found == ["layer debt paid, drop it from the list: ('pkg.b', 'pkg.c')"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("fastembed.sgns", "fastembed.kernels.sgns"),
        ("fastembed._atomic", "fastembed.storage.atomic"),
        ("fastembed.annotate", "fastembed.annotation.annotate"),
        ("fastembed.distributed", "fastembed.backends.dask"),
        ("fastembed.cli", "fastembed.app.cli"),
        ("fastembed._rng", "fastembed.kernels._rng"),
    ],
)
def test_old_paths_are_the_same_module(old, new, monkeypatch):
    pytest.importorskip("distributed") if old == "fastembed.distributed" else None
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new
    assert getattr(fastembed, old.rpartition(".")[2]) is module  # from fastembed import distributed


def test_a_constant_set_through_an_old_path_reaches_the_code(monkeypatch):
    import fastembed.kernels.sgns as new
    import fastembed.sgns as old

    monkeypatch.setattr(old, "NEGATIVE_POWER", 0.5)
    assert new.NEGATIVE_POWER == 0.5


def test_every_old_name_resolves():
    from fastembed._aliases import OLD_NAMES

    for old, new in OLD_NAMES.items():
        if new == "fastembed.backends.dask" and importlib.util.find_spec("distributed") is None:
            continue
        assert importlib.import_module(old) is importlib.import_module(new)
