"""``logsumexp.torch.vocab_parallel_log_probs`` and ``vocab_parallel_linear_log_probs`` on the gloo
backend with 1, 2 and 3 processes.

The pattern of ``test_torch_distributed.py``: three workers (this file run as a script) start once for
the file; each runs every case as the world of 3 (``group=None``), then ranks 0–1 as a subgroup of 2
and rank 0 alone as a group of 1, and saves what it got. The tests compare with the single-process
``logsumexp.torch.log_probs`` and float64 eager torch on the concatenated logits, and (the weight-shard
form) with the single-process ``linear_log_probs`` on the full weight in float64. Rendezvous through a
``FileStore`` in a temporary directory, gloo on the loopback interface: nothing leaves the machine.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the vocab-parallel log-probs are part of the torch face")
import torch.distributed as dist  # noqa: E402

WORLDS = (1, 2, 3)
V = 30
WORKER_TIMEOUT_S = 240


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    layout: str = "even"  # even | uneven | empty (a 0-wide rank)
    dtype: str = "float64"
    special: str | None = None  # confident | plus_inf | minus_inf | nan | bad_token | overlap
    n: int = 8
    bias: bool = False  # the weight-shard cases: a bias on the head


CASES = [
    Case("even", {"return_entropy": True}),
    Case("uneven_temperature", {"return_entropy": True, "temperature": 0.7}, layout="uneven"),
    Case("empty_slice", {"return_entropy": True}, layout="empty"),
    Case("log_probs_only", {}),
    Case("float32", {"return_entropy": True}, dtype="float32", layout="uneven"),
    Case("bfloat16", {"return_entropy": True}, dtype="bfloat16"),
    Case("confident", {"return_entropy": True}, special="confident", dtype="float32", n=4),
    Case("plus_inf", {"return_entropy": True}, special="plus_inf", n=4),
    Case("minus_inf", {"return_entropy": True}, special="minus_inf", n=4),
    Case("nan", {"return_entropy": True}, special="nan", n=4),
    Case("bad_token", {}, special="bad_token"),
]


D = 6
# The weight-shard form: chunk_size 3 makes the 8 tokens cross chunk boundaries.
LINEAR_CASES = [
    Case("lin_even", {"return_entropy": True, "chunk_size": 3}, bias=True),
    Case("lin_uneven_temperature", {"return_entropy": True, "temperature": 0.7}, layout="uneven"),
    Case("lin_empty_slice", {"return_entropy": True, "chunk_size": 5}, layout="empty", bias=True),
    Case("lin_log_probs_only", {}, bias=True),
    Case("lin_float32", {"return_entropy": True, "chunk_size": 3}, dtype="float32", layout="uneven",
         bias=True),
    Case("lin_bad_token", {}, special="bad_token"),
    Case("lin_overlap", {}, special="overlap"),  # every rank says vocab_start=0
]


def slices(case: Case, world: int) -> list[tuple[int, int]]:
    if case.layout == "even" or world == 1:
        return [(r * (V // world), V // world) for r in range(world)]
    widths = {"uneven": {2: [11, 19], 3: [7, 13, 10]}, "empty": {2: [0, 30], 3: [12, 0, 18]}}[case.layout][world]
    return [(sum(widths[:r]), widths[r]) for r in range(world)]


def make_data(case: Case, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(zlib.crc32(f"{case.name}/{world}".encode()))
    x = torch.randn(case.n, V, generator=g, dtype=torch.float64) * 3.0
    t = torch.randint(0, V, (case.n,), generator=g)
    t[1] = -100
    if case.special == "confident":
        x[:] = 0.0
        x[:, 17] = 20.0  # maximum on the last rank's slice; H ≈ 29·21·e^{−20}
        t[:] = 17
    elif case.special == "plus_inf":
        x[0, 0] = x[0, V - 1] = math.inf  # on the first and last slice: H = log 2
        t[0] = V - 1
    elif case.special == "minus_inf":
        x[0] = -math.inf  # all −inf: log p = −inf, H = 0, gradients 0
        x[2, :10] = -math.inf
    elif case.special == "nan":
        x[2, 20] = math.nan
    elif case.special == "bad_token":
        t[5] = V
    return x, t


def _run(case: Case, rank: int, world: int, group: Any) -> dict[str, Any]:
    from logsumexp.torch import vocab_parallel_log_probs

    x, t = make_data(case, world)
    start, width = slices(case, world)[rank]
    shard = x[:, start:start + width].to(getattr(torch, case.dtype)).clone().requires_grad_()
    vocab_start = start if case.layout != "even" else None
    try:
        out = vocab_parallel_log_probs(shard, t, group, vocab_start, **case.kwargs)
    except Exception as e:  # recorded; the parent checks type and message
        return {"error": (type(e).__name__, str(e))}
    lp, ent = out if case.kwargs.get("return_entropy") else (out, None)
    gw = torch.linspace(-1.0, 1.0, case.n, dtype=lp.dtype)
    obj = (torch.where(torch.isfinite(lp), lp, 0.0) * gw).sum()
    if ent is not None:
        obj = obj + (torch.where(torch.isfinite(ent), ent, 0.0) * 0.5).sum()
    obj.backward()
    return {"lp": lp.detach(), "ent": None if ent is None else ent.detach(), "grad": shard.grad}


def make_linear_data(case: Case, world: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(zlib.crc32(f"{case.name}/{world}".encode()))
    h = torch.randn(case.n, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64) if case.bias else None
    t = torch.randint(0, V, (case.n,), generator=g)
    t[1] = -100
    if case.special == "bad_token":
        t[5] = V
    return h, w, b, t


def _run_linear(case: Case, rank: int, world: int, group: Any) -> dict[str, Any]:
    from logsumexp.torch import vocab_parallel_linear_log_probs

    dtype = getattr(torch, case.dtype)
    h, w, b, t = make_linear_data(case, world)
    start, width = slices(case, world)[rank]
    hidden = h.to(dtype).requires_grad_()
    shard = w[start:start + width].to(dtype).clone().requires_grad_()
    bias = None if b is None else b[start:start + width].to(dtype).clone().requires_grad_()
    vocab_start = 0 if case.special == "overlap" else start if case.layout != "even" else None
    try:
        out = vocab_parallel_linear_log_probs(hidden, shard, t, group, vocab_start, bias=bias, **case.kwargs)
    except Exception as e:  # recorded; the parent checks type and message
        return {"error": (type(e).__name__, str(e))}
    lp, ent = out if case.kwargs.get("return_entropy") else (out, None)
    gw = torch.linspace(-1.0, 1.0, case.n, dtype=lp.dtype)
    obj = (lp * gw).sum() + (0.0 if ent is None else (ent * 0.5).sum())
    obj.backward()
    return {"lp": lp.detach(), "ent": None if ent is None else ent.detach(), "grad_h": hidden.grad,
            "grad_w": shard.grad, "grad_b": None if bias is None else bias.grad}


def _run_doc_example(rank: int, group: Any) -> str:
    """The docstring's example on two ranks: what it prints."""
    from logsumexp.torch import vocab_parallel_linear_log_probs

    h = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[20.0, 0.0], [0.0, 0.0], [0.0, 0.0]]) if rank == 0 else torch.zeros(3, 2)
    lp, _ = vocab_parallel_linear_log_probs(h, w, torch.tensor([0]), group, return_entropy=True)
    return repr(lp)


