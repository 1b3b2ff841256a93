"""Triton GPU kernels behind ``logsumexp.torch`` for CUDA tensors: rows and options in, no validation.

``logsumexp.torch`` checks the arguments once, builds one ``CrossEntropyOptions``, reshapes to rows ([N, C], unit
stride along a row) and calls these functions, which are differentiable (an ``autograd.Function`` each):

* ``cross_entropy_rows(logits, target, weight, opts, inplace_backward=False)``  fused loss and gradient
* ``linear_cross_entropy_rows(hidden, weight, target, bias, class_weight, opts, fp32_weight_grad=None,
  chunk_size=None)``                                                                never the full logits
* ``logsumexp_rows(x)``                                                            [N, C] → [N]
* ``softmax_rows(x, log)``                                                         softmax or log_softmax

One file per kernel family, with its kernels, launcher and autograd Function side by side: ``_lse``,
``_softmax``, ``_cross_entropy``, ``_linear_cross_entropy``; ``_common`` holds the (max, sum) state in Triton and
the launch configurations, each with the H200 measurement it comes from.  CPU tensors run through Triton's
interpreter when ``TRITON_INTERPRET=1`` was set before this package was imported (that is how the tests run
on machines without a GPU).

Importing ``logsumexp`` does not import this package (nor torch, nor triton).
"""

from ._cross_entropy import cross_entropy_rows
from ._linear_cross_entropy import linear_cross_entropy_rows
from ._lse import logsumexp_rows
from ._softmax import softmax_rows

__all__ = ["cross_entropy_rows", "linear_cross_entropy_rows", "logsumexp_rows", "softmax_rows"]
