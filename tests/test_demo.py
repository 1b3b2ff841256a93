"""``logsumexp demo``: every item of the walk-through is there, computed live, in 80 columns."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

import logsumexp as lse
from logsumexp import _demo


@pytest.fixture(scope="module")
def text() -> str:
    return _demo.render(unicode=True)


def test_fits_80_columns(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, line


def test_ascii_fallback_has_no_unicode() -> None:
    plain = _demo.render(unicode=False)
    assert plain.isascii()
    assert "<=" in plain


def test_naive_formulas_report_what_python_and_numpy_say(text: str) -> None:
    assert "OverflowError: math range error" in text
    assert "ValueError: math domain error" in text
    assert "RuntimeWarning: overflow encountered in exp" in text
    assert "RuntimeWarning: divide by zero encountered in log" in text
    assert "-> inf" in _demo.render(unicode=False) and "-> -inf" in _demo.render(unicode=False)


def test_stable_values_come_from_the_library(text: str) -> None:
    for v in (1000.0, -1000.0):
        assert repr(float(lse.logsumexp(np.array([v] * 3)))) in text
        assert repr(v + math.log(3)) in text
    assert repr(float(lse.softmax(np.array([1000.0] * 3))[0])) in text
    assert repr(float(lse.cross_entropy(np.array([1000.0] * 3), 0))) in text
    assert "1.0986122886681098" in text  # log 3, the cross-entropy
    assert repr(float(lse.log_softmax(np.array([1000.0] * 3))[0])) in text


def test_bounds_smoothmax_and_dominant_sections(text: str) -> None:
    assert "holds." in text
    assert repr(float(lse.logsumexp(np.array([3.0, 1.0, 4.0, 1.0, 5.0])))) in text
    assert repr(float(lse.smoothmax(np.array([1.0, 2.0, 3.0]), temperature=0.1))) in text
    dom = np.concatenate([[0.0], np.full(999, -40.0)])
    assert repr(float(lse.logsumexp(dom))) in text
    assert "4.218847493575586e-15" in text  # the plain shift, 0.6% off
    assert "4.2441059010362884e-15" in text  # the exact value (60-digit decimal; mpmath agrees)
    assert repr(float(lse.logsumexp(np.array([0.0, -40.0])))) in text
    assert "no digit right" in text


def test_demo_raises_no_warning_and_follows_the_library(monkeypatch) -> None:
    # filterwarnings=error: a leaked RuntimeWarning would fail this test. And nothing is
    # hard-coded: a different library answer shows up in the text.
    monkeypatch.setattr(lse, "logsumexp", lambda *a, **k: np.float64(12345.678))
    assert "12345.678" in _demo.render(unicode=False)


def test_exact_reference_and_digits() -> None:
    exact = _demo.exact_logsumexp([0.0] + [-40.0] * 999)
    assert f"{exact:.16e}" == "4.2441059010362884e-15"
    assert _demo.agreeing_digits(4.244105901036288e-15, exact) == "4.244105901036288"
    assert _demo.agreeing_digits(-1.0, Decimal(1)) == ""
    assert _demo.agreeing_digits(1.0e-3, Decimal("1e-4")) == ""