def worker(rank: int, store: str, out: str) -> None:
    import datetime

    import logsumexp.torch._cpu_impl as kernels

    torch.set_num_threads(1)
    kernels.CHUNK_ELEMENTS = 32  # chunks of one or two rows: the loops cross chunk boundaries
    size = max(WORLDS)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=60))
    groups = {w: dist.new_group(list(range(w))) for w in WORLDS if w != size}  # collective: all create all
    results: dict[int, dict[str, Any]] = {}
    for world in sorted(WORLDS, reverse=True):
        if rank >= world:
            continue
        results[world] = {c.name: _run(c, rank, world, groups.get(world)) for c in CASES}
        results[world].update({c.name: _run_linear(c, rank, world, groups.get(world)) for c in LINEAR_CASES})
        if world == 2:
            results[world]["doc_example"] = _run_doc_example(rank, groups.get(world))
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def results() -> dict[int, list[dict[str, Any]]]:
    size = max(WORLDS)
    with tempfile.TemporaryDirectory(prefix="vplp-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, __file__, "worker", str(r), str(tmp / "store"), str(tmp)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in range(size)]
        failures = []
        for r, p in enumerate(procs):
            try:
                log, _ = p.communicate(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                log, _ = p.communicate()
                failures.append(f"rank {r} timed out:\n{log[-3000:]}")
                continue
            if p.returncode != 0:
                failures.append(f"rank {r} exited with {p.returncode}:\n{log[-3000:]}")
        if failures:
            pytest.fail("\n".join(failures))
        per_rank = [torch.load(tmp / f"rank{r}.pt") for r in range(size)]
    return {w: [per_rank[r][w] for r in range(w)] for w in WORLDS}


def reference(case: Case, world: int) -> dict[str, torch.Tensor]:
    """Single process: ``logsumexp.torch.log_probs`` on the concatenated (input-dtype) logits."""
    import logsumexp.torch as L

    x, t = make_data(case, world)
    xr = x.to(getattr(torch, case.dtype)).clone().requires_grad_()
    lp, ent = L.log_probs(xr, t, return_entropy=True, temperature=case.kwargs.get("temperature", 1.0))
    gw = torch.linspace(-1.0, 1.0, case.n, dtype=lp.dtype)
    obj = (torch.where(torch.isfinite(lp), lp, 0.0) * gw).sum()
    if case.kwargs.get("return_entropy"):
        obj = obj + (torch.where(torch.isfinite(ent), ent, 0.0) * 0.5).sum()
    obj.backward()
    return {"lp": lp.detach(), "ent": ent.detach(), "grad": xr.grad}


def assembled(case: Case, world: int, res: list[dict[str, Any]]) -> torch.Tensor:
    lay = slices(case, world)
    parts = sorted(((lay[r][0], res[r]["grad"]) for r in range(world)), key=lambda p: p[0])
    return torch.cat([g.double() for _, g in parts], dim=-1)


TOL = {"float64": 1e-12, "float32": 2e-6, "bfloat16": 2e-6}
GRAD_TOL = {"float64": 1e-12, "float32": 2e-6, "bfloat16": 2**-8}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", [c for c in CASES if c.special != "bad_token"], ids=lambda c: c.name)
def test_matches_single_process(results, case: Case, world: int) -> None:
    ref = reference(case, world)
    res = [results[world][r][case.name] for r in range(world)]
    tol, gtol = TOL[case.dtype], GRAD_TOL[case.dtype]
    for r in range(world):
        assert "error" not in res[r], res[r].get("error")
        assert torch.equal(res[r]["lp"].nan_to_num(7.0), res[0]["lp"].nan_to_num(7.0))  # every rank alike
        torch.testing.assert_close(res[r]["lp"].double(), ref["lp"].double(), rtol=tol, atol=tol, equal_nan=True)
        if case.kwargs.get("return_entropy"):
            torch.testing.assert_close(res[r]["ent"].double(), ref["ent"].double(), rtol=tol, atol=tol,
                                       equal_nan=True)
    torch.testing.assert_close(assembled(case, world, res), ref["grad"].double(), rtol=gtol, atol=gtol,
                               equal_nan=True)


@pytest.mark.parametrize("world", WORLDS)
def test_confident_entropy_keeps_relative_accuracy(results, world: int) -> None:
    ent = results[world][0]["confident"]["ent"]
    expected = math.log1p(29 * math.exp(-20.0)) + 29 * 20.0 * math.exp(-20.0) / (1 + 29 * math.exp(-20.0))
    torch.testing.assert_close(ent.double(), torch.full((4,), expected, dtype=torch.float64), rtol=4e-7, atol=0)


@pytest.mark.parametrize("world", WORLDS)
def test_special_rows(results, world: int) -> None:
    plus = results[world][0]["plus_inf"]
    assert plus["ent"][0].item() == pytest.approx(math.log(2.0), rel=1e-15)
    assert plus["lp"][0].item() == pytest.approx(-math.log(2.0), rel=1e-15)
    minus = [results[world][r]["minus_inf"] for r in range(world)]
    assert minus[0]["lp"][0].item() == -math.inf and minus[0]["ent"][0].item() == 0.0
    grad = assembled(CASES[8], world, minus)
    assert not bool(grad[0].any()) and not bool(grad[2, :10].any())
    nan = [results[world][r]["nan"] for r in range(world)]
    assert nan[0]["ent"][2].isnan() and bool(torch.isfinite(nan[0]["ent"][[0, 1, 3]]).all())
    grad = assembled(CASES[9], world, nan)
    assert bool(grad[2].isnan().all()) and bool(torch.isfinite(grad[[0, 1, 3]]).all())


@pytest.mark.parametrize("world", WORLDS)
def test_out_of_range_token_raises_cross_entropys_index_error(results, world: int) -> None:
    for r in range(world):
        name, msg = results[world][r]["bad_token"]["error"]
        assert name == "IndexError"
        assert msg.startswith("target value 30 at position (5,) is out of range")


def linear_reference(case: Case, world: int) -> dict[str, torch.Tensor]:
    """Single process: ``linear_log_probs`` on the full weight in float64."""
    import logsumexp.torch as L

    h, w, b, t = (None if a is None else a.clone() for a in make_linear_data(case, world))
    for a in (h, w, b):
        if a is not None:
            a.requires_grad_()
    kw = dict(case.kwargs, return_entropy=True)
    lp, ent = L.linear_log_probs(h, w, t, bias=b, **kw)
    gw = torch.linspace(-1.0, 1.0, case.n, dtype=lp.dtype)
    obj = (lp * gw).sum() + ((ent * 0.5).sum() if case.kwargs.get("return_entropy") else 0.0)
    obj.backward()
    return {"lp": lp.detach(), "ent": ent.detach(), "grad_h": h.grad, "grad_w": w.grad,
            "grad_b": None if b is None else b.grad}


def assembled_linear(case: Case, world: int, res: list[dict[str, Any]], key: str) -> torch.Tensor:
    lay = slices(case, world)
    parts = sorted(((lay[r][0], res[r][key]) for r in range(world)), key=lambda p: p[0])
    return torch.cat([g.double() for _, g in parts], dim=0)


# float32: the head's product rounded in float32 (D = 6, |logit| < 10) against float64.
LINEAR_TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", [c for c in LINEAR_CASES if c.special is None], ids=lambda c: c.name)
def test_linear_matches_single_process_float64(results, case: Case, world: int) -> None:
    ref = linear_reference(case, world)
    res = [results[world][r][case.name] for r in range(world)]
    tol = LINEAR_TOL[case.dtype]
    for r in range(world):
        assert "error" not in res[r], res[r].get("error")
        assert torch.equal(res[r]["lp"], res[0]["lp"])  # every rank alike, bit for bit
        torch.testing.assert_close(res[r]["lp"].double(), ref["lp"], rtol=tol, atol=tol)
        if case.kwargs.get("return_entropy"):
            assert torch.equal(res[r]["ent"], res[0]["ent"])
            torch.testing.assert_close(res[r]["ent"].double(), ref["ent"], rtol=tol, atol=tol)
        # hidden's gradient is summed over the ranks: every rank holds the full one
        torch.testing.assert_close(res[r]["grad_h"].double(), ref["grad_h"], rtol=tol, atol=tol)
    torch.testing.assert_close(assembled_linear(case, world, res, "grad_w"), ref["grad_w"], rtol=tol, atol=tol)
    if case.bias:
        torch.testing.assert_close(assembled_linear(case, world, res, "grad_b"), ref["grad_b"], rtol=tol,
                                   atol=tol)


@pytest.mark.parametrize("world", WORLDS)
def test_linear_out_of_range_token_and_overlapping_slices_raise(results, world: int) -> None:
    for r in range(world):
        name, msg = results[world][r]["lin_bad_token"]["error"]
        assert name == "IndexError" and msg.startswith("target value 30 at position (5,) is out of range")
        overlap = results[world][r]["lin_overlap"]
        if world == 1:
            assert "error" not in overlap, overlap.get("error")
        else:
            name, msg = overlap["error"]
            assert name == "ValueError" and "must tile [0, " in msg


def test_linear_docstring_example_on_two_ranks(results) -> None:
    assert results[2][0]["doc_example"] == results[2][1]["doc_example"] == "tensor([-1.0306e-08])"


def _bad(**changes: Any) -> dict[str, Any]:
    args = {"hidden": torch.zeros(4, 3), "weight_shard": torch.zeros(5, 3), "tokens": torch.zeros(4, dtype=torch.long)}
    args.update(changes)
    return args


@pytest.mark.parametrize("kwargs, error, words", [
    (_bad(hidden=[[0.0]]), TypeError, "hidden must be a torch.Tensor"),
    (_bad(hidden=torch.zeros(4, 3, dtype=torch.long)), TypeError, "hidden must have a floating dtype"),
    (_bad(hidden=torch.tensor(1.0)), ValueError, "hidden must have a feature dimension"),
    (_bad(weight_shard=torch.zeros(5, 2)), ValueError, "weight_shard must have shape (V_r, 3)"),
    (_bad(weight_shard=torch.zeros(5, 3, dtype=torch.float64)), TypeError, "weight_shard must have hidden's dtype"),
    (_bad(bias=torch.zeros(4)), ValueError, "bias must have shape (5,)"),
    (_bad(tokens=torch.zeros(4)), TypeError, "tokens must hold integer token ids"),
    (_bad(tokens=torch.zeros(3, dtype=torch.long)), ValueError, "tokens must have shape (4,)"),
    (_bad(chunk_size=0), ValueError, "chunk_size must be >= 1"),
    (_bad(temperature=0.0), ValueError, "temperature"),
    (_bad(return_entropy=1), TypeError, "return_entropy must be a bool"),
    (_bad(ignore_index=1.5), TypeError, "ignore_index"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_linear_bad_arguments_name_the_argument(kwargs: dict[str, Any], error: type, words: str) -> None:
    from logsumexp.torch import vocab_parallel_linear_log_probs

    with pytest.raises(error, match=re.escape(words)):
        vocab_parallel_linear_log_probs(**kwargs)


def test_linear_needs_an_initialised_group() -> None:
    from logsumexp.torch import vocab_parallel_linear_log_probs

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="group needs torch.distributed initialised"):
        vocab_parallel_linear_log_probs(**_bad())


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
