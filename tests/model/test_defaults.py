"""One source of defaults: ScEmbed, ScEmbed.train, fe.tl.scembed, ``fastembed train`` and the parameters page
of the docs all state the values of :data:`fastembed.settings.MODEL_DEFAULTS` and ``TRAIN_DEFAULTS``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

import pytest
from conftest import REPO

import fastembed as fe
from fastembed import settings
from fastembed.app.cli import build_parser

PARAMETERS_PAGE = REPO / "docs" / "guide" / "parameters.md"
ROW = re.compile(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]*) \|", re.M)


def documented_defaults(text: str) -> dict[str, object]:
    """``{parameter: default}`` from the tables of a parameters page (``| `name` | default | ...``)."""
    found = {}
    for names, default in ROW.findall(text):
        default = default.strip().strip("`")
        try:
            value = None if default == "from the data" else ast.literal_eval(default)
        except (SyntaxError, ValueError):
            value = default  # "1 bp": not a default of these dataclasses
        for name in re.findall(r"`([a-z_]+)`", names):
            found[name] = value
    return found


def disagreements(stated: dict[str, object], defaults) -> list[str]:
    """Every field of the ``defaults`` dataclass that ``stated`` leaves out or gives another value."""
    out = []
    for field in dataclasses.fields(defaults):
        want = getattr(defaults, field.name)
        if field.name not in stated:
            out.append(f"{field.name}: missing (default {want!r})")
        elif stated[field.name] != want or type(stated[field.name]) is not type(want):
            out.append(f"{field.name}: {stated[field.name]!r}, the default is {want!r}")
    return out


def signature_defaults(func) -> dict[str, object]:
    return {
        name: p.default for name, p in inspect.signature(func).parameters.items() if p.default is not p.empty
    }


def test_scembed_and_train_signatures_state_the_defaults():
    assert disagreements(signature_defaults(fe.ScEmbed), settings.MODEL_DEFAULTS) == []
    assert disagreements(signature_defaults(fe.ScEmbed.train), settings.TRAIN_DEFAULTS) == []


def test_tl_scembed_states_the_model_defaults():
    ours = signature_defaults(fe.tl.scembed)
    model = settings.MODEL_DEFAULTS
    assert ours["embedding_dim"] == model.embedding_dim
    assert ours["negative_samples"] == model.negative_samples
    assert ours["window_size"] is None  # None: the model's default, read at call time


def test_cli_train_states_the_defaults_in_values_and_help():
    train = build_parser().subparsers["train"]
    args = train.parse_args(["tokens.parquet", "--output", "m"])
    flags = {a.dest: a for a in train._actions}
    stated = {}
    for defaults in (settings.MODEL_DEFAULTS, settings.TRAIN_DEFAULTS):
        for field in dataclasses.fields(defaults):
            dest = "subsample" if field.name == "sample" else field.name
            if dest not in flags:
                continue  # min_learning_rate, n_components and init have no flag
            stated[field.name] = getattr(args, dest)
            want = getattr(defaults, field.name)
            if want is not None:  # a flag left out is None: no "(default: None)" to show
                assert f"(default: {want}" in flags[dest].help, (dest, flags[dest].help)
    assert set(stated) >= {"embedding_dim", "window_size", "negative_samples", "min_count", "sample", "seed"}
    assert set(stated) >= {"epochs", "batch_size", "learning_rate"}
    for name, value in stated.items():
        defaults = (
            settings.MODEL_DEFAULTS if name in settings.MODEL_DEFAULTS.__dict__ else settings.TRAIN_DEFAULTS
        )
        assert value == getattr(defaults, name), name


def test_the_parameters_page_states_the_defaults():
    stated = documented_defaults(PARAMETERS_PAGE.read_text())
    assert disagreements(stated, settings.MODEL_DEFAULTS) == []
    train = {
        f.name: getattr(settings.TRAIN_DEFAULTS, f.name) for f in dataclasses.fields(settings.TRAIN_DEFAULTS)
    }
    del train["min_learning_rate"]  # stated in the learning_rate row's text
    assert {k: stated.get(k, "missing") for k in train} == train
    stated_min = re.search(r"`min_learning_rate` \(([^)]*)\)", PARAMETERS_PAGE.read_text())
    assert stated_min and float(stated_min.group(1)) == settings.TRAIN_DEFAULTS.min_learning_rate


@pytest.mark.parametrize(("row", "drifted"), [("| `embedding_dim` | 100 |", "| `embedding_dim` | 128 |")])
def test_a_drifted_page_is_caught(row, drifted):
    text = PARAMETERS_PAGE.read_text()
    assert row in text
    found = disagreements(documented_defaults(text.replace(row, drifted)), settings.MODEL_DEFAULTS)
    assert found == ["embedding_dim: 128, the default is 100"]
    del_row = "\n".join(line for line in text.splitlines() if not line.startswith("| `n_components`"))
    assert disagreements(documented_defaults(del_row), settings.MODEL_DEFAULTS) == [
        "n_components: missing (default 'auto')"
    ]
