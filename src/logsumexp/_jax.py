r"""JAX-native LogSumExp, softmax, log-softmax and the cross-entropy rows, for arrays that XLA compiles.

The public functions (``_lse``, ``_softmax``, ``_cross_entropy``) validate their arguments as for any
array, then hand JAX arrays here: plain ``jnp`` reductions that XLA fuses (one pass for the maximum,
one for the exponential sum, one elementwise pass for an output or a gradient: the passes
``jax.nn`` makes), with ``jax.custom_jvp`` rules that give the contract's derivatives, and that
work under ``jit``, ``grad``, ``vmap`` and ``hessian`` (the rules are themselves differentiable).

Per slice, with ``m = max x``::

    LSE(x) = m + log(c + s),   c = #{i : x_i − m > −log 2},
                               s = Σ_{x_i − m > −log 2} expm1(x_i − m) + Σ_{x_i − m ≤ −log 2} e^{x_i − m}

Special values come from two per-slice facts, without an elementwise branch in the sums: +inf is
first capped to the largest float (so a slice with ``k`` entries at +inf has those as its ``k``
maxima, and every finite entry vanishes against them: the softmax is ``1/k`` there), and a slice
whose maximum is that cap is a +inf slice; an all −inf (or empty) slice has ``c + s = 0``.

Two precisions (what is guaranteed, per working dtype)
------------------------------------------------------
- **float64 work** (float64 input, and float16/bfloat16/float32 input on a CPU, with
  ``jax_enable_x64``): the maximum's term is kept out of the sum, as in the rest of the library
  (Blanchard, Higham & Higham 2021). Terms near the maximum (``> m − log 2``) are summed as
  ``expm1`` (exact small differences), the count ``c`` is exact, and ``log(c + s)`` is taken as
  ``e·log 2 + log1p(u)`` with ``2^e`` the power of two nearest ``c + s`` and ``log 2`` in two
  parts. So a dominant maximum keeps its correction to full relative accuracy
  (``LSE([0, −40, …])``, ``log_softmax`` at the maximum, a confident cross-entropy), and so does
  a result near 0 when ``c + s`` is near a power of two (``LSE([log ½, log ½ + 1e−12])``). Left: a
  result that cancels against ``m`` elsewhere (three tied maxima at ``−log 3``) has an absolute
  error of about one ulp of ``log(c + s)``, where the NumPy face's double-double finish is exact.
- **float32 work** (JAX's default configuration without x64, and float32 on an accelerator):
  accumulated in float32, ``m + log Σ e^{x_i − m}``, exactly what ``jax.nn.logsumexp`` computes:
  an error of a few ulp of the result and of ``log n``, but no separate dominant term (``LSE − m``
  below about ``2^-24`` rounds to 0). Keeping it out costs a second reduction over the data, 1.4×
  the time of ``jax.nn`` at [4096, 32000] on a CPU, and this path exists to match ``jax.nn``'s speed.

Results are returned in the caller's dtype (the public functions cast them).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

from . import _array_api as aa

Array = Any
Axes = tuple[int, ...]

# log 2 in two parts (fdlibm's split): the high part has 32 significant bits, so e·LN2_HI is exact
# for |e| < 2^20 and m + e·LN2_HI cancels exactly (Sterbenz) when the result is near 0.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


def is_jax_array(x: Any) -> bool:
    """Whether ``x`` is a JAX array or tracer (what the public functions send here)."""
    import array_api_compat

    return bool(array_api_compat.is_jax_array(x))


class _Stats(NamedTuple):
    """Per-slice statistics of ``x`` over ``axes`` (keepdims), in the working dtype."""

    y: Array  # x − shift, with +inf capped: ≤ 0; 0 on the maxima (on the +inf entries of a +inf slice)
    posinf: Array  # the slice has a +inf entry
    total: Array  # Σ e^{y_i} = c + s (float64 work: the two parts kept apart in log_total)
    log_total: Array  # log(total) as one number (−inf for an empty or all −inf slice)
    shift_hi: Array  # shift + e·LN2_HI (float64 work) or shift + log(total) (float32 work): LSE = shift_hi + lse_lo
    lse_lo: Array


def _stats(x: Array, axes: Axes, accurate: bool) -> _Stats:
    import jax
    import jax.numpy as jnp

    big = float(jnp.finfo(x.dtype).max)
    m = jnp.max(x, axis=axes, keepdims=True, initial=-math.inf)
    posinf = m == math.inf
    # A +inf slice is shifted by the largest float, and its entries capped there: the +inf entries
    # become 0 (its maxima), the finite ones about −max (they vanish). The cap is elementwise inside
    # each pass (XLA fuses it; a capped copy shared by two passes would be written out and read
    # back); the only cost is an entry of exactly the largest float beside a +inf, which shares
    # the +inf entries' mass. An all −inf slice is shifted by 0 (its terms stay e^{−inf} = 0).
    # The shift is a constant for differentiation: nothing depends on it, and its derivative
    # (max's) would only be noise.
    mc = jnp.minimum(m, big)  # NaN stays NaN (XLA's min propagates it)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(mc), mc, 0.0))
    y = jnp.minimum(x, big) - shift
    if accurate:
        near = y > -math.log(2.0)
        # expm1 near the maximum: e^y − 1 there is exact to the last bit, so c + s keeps it
        s = jnp.sum(jnp.where(near, jnp.expm1(y), jnp.exp(y)), axis=axes, keepdims=True)
        c = jnp.sum(near, axis=axes, keepdims=True, dtype=x.dtype)
        total = c + s
        e = _nearest_power_of_two_exponent(jnp, total)
        scale = jnp.ldexp(jnp.ones_like(total), -e)
        u = ((c - jnp.ldexp(jnp.ones_like(total), e)) + s) * scale  # (c + s)/2^e − 1 in [−¼, ½)
        ef = e.astype(x.dtype)
        lo = ef * _LN2_LO + jnp.log1p(u)
        hi = shift + ef * _LN2_HI
        log_total = ef * _LN2_HI + lo
    else:
        total = jnp.sum(jnp.exp(y), axis=axes, keepdims=True)
        log_total = jnp.log(total)
        lo = jnp.zeros_like(total)
        hi = shift + log_total
    return _Stats(y, posinf, total, log_total, hi, lo)


def _nearest_power_of_two_exponent(jnp: Any, total: Array) -> Array:
    """``e`` with ``total / 2^e`` in ``[¾, 3/2)`` (0 for ``total = 0`` or NaN: those are answered apart)."""
    mant, ex = jnp.frexp(total)  # total = mant · 2^ex, mant in [½, 1)
    return jnp.where(mant < 0.75, ex - 1, ex)


def _value(st: _Stats) -> Array:
    """LSE per slice (keepdims): ``(shift + e·log2_hi) + (e·log2_lo + log1p(u))``, with the special slices."""
    import jax.numpy as jnp

    out = st.shift_hi + st.lse_lo
    out = jnp.where(st.total == 0, -math.inf, out)  # empty or all −inf (NaN: total is NaN, kept)
    return jnp.where(st.posinf, math.inf, out)


def _probs(st: _Stats) -> Array:
    """softmax ``e^{y}/(c + s)``: the division form; an all −inf slice is 0/1 = 0, not 0/0."""
    import jax.numpy as jnp

    return jnp.exp(st.y) / jnp.where(st.total == 0, 1.0, st.total)


def _log_probs(st: _Stats) -> Array:
    """log-softmax ``y − log(c + s)``, the maximum's term kept out (``−log1p(tail)`` there)."""
    import jax.numpy as jnp

    log_total = jnp.where(st.total == 0, 0.0, st.log_total)  # all −inf: −inf − 0, not −inf − (−inf)
    # k entries at +inf: −log k exactly as log gives it (the two-part sum can land an ulp away)
    log_total = jnp.where(st.posinf, jnp.log(st.total), log_total)
    out = st.y - log_total
    # a finite entry of a +inf slice is −inf (the cap left it at about −max, not −inf)
    return jnp.where(st.posinf & (st.y < 0), -math.inf, out)


