"""``logsumexp demo``: the walk-through a newcomer runs first.

Every number it prints is computed when it runs: the naive formulas are evaluated (their
exceptions and NumPy's warnings are caught and reported as text, never printed as warnings), the
library is called, and the exact reference values come from Python's ``decimal`` module at 60
digits (the standard library, so the demo needs nothing beyond the package).

>>> text = render(unicode=False)
>>> "1001.0986122886682" in text and "OverflowError" in text
True
>>> max(len(line) for line in text.splitlines()) <= 80
True
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from decimal import Decimal, localcontext
from typing import Any

import numpy as np

import logsumexp as lse

__all__ = ["agreeing_digits", "exact_logsumexp", "render"]

WIDTH = 80


def exact_logsumexp(x: Sequence[float], digits: int = 60) -> Decimal:
    """``log(sum(exp(x)))`` of the float64 values ``x``, with ``digits`` significant digits."""
    with localcontext() as ctx:
        ctx.prec = digits
        return sum((Decimal(float(v)).exp() for v in x), Decimal(0)).ln()


def agreeing_digits(value: float, exact: Decimal) -> str:
    """The leading significant digits of ``value`` that agree with ``exact`` ('' if none).

    >>> agreeing_digits(4.218847493575586e-15, Decimal("4.2441059010362884e-15"))
    '4.2'
    >>> agreeing_digits(0.0, Decimal("4.2e-18"))
    ''
    """
    if value == 0 or not math.isfinite(value):
        return ""
    mine, ref = f"{value:.16e}", f"{exact:.16e}"
    m_mant, m_exp = repr(value).replace("E", "e"), mine.split("e")[1]
    if m_exp != ref.split("e")[1] or (value < 0) != (exact < 0):
        return ""
    # the shortest repr's mantissa digits, compared with the reference's
    digits = m_mant.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    want = ref.split("e")[0].lstrip("-").replace(".", "")
    n = 0
    while n < min(len(digits), len(want)) and digits[n] == want[n]:
        n += 1
    if n == 0:
        return ""
    sign = "-" if value < 0 else ""
    return sign + (digits[0] + ("." + digits[1:n] if n > 1 else ""))


def _caught(fn: Callable[[], Any]) -> tuple[Any, list[str], str | None]:
    """Run ``fn`` with NumPy's floating-point warnings on; return (result, warnings, error).

    The warnings are recorded (never printed) and an exception becomes ``"Type: message"``.
    """
    with warnings.catch_warnings(record=True) as caught, np.errstate(
        over="warn", divide="warn", invalid="warn", under="ignore"
    ):
        warnings.simplefilter("always")
        try:
            result, error = fn(), None
        except (ArithmeticError, ValueError) as err:
            result, error = None, f"{type(err).__name__}: {err}"
    seen: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.append(text)
    return result, seen, error


def _num(v: Any) -> str:
    """Shortest round-trip text of a float (``1001.0986122886682``)."""
    return repr(float(v))


def _list(x: Sequence[float]) -> str:
    return "[" + ", ".join(_num(v).removesuffix(".0") for v in x) + "]"


class _Out:
    """Lines of the walk-through, with the symbols the terminal can show."""

    def __init__(self, unicode: bool) -> None:
        self.lines: list[str] = []
        self.u = unicode

    def s(self, fancy: str, plain: str) -> str:
        return fancy if self.u else plain

    def __call__(self, text: str = "") -> None:
        self.lines.append(text.rstrip())

    def row(self, label: str, value: str, note: str = "", *, indent: int = 5, width: int = 38) -> None:
        """``label`` padded to a column, then ``value`` (on the next line if the label is long)."""
        pad = " " * indent
        if len(label) > width:
            self(pad + label)
            self(pad + " " * width + value + (f"  {note}" if note else ""))
        else:
            self(pad + label.ljust(width) + value + (f"  {note}" if note else ""))


def _naive_numpy_lse(x: np.ndarray) -> tuple[Any, list[str], str | None]:
    return _caught(lambda: np.log(np.sum(np.exp(x))))


def _naive_python_lse(x: Sequence[float]) -> tuple[Any, list[str], str | None]:
    return _caught(lambda: math.log(sum(math.exp(v) for v in x)))


def _warned(o: _Out, result: Any, warns: list[str], error: str | None) -> None:
    """The outcome of a naive formula: ``→ value`` (or the exception), then its warnings."""
    o(f"             {o.s('→', '->')} {error if error is not None else result}")
    for w in warns:
        o(f"               {w}")


def _section_naive(o: _Out) -> None:
    o("1. The naive formula log(sum(exp(x))) overflows, or underflows")
    for v in (1000.0, -1000.0):
        x = [v, v, v]
        o(f"   x = {_list(x)}")
        o("     Python  math.log(sum(math.exp(v) for v in x))")
        if v < 0:
            o(f"             math.exp({_num(v).removesuffix('.0')}) = {_num(math.exp(v))}, so the sum is "
              f"{_num(sum(math.exp(t) for t in x))}")
        res, warns, err = _naive_python_lse(x)
        _warned(o, None if res is None else _num(res), warns, err)
        o("     NumPy   np.log(np.sum(np.exp(x)))")
        res, warns, err = _naive_numpy_lse(np.array(x))
        _warned(o, None if res is None else _num(res), warns, err)
    fi = np.finfo(np.float64)
    o(f"   exp(1000) is beyond the largest float64 ({_num(fi.max)}) and")
    o(f"   exp(-1000) below the smallest ({_num(fi.smallest_subnormal)}): the sum is lost before the log.")
    o()


def _section_stable(o: _Out) -> None:
    minus = o.s("−", "-")
    o("2. The fix: shift by the maximum. For every c,")
    o(f"     LSE(x) = log {o.s('Σ', 'sum')} exp(x_i) = c + log {o.s('Σ', 'sum')} exp(x_i {minus} c),")
    o("   and with c = max(x) no exponent is above 0: the largest term is exactly 1.")
    for v in (1000.0, -1000.0):
        x = np.array([v, v, v])
        o.row(f"lse.logsumexp({_list(x)})", _num(lse.logsumexp(x)))
        o.row(f"{_num(v).removesuffix('.0')} + log 3", _num(v + math.log(3)))
    o()


def _section_softmax(o: _Out) -> None:
    x = np.array([1000.0, 1000.0, 1000.0])
    minus = o.s("−", "-")
    o(f"3. Softmax, the gradient of LSE: softmax(x)_i = exp(x_i {minus} LSE(x))")
    o(f"   x = {_list(x)}")
    res, warns, err = _caught(lambda: np.exp(x) / np.sum(np.exp(x)))
    o("     naive   np.exp(x) / np.sum(np.exp(x))")
    _warned(o, None if res is None else np.array2string(res, separator=", "), warns, err)
    sm = lse.softmax(x)
    o("     lse.softmax(x)")
    _warned(o, f"[{', '.join(_num(p) for p in sm)}]", [], None)
    o(f"     1/3 = {_num(1 / 3)}, and the probabilities sum to {_num(np.sum(sm))}")
    o()


def _section_ce(o: _Out) -> None:
    x = np.array([1000.0, 1000.0, 1000.0])
    minus, ge = o.s("−", "-"), o.s("≥", ">=")
    o(f"4. Cross-entropy: the loss of target class j is LSE(x) {minus} x_j")
    o("   softmax(x)_j is the model's probability of class j, so its log,")
    o(f"   x_j {minus} LSE(x), is the log-likelihood of the target, and the loss is its")
    o(f"   negative, LSE(x) {minus} x_j {ge} 0. For x = {_list(x)} and j = 0:")
    o.row("log-likelihood  lse.log_softmax(x)[0]", _num(lse.log_softmax(x)[0]), width=41)
    o.row("loss            lse.cross_entropy(x, 0)", _num(lse.cross_entropy(x, 0)), width=41)
    o.row("                log 3", _num(math.log(3)), width=41)
    res, warns, err = _caught(lambda: -np.log(np.exp(x[0]) / np.sum(np.exp(x))))
    o("     naive   -np.log(np.exp(x[0]) / np.sum(np.exp(x)))")
    _warned(o, None if res is None else _num(res), warns, err)
    o()


def _section_bounds(o: _Out) -> None:
    le = o.s("≤", "<=")
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    n = x.size
    m, v, hi = float(np.max(x)), float(lse.logsumexp(x)), float(np.max(x)) + math.log(n)
    o(f"5. The bounds: max(x) {le} LSE(x) {le} max(x) + log n")
    o(f"   x = {_list(x)}, n = {n}")
    o.row("max(x)", _num(m))
    o.row("LSE(x) = lse.logsumexp(x)", _num(v))
    o.row("max(x) + log n", _num(hi))
    o(f"   {_num(m)} {le} {_num(v)} {le} {_num(hi)}: {'holds' if m <= v <= hi else 'FAILS'}.")
    eq = np.full(n, 7.0)
    o(f"   Equal entries reach the upper end: LSE({_list(eq)}) = {_num(lse.logsumexp(eq))}")
    o(f"   = 7 + log {n}; a dominant entry nears the lower: "
      f"LSE([0, -40]) = {float(lse.logsumexp(np.array([0.0, -40.0]))):.2g}.")
    o()


def _section_smoothmax(o: _Out) -> None:
    x = np.array([1.0, 2.0, 3.0])
    n, m = x.size, float(np.max(x))
    o("6. LSE is the smooth maximum: smoothmax(x, T) = T * LSE(x / T)")
    o(f"   x = {_list(x)}: as the temperature T falls it tends to max(x) = {_num(m)},")
    o("   always within T * log n of it, and its gradient softmax(x / T) tends to")
    o("   the one-hot arg max.")
    o(f"   {'T':>6}  {'smoothmax(x, T)':<20}{'minus max':<11}{'T * log n':<11}softmax(x / T)")
    for t in (10.0, 1.0, 0.1, 0.01):
        sm = float(lse.smoothmax(x, temperature=t))
        p = lse.softmax(x, temperature=t)
        probs = " ".join(f"{q:.3f}" for q in p)
        o(f"   {t:>6g}  {_num(sm):<20}{sm - m:<11.4g}{t * math.log(n):<11.4g}{probs}")
    o()


def _percent(err: float) -> str:
    pct = 100 * err
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"


def _section_dominant(o: _Out) -> None:
    times = o.s("×", "x")
    o("7. Dominant terms: keep the maximum's own term out of the sum")
    o("   When one entry dominates, LSE(x) = max + log(1 + s) with a tiny s. The plain")
    o("   shift forms 1 + s in floating point and rounds s away; the library computes")
    o("   max + log1p(s) (Blanchard, Higham & Higham, IMA J. Numer. Anal. 2021).")
    o("   ^ marks the digits that agree with the exact value.")
    cases = [(f"[0, -40 {times} 999]", np.concatenate([[0.0], np.full(999, -40.0)])),
             ("[0, -40]", np.array([0.0, -40.0]))]
    col = 20
    for label, x in cases:
        exact = exact_logsumexp(x)
        shift = float(np.max(x))
        ssum = _caught(lambda x=x, shift=shift: np.sum(np.exp(x - shift)))[0]
        naive = _caught(lambda x=x, shift=shift: shift + np.log(np.sum(np.exp(x - shift))))[0]
        ours = float(lse.logsumexp(x))
        o(f"   x = {label}: 1 + s = sum(exp(x - max)) = {_num(ssum)} in float64")
        o(f"     {'exact (60 digits)':<{col}}{exact:.16e}")
        for name, val in (("naive: log(1 + s)", float(naive)), ("lse.logsumexp(x)", ours)):
            agree = agreeing_digits(val, exact)
            count = sum(c.isdigit() for c in agree)
            rel = float(abs(Decimal(val) - exact) / exact)
            if rel > 1e-6:
                how = f"{_percent(rel)} off"
            else:
                how = f"{float(abs(Decimal(val) - exact) / Decimal(math.ulp(val))):.2f} ulp off"
            right = f"{count} digit{'s' * (count != 1)} right" if count else "no digit right"
            o(f"     {name:<{col}}{_num(val):<23}{how}, {right}")
            if agree:
                o(f"     {'':<{col}}{'^' * len(agree)}")
    o()


def _use_unicode(stream: Any = None) -> bool:
    enc = getattr(stream if stream is not None else sys.stdout, "encoding", None) or "ascii"
    try:
        "≤≥−→Σ×".encode(enc)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def render(unicode: bool | None = None) -> str:
    """The walk-through as text (at most 80 columns). ``unicode``: use ≤, →, … (default: when
    stdout can encode them)."""
    o = _Out(_use_unicode() if unicode is None else unicode)
    o(f"logsumexp {lse.__version__}: a walk-through. Every number below is computed as it runs.")
    o()
    _section_naive(o)
    _section_stable(o)
    _section_softmax(o)
    _section_ce(o)
    _section_bounds(o)
    _section_smoothmax(o)
    _section_dominant(o)
    o("Try:  logsumexp lse 1000 1000 1000")
    o("      logsumexp softmax 1 2 3 --temperature 0.5")
    o("      logsumexp ce --target 0 1000 1000 1000")
    o("      logsumexp lse -f big.npy         (streams a file of any size)")
    return "\n".join(o.lines)
