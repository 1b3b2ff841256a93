"""logsumexp: LogSumExp, softmax, log-softmax and cross-entropy without overflow, without losing
small terms, and as fast as the machine allows.

The array core works on any Python Array API array (NumPy, PyTorch, Dask, JAX, CuPy,
array-api-strict). ``logsumexp.torch`` is the PyTorch face (fused cross-entropy, linear
cross-entropy), ``logsumexp.dask`` the one-pass Dask reductions; neither is imported here.

>>> import logsumexp as lse
>>> print(lse.logsumexp([1000.0, 1000.0, 1000.0]))
1001.0986122886682
"""

from ._cross_entropy import binary_cross_entropy_with_logits, cross_entropy, cross_entropy_grad
from ._lse import log1mexp, logaddexp, logsubexp, logsumexp, smoothmax, smoothmin, softplus
from ._online import LSEState
from ._softmax import log_softmax, softmax

__version__ = "0.1.0"

__all__ = [
    "LSEState",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "cross_entropy_grad",
    "log1mexp",
    "log_softmax",
    "logaddexp",
    "logsubexp",
    "logsumexp",
    "smoothmax",
    "smoothmin",
    "softmax",
    "softplus",
]
