"""Compiled CPU fast path for NumPy inputs (filled in by the CPU-speed work).

The array core calls these hooks after it has validated and promoted its arguments. Each hook
either returns a result with exactly the core's semantics or ``None`` to decline (unsupported
dtype, layout, or the fast path is disabled), in which case the core computes the result itself.
Every test of the numerical contract runs on both paths (see ``disabled``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

_enabled = True


def enabled() -> bool:
    """Whether the compiled fast path may be used."""
    return _enabled


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block with the fast path switched off (the core computes everything)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def lse_state(
    x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The (max, lead, tail) state of each slice of ``x`` reduced over ``axes``, or None.

    ``x`` is a float32/float64 ndarray (any strides); ``axes`` are distinct non-negative ints,
    sorted; ``b`` is None or a float ndarray of x's shape. The state arrays are float64 with the
    shape of x without ``axes``. See ``logsumexp._online`` for the state's meaning.
    """
    return None


def softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray | None:
    """softmax (or log_softmax when ``log``) of float32/float64 ``x`` along ``axis``, or None.

    Accumulates in float64 and returns x's dtype, with the special-value rules of the core.
    """
    return None