# ------------------------------------------------------------------------------------------------
# The differentiable functions (axes and the precision are static)
# ------------------------------------------------------------------------------------------------
@functools.cache
def _functions() -> dict[str, Any]:
    """The three ``custom_jvp`` functions, built on first use (JAX is imported only then)."""
    import jax
    import jax.numpy as jnp

    @functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
    def lse(x: Array, axes: Axes, accurate: bool) -> Array:
        return _value(_stats(x, axes, accurate))

    @lse.defjvp
    def lse_jvp(axes: Axes, accurate: bool, primals: Any, tangents: Any) -> Any:
        # d LSE = Σ softmax · dx: 0 on an all −inf slice, 1/k on k +inf entries, NaN in a NaN slice
        (x,), (dx,) = primals, tangents
        st = _stats(x, axes, accurate)
        # e^y is shared with the forward sum, as jax.nn shares it: one exp per entry, and XLA
        # writes it out once (recomputing it from x in the backward pass was 1.3× slower here)
        return _value(st), jnp.sum(_probs(st) * dx, axis=axes, keepdims=True)

    @functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
    def softmax(x: Array, axes: Axes, accurate: bool) -> Array:
        return _probs(_stats(x, axes, accurate))

    @softmax.defjvp
    def softmax_jvp(axes: Axes, accurate: bool, primals: Any, tangents: Any) -> Any:
        (x,), (dx,) = primals, tangents
        p = _probs(_stats(x, axes, accurate))
        return p, p * (dx - jnp.sum(p * dx, axis=axes, keepdims=True))

    @functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
    def log_softmax(x: Array, axes: Axes, accurate: bool) -> Array:
        return _log_probs(_stats(x, axes, accurate))

    @log_softmax.defjvp
    def log_softmax_jvp(axes: Axes, accurate: bool, primals: Any, tangents: Any) -> Any:
        (x,), (dx,) = primals, tangents
        st = _stats(x, axes, accurate)
        return _log_probs(st), dx - jnp.sum(_probs(st) * dx, axis=axes, keepdims=True)

    return {"lse": lse, "softmax": softmax, "log_softmax": log_softmax}


