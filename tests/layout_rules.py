"""The package's import rules as data, and a small checker that reads imports with ``ast`` (nothing is imported).

A ROOM is a subpackage (``fastembed.genome``) or a top-level module (``fastembed.scembed``). Rooms stand on layers;
a module may import its own room and rooms on its layer or lower, never higher, and no import loop may close,
neither between modules nor between rooms. A name starting with ``_`` (or a module whose name does) is private to
its room: no other room imports it. Imports inside functions count like the others: they still tie the modules.

``DEBTS`` lists what the code still does against these rules, each with why; the test fails on a new violation
and on a debt that has been paid (so the list only shrinks).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

#: Bottom up. A module imports only its own room and rooms of its layer or below.
LAYERS: list[set[str]] = [
    {"_version", "settings", "common"},  # helpers every room may use; they import nothing of the package
    {"kernels", "storage", "backends"},  # numba kernels, safe outputs and .pt tensors, the Dask backend's map
    {"genome"},  # the universe, input readers, tokenization, token containers
    {
        "model",
        "annotation",
        "datasets",
        "region2vec",
    },  # model folders, k-NN labels, bundled data, the dataset
    {
        "scembed",
        "io",
        "reference",
        "pp",
        "tl",
    },  # the public faces: ScEmbed, fastembed.io, reference folders, fe.pp/fe.tl
    {"app"},  # the command line and the demo: they call the faces
    {"__init__", "__main__", "_aliases"},  # the package itself
]

#: (importer, imported module) edges allowed against the layers, with why. Keep it short; pay these off.
LAYER_DEBTS: dict[tuple[str, str], str] = {}

#: (importer, imported module, private name) imports across rooms still in the code, with why.
PRIVATE_DEBTS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str  # a module of the package
    name: str | None  # the name taken from it (None: the module itself)
    line: int


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (the package folder named ``package``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def edges(root: Path, package: str) -> tuple[list[Edge], list[str]]:
    """Every import of a package module by a package module, and the imports of names that are no module."""
    mods = modules(root, package)
    out, unknown = [], []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        target = alias.name
                        if target not in mods:
                            unknown.append(f"{name}:{node.lineno} imports {target}, which is no module")
                            continue
                        out.append(Edge(name, target, None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if not (src == package or src.startswith(package + ".")):
                    continue
                if src not in mods:
                    unknown.append(f"{name}:{node.lineno} imports from {src}, which is no module")
                    continue
                for alias in node.names:
                    sub = f"{src}.{alias.name}"
                    if sub in mods:
                        out.append(Edge(name, sub, None, node.lineno))
                    else:
                        out.append(Edge(name, src, alias.name, node.lineno))
    return out, unknown


def room(module: str) -> str:
    """``fastembed.genome.tokens`` -> ``genome``; ``fastembed.scembed`` -> ``scembed``; ``fastembed`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (or a node importing itself): Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _private(module: str, name: str | None) -> str | None:
    """The private part of an import (a ``_name`` or a ``_module``), or None."""
    if name is not None and name.startswith("_") and not name.startswith("__"):
        return name
    for part in module.split(".")[2:]:  # the room's own modules: a ``_rng`` is private to kernels
        if part.startswith("_") and not part.startswith("__"):
            return part
    return None


def violations(
    root: Path,
    package: str,
    layers: list[set[str]],
    layer_debts: dict | None = None,
    private_debts: dict | None = None,
) -> list[str]:
    """Every breach of the rules in the package at ``root``, one line each (empty: the layout holds).

    Also lists each debt that is no longer in the code, so that the debt lists cannot go stale.
    """
    layer_debts = layer_debts or {}
    private_debts = private_debts or {}
    rank = {r: i for i, layer in enumerate(layers) for r in layer}
    found, problems = edges(root, package)
    used_layer, used_private = set(), set()

    module_graph: dict[str, set[str]] = {}
    room_graph: dict[str, set[str]] = {}
    for e in found:
        if e.importer == e.imported:
            continue
        module_graph.setdefault(e.importer, set()).add(e.imported)
        a, b = room(e.importer), room(e.imported)
        if a == b:
            continue
        pair = (e.importer, e.imported)
        if pair in layer_debts:
            used_layer.add(pair)
        else:
            room_graph.setdefault(a, set()).add(b)
            if a not in rank or b not in rank:
                problems.append(f"{e.importer}:{e.line}: room {a if a not in rank else b!r} is on no layer")
            elif rank[a] < rank[b]:
                problems.append(f"{e.importer}:{e.line} imports {e.imported}: room {a!r} stands below {b!r}")
        private = _private(e.imported, e.name)
        if private is not None:
            key = (e.importer, e.imported, e.name or private)
            if key in private_debts:
                used_private.add(key)
            else:
                problems.append(f"{e.importer}:{e.line} imports private {private!r} of room {b!r}")
    problems += [f"module import cycle: {' <-> '.join(c)}" for c in cycles(module_graph)]
    problems += [f"room import cycle: {' <-> '.join(c)}" for c in cycles(room_graph)]
    problems += [f"layer debt paid, drop it from the list: {d}" for d in set(layer_debts) - used_layer]
    problems += [
        f"private-name debt paid, drop it from the list: {d}" for d in set(private_debts) - used_private
    ]
    return problems
