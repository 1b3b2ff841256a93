"""Configuration of the compiled CPU layer: threads, and which kernels are in use."""

from __future__ import annotations

from typing import Any

from . import _cpu


def set_num_threads(n: int | None) -> None:
    """Set the number of threads the CPU kernels use for large inputs.

    ``None`` restores the default: ``LOGSUMEXP_NUM_THREADS`` if set, else the CPUs this process
    may use. Inputs below 2**18 elements always run on the calling thread. The thread count
    never changes a result's bits: long slices are cut into the same pieces whatever it is.

    >>> import logsumexp as lse
    >>> lse.set_num_threads(1)
    >>> lse.show_config(print_out=False)["threads"]
    1
    >>> lse.set_num_threads(None)
    """
    _cpu.set_num_threads(n)


def show_config(print_out: bool = True) -> dict[str, Any]:
    """Which CPU kernels are in use: the instruction-set target (``baseline``, ``avx2`` or
    ``avx512``; ``LOGSUMEXP_CPU`` forces one), the targets this CPU supports, its features, the
    thread count. Prints a short report unless ``print_out=False``; returns the same as a dict.

    >>> import logsumexp as lse
    >>> cfg = lse.show_config(print_out=False)
    >>> cfg["target"] in cfg["supported_targets"]
    True
    """
    info = _cpu.info()
    if print_out:
        print("logsumexp CPU kernels")
        print(f"  compiled           : {info['compiled']} ({info['detail']})")
        print(f"  target in use      : {info['target']}")
        print(f"  supported targets  : {', '.join(info['supported_targets']) or 'none'}")
        print(f"  CPU features       : {', '.join(info['cpu_features']) or 'unknown'}")
        print(f"  threads            : {info['threads']}")
    return info