def _work(x: Array, out_dtype: Any) -> tuple[Array, bool]:
    """``x`` in the working dtype (``aa.work_dtype``), and whether that is float64 (the accurate path)."""
    import jax.numpy as jnp

    wide = aa.work_dtype(jnp, x, out_dtype)
    return x.astype(wide), wide == jnp.float64


def logsumexp(x: Array, axes: Axes, keepdims: bool, out_dtype: Any) -> Array:
    r"""LogSumExp of a JAX array over ``axes`` (non-empty, normalised), in ``out_dtype``.

    ``x`` is validated, real floating, masked entries already −inf. Gradient: the softmax (0 on an
    all −inf slice, ``1/k`` on ``k`` entries at +inf, NaN only in a NaN slice).

    >>> import jax.numpy as jnp
    >>> print(f"{float(logsumexp(jnp.asarray([1000.0, 1000.0, 1000.0]), (0,), False, jnp.float32)):.4f}")
    1001.0986
    """
    import jax.numpy as jnp

    w, accurate = _work(x, out_dtype)
    out = _functions()["lse"](w, axes, accurate)
    if not keepdims:
        out = jnp.squeeze(out, axis=axes)
    return out.astype(out_dtype)


def softmax(x: Array, axes: Axes, log: bool, out_dtype: Any) -> Array:
    """softmax (``log=False``) or log_softmax of a JAX array over ``axes`` (non-empty), in ``out_dtype``."""
    w, accurate = _work(x, out_dtype)
    fn = _functions()["log_softmax" if log else "softmax"]
    return fn(w, axes, accurate).astype(out_dtype)


def cross_entropy_rows(
    x: Array, target: Array, index_target: bool, weight: Array | None, smoothing: float,
    valid: Array | None, safe_t: Array | None, wide: Any,
) -> tuple[Array, Array]:
    r"""Per-row loss ``Σ_c coef_c · (LSE − x_c)`` and the rows' mean weights, classes on the last axis.

    ``LSE − x_c = −log_softmax(x)_c`` comes from the differentiable log-softmax above, so the
    gradient is ``(Σ_c coef_c)·softmax − coef`` on every row, +inf rows included (``1/k`` there),
    and a confident prediction keeps its relative accuracy in float64 work. Index targets:
    ``coef = (1 − ε)·w_t·onehot_t + ε/C·w`` on counted rows (``valid``, ``safe_t`` from the
    caller's target check); probabilities: ``coef = ((1 − ε)·q + ε/C)·w``. A zero coefficient
    times an infinite ``LSE − x_c`` counts as 0 (an absent term).
    """
    import jax.numpy as jnp

    accurate = wide == jnp.float64
    nll = -_functions()["log_softmax"](x.astype(wide), (x.ndim - 1,), accurate)
    classes = x.shape[-1]
    if index_target:
        nll_t = jnp.take_along_axis(nll, safe_t[..., None].astype(aa.index_dtype(jnp)), axis=-1)[..., 0]
        w_t = jnp.ones_like(nll_t) if weight is None else weight[safe_t]
        w_t = jnp.where(valid, w_t, 0.0)
        loss = _times(w_t * (1.0 - smoothing), nll_t)
        if smoothing > 0:
            cls_w = jnp.ones((classes,), dtype=wide) if weight is None else weight
            smooth = jnp.sum(_times(cls_w, nll), axis=-1)
            loss = loss + jnp.where(valid, smooth, 0.0) * (smoothing / classes)
        return loss, w_t
    q = target.astype(wide)
    if smoothing > 0:
        q = q * (1.0 - smoothing) + smoothing / classes
    coef = q if weight is None else q * weight
    loss = jnp.sum(_times(coef, nll), axis=-1)
    return loss, jnp.ones_like(loss)


def _times(coef: Array, value: Array) -> Array:
    """``coef · value`` with ``0 · ±inf = 0``; the derivative in ``coef`` stays the finite value."""
    import jax.numpy as jnp

    absent = (coef == 0) & jnp.isinf(value)
    return coef * jnp.where(absent, 0.0, value)


__all__ = ["cross_entropy_rows", "is_jax_array", "logsumexp", "softmax"]
