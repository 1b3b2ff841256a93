"""logsumexp: LogSumExp, softmax, log-softmax and cross-entropy without overflow, without losing
small terms, and as fast as the machine allows.

The array core works on any Python Array API array (NumPy, PyTorch, Dask, JAX, CuPy,
array-api-strict). ``logsumexp.torch`` is the PyTorch face (fused cross-entropy, linear
cross-entropy), ``logsumexp.dask`` the one-pass Dask reductions; neither is imported here.

>>> import logsumexp as lse
>>> print(lse.logsumexp([1000.0, 1000.0, 1000.0]))
1001.0986122886682
"""

from typing import Any

from . import _reduce
from ._config import set_num_threads, show_config
from ._cross_entropy import binary_cross_entropy_with_logits, cross_entropy, cross_entropy_grad
from ._elementwise import log1mexp, logaddexp, logsubexp, softplus
from ._lse import logsumexp, smoothmax, smoothmin
from ._lse_state import LSEState
from ._segment import segment_log_softmax, segment_logsumexp, segment_softmax
from ._softmax import log_softmax, softmax


def _dask_backend() -> Any:
    # Imported on the first Dask array the core sees (its user has Dask imported already), here in
    # the top layer: the core itself never imports logsumexp.dask, which is built on the core.
    from . import dask

    return dask


_reduce.register_backend("dask", _dask_backend)

__version__ = "0.1.0"

__all__ = [
    "set_num_threads",
    "show_config",
    "LSEState",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "cross_entropy_grad",
    "log1mexp",
    "log_softmax",
    "logaddexp",
    "logsubexp",
    "logsumexp",
    "segment_log_softmax",
    "segment_logsumexp",
    "segment_softmax",
    "smoothmax",
    "smoothmin",
    "softmax",
    "softplus",
]
