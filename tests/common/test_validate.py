"""fastembed.common.validate: the shared argument checks, their accepted values and their exact messages."""

from __future__ import annotations

import numpy as np
import pytest

from fastembed.common.validate import (
    check_fraction,
    check_positive_float,
    check_positive_int,
    check_sample,
    is_number,
    is_whole,
)


@pytest.mark.parametrize("value", [3, np.int32(3), 2.5, np.float32(0.5), float("nan"), float("inf")])
def test_is_number_accepts_ints_and_floats(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), "3", None, [3], 1j])
def test_is_number_refuses_the_rest(value):
    assert not is_number(value)


@pytest.mark.parametrize("value", [10, 10.0, np.int64(10), np.float64(-2.0), 0])
def test_is_whole_accepts_integers_and_floats_holding_one(value):
    assert is_whole(value)


@pytest.mark.parametrize("value", [10.5, float("nan"), float("inf"), True, "10", None])
def test_is_whole_refuses_fractions_nonfinite_bools_and_strings(value):
    assert not is_whole(value)


def test_check_positive_int_returns_a_python_int():
    got = check_positive_int("epochs", np.int64(4))
    assert got == 4 and type(got) is int


@pytest.mark.parametrize("value", [0, -1, 2.0, 2.5, True, "3", None])
def test_check_positive_int_message_names_the_argument(value):
    with pytest.raises(ValueError) as err:
        check_positive_int("batch_cells", value)
    assert str(err.value) == f"batch_cells must be an integer >= 1, got {value!r}"


def test_check_positive_int_message_is_cut_to_300_characters():
    with pytest.raises(ValueError) as err:
        check_positive_int("epochs", "x" * 1000)
    assert len(str(err.value)) == 300


def test_check_positive_float_messages():
    assert check_positive_float("learning_rate", 1) == 1.0
    assert check_positive_float("min_learning_rate", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"^learning_rate must be a number, got 'a'$"):
        check_positive_float("learning_rate", "a")
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number > 0, got 0\.0$"):
        check_positive_float("learning_rate", 0)
    with pytest.raises(ValueError, match=r"^m must be a finite number >= 0, got nan$"):
        check_positive_float("m", float("nan"), allow_zero=True)


def test_check_fraction_is_half_open():
    assert check_fraction("f", 0) == 0.0
    assert check_fraction("f", 0.999) == 0.999
    with pytest.raises(ValueError, match=r"^f must be a number in \[0, 1\), got 1\.0$"):
        check_fraction("f", 1)


@pytest.mark.parametrize(
    "value, expected", [("auto", "auto"), (0, 0.0), (1e-3, 1e-3), (np.float32(0.5), 0.5)]
)
def test_check_sample_accepts_auto_and_fractions(value, expected):
    assert check_sample(value) == expected


@pytest.mark.parametrize("value", ["AUTO", 1.0, -0.1, float("nan"), True, None])
def test_check_sample_message(value):
    with pytest.raises(ValueError) as err:
        check_sample(value)
    assert str(err.value) == f"sample must be 'auto' or a number in [0, 1), got {value!r}"
