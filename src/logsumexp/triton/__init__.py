"""Triton GPU kernels behind ``logsumexp.torch`` for CUDA tensors.

Each kernel family lives in one file with its kernels, launcher and autograd Function side by side:

* ``_lse``                   row LogSumExp (forward; backward ``g · softmax``)
* ``_softmax``               softmax and log_softmax (forward and backward)
* ``_cross_entropy``         fused cross-entropy: loss and gradient in one kernel, optionally in place
* ``_linear_cross_entropy``  ``hidden @ weight.T (+ bias)`` and cross-entropy over token chunks, never the full logits

The public functions take CUDA tensors; CPU tensors run through Triton's interpreter when ``TRITON_INTERPRET=1``
was set before this package was imported (that is how the tests run on machines without a GPU).  Block sizes
and warp counts are provisional until measured on a GPU (``benchmarks/gpu.py``).

Importing ``logsumexp`` does not import this package (nor torch, nor triton).
"""

from ._cross_entropy import cross_entropy
from ._linear_cross_entropy import linear_cross_entropy
from ._lse import logsumexp
from ._softmax import log_softmax, softmax

__all__ = ["cross_entropy", "linear_cross_entropy", "log_softmax", "logsumexp", "softmax"]
