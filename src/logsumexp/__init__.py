"""logsumexp: stable LogSumExp, softmax, log-softmax and cross-entropy."""
__version__ = "0.1.0"
