"""PyTorch face of logsumexp: stable, memory-frugal cross-entropy, LSE and softmax.

``cross_entropy`` is a drop-in for ``torch.nn.functional.cross_entropy`` (torch's positional
signature, plus ``z_loss``, ``softcap``, ``num_items``, ``return_lse``, ``inplace_backward``);
``linear_cross_entropy`` never builds the full logits. On CPU they run as ``torch.library``
operators (``torch.compile(fullgraph=True)``, static or dynamic shapes, traces them) with
gradients for ``torch.func`` and second derivatives; CUDA tensors run the Triton kernels of
``logsumexp.triton`` when it is importable (looked up once, at import).
"""

from typing import Any

from .._options import CrossEntropyOptions
from .functional import cross_entropy, linear_cross_entropy, log_softmax, logsumexp, softmax
from .modules import CrossEntropyLoss, LinearCrossEntropyLoss
from .segment import segment_log_softmax, segment_logsumexp, segment_softmax
from ._kl import kl_div_logits, linear_kl_div
from ._log_probs import linear_log_probs, log_probs
from .. import _lse

# The array core hands torch tensors that need a graph (lse.logsumexp(t) with t.requires_grad) to
# this face's differentiable operators; it never imports the face itself.
_lse.register_torch_face("logsumexp", lambda t, axes, keepdims: logsumexp(t, axes, keepdims))
_lse.register_torch_face("softmax", lambda t, axis, log: (log_softmax if log else softmax)(t, axis))

__all__ = [
    "CrossEntropyLoss",
    "CrossEntropyOptions",
    "LinearCrossEntropyLoss",
    "cross_entropy",
    "kl_div_logits",
    "linear_kl_div",
    "linear_log_probs",
    "log_probs",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "segment_log_softmax",
    "segment_logsumexp",
    "segment_softmax",
    "softmax",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_log_probs",
    "vocab_parallel_log_probs",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: torch.distributed is not needed by single-process users.
    if name == "vocab_parallel_cross_entropy":
        from .distributed import vocab_parallel_cross_entropy

        return vocab_parallel_cross_entropy
    if name == "vocab_parallel_log_probs":
        from ._distributed_log_probs import vocab_parallel_log_probs

        return vocab_parallel_log_probs
    if name == "vocab_parallel_linear_log_probs":
        from ._distributed_log_probs import vocab_parallel_linear_log_probs

        return vocab_parallel_linear_log_probs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
