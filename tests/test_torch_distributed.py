"""``logsumexp.torch.vocab_parallel_cross_entropy`` on the gloo backend, with 2 and 3 processes.

Starting a process costs seconds here (importing torch), so the processes are started once for the
whole file: three workers, each this file run as a script
(``python test_torch_distributed.py worker RANK STORE OUT``). They run every case of ``CASES`` and
``ERROR_CASES`` in order, first as the world of 3 (default ``group=None``), then ranks 0 and 1 as a
subgroup of 2 (passed as ``group=``), and each saves what it got (loss, gradient of its slice, LSE,
the collectives it made, or the error it raised) to ``OUT/rank{RANK}.pt``. The tests below compare
those results with single-process references computed here in float64 on the concatenated logits:
``torch.nn.functional.cross_entropy`` where it has the option, a written-out formula for z-loss,
softcap and num_items, and ``logsumexp.torch.cross_entropy`` on top.

Rendezvous goes through a ``FileStore`` in a temporary directory and gloo is pinned to the
loopback interface (``GLOO_SOCKET_IFNAME=lo``): nothing leaves the machine.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the vocab-parallel loss is part of the torch face")
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

WORLDS = (2, 3)
V = 30  # divisible by 2 and 3: the even layout works for both world sizes
TOL = 1e-12  # float64: loss and gradient against the single-process reference
WORKER_TIMEOUT_S = (
    240  # whole run of one world; the gloo timeout below ends a hung collective first
)
COLLECTIVES = (
    "all_gather_single",
    "all_gather_into_tensor",
    "all_gather",
    "all_reduce",
    "broadcast",
    "reduce_scatter_tensor",
    "all_to_all_single",
    "reduce",
    "gather",
    "scatter",
)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One call of the loss, made on every rank; the data are a function of the name and world."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    layout: str = (
        "even"  # even | uneven | permuted (slices not in rank order) | empty (a 0-wide rank)
    )
    n: int = 12
    lead: tuple[int, ...] = ()  # extra leading dimensions: target (*lead, n)
    dtype: str = "float64"
    weight: bool = False
    ignore: str = "some"  # none | some | all
    special: str | None = None  # confident | confident_f32 | pm1000 | tie | plus_inf | minus_inf
    lse_grad: bool = False  # also back-propagate through the returned LSE
    dp: str | None = (
        None  # num_items_group: "split" (TP size 1, DP = world) or "same" (TP = DP = world)
    )
    error: tuple[type, str] | None = None  # expected exception type and message fragment
    tamper: str | None = None  # make the ranks disagree: target | option


CASES = [
    Case("mean_even"),
    Case("mean_uneven", layout="uneven"),
    Case("mean_permuted_slices", layout="permuted"),
    Case("mean_empty_slice", layout="empty"),
    Case("sum", {"reduction": "sum"}, layout="uneven"),
    Case("none_3d", {"reduction": "none"}, lead=(2,), n=9),
    Case("no_ignored_rows", ignore="none"),
    Case("weight", weight=True, layout="uneven"),
    Case("weight_none", {"reduction": "none"}, weight=True),
    Case("smoothing", {"label_smoothing": 0.1}),
    Case("smoothing_uneven", {"label_smoothing": 0.25}, layout="permuted"),
    Case("smoothing_one", {"label_smoothing": 1.0}, layout="uneven"),
    Case("smoothing_weight", {"label_smoothing": 0.2}, weight=True, layout="uneven"),
    Case("smoothing_weight_sum", {"label_smoothing": 0.3, "reduction": "sum"}, weight=True),
    Case("ignore_index_is_a_class", {"ignore_index": 3, "label_smoothing": 0.1}),
    Case("all_ignored_mean", ignore="all"),
    Case("all_ignored_sum", {"reduction": "sum", "label_smoothing": 0.1}, ignore="all"),
    Case("all_ignored_none", {"reduction": "none", "z_loss": 1e-2}, ignore="all", weight=True),
    Case("z_loss", {"z_loss": 1e-3}, layout="uneven"),
    Case("softcap", {"softcap": 2.5}, layout="permuted"),
    Case("num_items", {"num_items": 7}),
    Case("num_items_tensor", {"num_items": torch.tensor(5.0, dtype=torch.float64)}, weight=True),
    Case(
        "all_options",
        {"label_smoothing": 0.15, "z_loss": 2e-3, "softcap": 3.0, "ignore_index": -1},
        layout="uneven",
        weight=True,
        lead=(3,),
        n=5,
    ),
    Case(
        "all_options_sum_lse",
        {
            "label_smoothing": 0.05,
            "z_loss": 1e-2,
            "softcap": 4.0,
            "reduction": "sum",
            "return_lse": True,
        },
        layout="permuted",
        weight=True,
        lse_grad=True,
    ),
    Case("return_lse_mean", {"return_lse": True}, layout="empty", lse_grad=True),
    Case("confident", {"reduction": "none"}, special="confident", ignore="none", n=4),
    Case(
        "confident_float32",
        {"reduction": "none"},
        special="confident_f32",
        ignore="none",
        n=4,
        dtype="float32",
    ),
    Case("pm1000_float32", {"reduction": "sum"}, special="pm1000", ignore="none", n=4, dtype="float32"),
    Case("tie_across_ranks", {"reduction": "none"}, special="tie", ignore="none", n=4),
    Case("plus_inf_on_two_ranks", {"reduction": "none"}, special="plus_inf", ignore="none", n=4),
    Case("minus_inf_slice", {"reduction": "none"}, special="minus_inf", ignore="none", n=4),
    Case("float32", {"label_smoothing": 0.1, "z_loss": 1e-3}, dtype="float32", layout="uneven"),
    Case("bfloat16", {"softcap": 5.0}, dtype="bfloat16", weight=True),
    Case("dp_split", dp="split"),
    Case(
        "dp_split_weight_smoothing",
        {"label_smoothing": 0.1, "z_loss": 1e-3},
        dp="split",
        weight=True,
    ),
    Case("dp_same_group", dp="same", layout="uneven"),
    Case("weight_requires_grad", weight=True),
]

ERROR_CASES = [
    Case(
        "err_target_too_large",
        special="target_too_large",
        error=(IndexError, "target value 30 at position (5,)"),
    ),
    Case(
        "err_target_negative",
        lead=(2,),
        n=6,
        special="target_negative",
        error=(IndexError, "target value -7 at position (1, 2)"),
    ),
    Case(
        "err_uneven_without_vocab_start",
        layout="uneven_default",
        error=(ValueError, "uneven widths"),
    ),
    Case("err_overlapping_slices", layout="overlap", error=(ValueError, "must tile [0,")),
    Case(
        "err_target_differs",
        tamper="target",
        error=(ValueError, "target must be the same on every rank"),
    ),
    Case(
        "err_option_differs",
        tamper="option",
        error=(ValueError, "label_smoothing must be the same on every rank"),
    ),
    Case(
        "err_probability_target",
        special="prob_target",
        error=(TypeError, "target must hold integer class indices"),
    ),
    Case("err_target_shape", special="target_shape", error=(ValueError, "target must have shape")),
    Case(
        "err_weight_length",
        special="short_weight",
        weight=True,
        error=(ValueError, "weight must have one entry per class"),
    ),
    Case(
        "err_num_items_group_sum",
        {"reduction": "sum"},
        dp="same",
        error=(ValueError, "needs reduction='mean'"),
    ),
    Case("err_num_items_and_group", {"num_items": 3}, dp="same", error=(ValueError, "not both")),
    Case(
        "err_bad_smoothing",
        {"label_smoothing": 1.5},
        error=(ValueError, "label_smoothing must be in [0, 1]"),
    ),
    Case(
        "err_bad_group",
        special="bad_group",
        error=(TypeError, "group must be a torch.distributed ProcessGroup"),
    ),
    Case(
        "err_negative_vocab_start",
        special="negative_start",
        error=(ValueError, "vocab_start must be >= 0"),
    ),
    Case(
        "err_bool_vocab_start",
        special="bool_start",
        error=(TypeError, "vocab_start must be an int"),
    ),
]

ALL_CASES = CASES + ERROR_CASES


# --------------------------------------------------------------------------- data (worker and parent)


def slices(case: Case, world: int) -> list[tuple[int, int]]:
    """(vocab_start, width) of each rank."""
    if case.layout in ("even", "overlap"):
        w = V // world
        return [(0 if case.layout == "overlap" else r * w, w) for r in range(world)]
    widths = {
        "uneven": {2: [11, 19], 3: [7, 13, 10]},
        "uneven_default": {2: [11, 19], 3: [7, 13, 10]},
        "permuted": {2: [11, 19], 3: [7, 13, 10]},
        "empty": {2: [0, 30], 3: [12, 0, 18]},
    }[case.layout][world]
    starts = [sum(widths[:r]) for r in range(world)]
    out = list(zip(starts, widths, strict=True))
    return out[::-1] if case.layout == "permuted" else out


def make_data(case: Case, world: int) -> dict[str, Any]:
    """Global float64 logits (*lead, n, V), target, weight and the per-rank slices."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{case.name}/{world}".encode()))
    lay = slices(case, world)
    if case.dp == "split":
        lay = [(0, V)] * world  # every rank holds the whole vocabulary of its own batch
    n_total = case.n * (world if case.dp == "split" else 1)
    ii = case.kwargs.get("ignore_index", -100)
    x = torch.randn(*case.lead, n_total, V, generator=g, dtype=torch.float64) * 3.0
    t = torch.randint(0, V, (*case.lead, n_total), generator=g)
    flat_t = t.view(-1)
    # Targets on both edges of every slice, and on the first and last class.
    edges = [c for s, w in slices(case, world) if w for c in (s, s + w - 1)] + [0, V - 1]
    flat_t[: len(edges)] = torch.tensor(edges[: flat_t.numel()])
    if ii >= 0:
        flat_t[len(edges) : len(edges) + 2] = ii  # ignored rows whose target is also a class index
    if case.ignore == "some":
        flat_t[-2:] = ii
    elif case.ignore == "all":
        flat_t[:] = ii
    xf = x.view(-1, V)
    s1 = slices(case, world)[1 % world][0]  # first class of rank 1's slice
    if case.special in ("confident", "confident_f32"):
        big = 20.0 if case.special == "confident_f32" else 40.0
        xf[:] = 0.0
        for i in range(xf.shape[0]):
            c = (s1 + 3 * i) % V
            xf[i, c] = big
            flat_t[i] = c
    elif case.special == "pm1000":  # the seed's [±1000]: three maxima at 1000 on different ranks
        xf[:] = -1000.0
        for i in range(xf.shape[0]):
            c = (s1 + i) % V
            xf[i, [0, c, V - 1]] = 1000.0
            flat_t[i] = c
    elif case.special == "tie":
        xf[:] = 0.0
        xf[:, 0] = 40.0  # rank 0's slice
        xf[:, V - 1] = 40.0  # the last rank's slice
        flat_t[:] = torch.tensor([0, V - 1, 5, V - 1])
    elif case.special == "plus_inf":
        xf[0, 0] = xf[0, V - 1] = math.inf  # on the first and the last slice
        flat_t[0] = V - 1
    elif case.special == "minus_inf":
        w0 = slices(case, world)[0][1]
        xf[0, :w0] = -math.inf  # rank 0's whole slice
        xf[1, 4] = -math.inf
        flat_t[:2] = torch.tensor([V - 1, w0])
    weight = None
    if case.weight:
        weight = torch.rand(V, generator=g, dtype=torch.float64) + 0.25
        weight[7] = 0.0  # a class of weight 0
    return {"x": x, "t": t, "weight": weight, "slices": lay}


def call_kwargs(case: Case) -> dict[str, Any]:
    return dict(case.kwargs)


# --------------------------------------------------------------------------- worker


def _counting(counts: dict[str, int]):
    """Wrap the torch.distributed collectives so that each call is counted."""
    originals = {}
    for name in COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None:
            continue
        originals[name] = fn

        def wrapped(*args, __fn=fn, __name=name, **kwargs):
            counts[__name] = counts.get(__name, 0) + 1
            return __fn(*args, **kwargs)

        setattr(dist, name, wrapped)
    return originals


def _run_case(case: Case, rank: int, world: int, groups: dict[str, Any]) -> dict[str, Any]:
    from logsumexp.torch.distributed import vocab_parallel_cross_entropy

    d = make_data(case, world)
    start, width = d["slices"][rank]
    dtype = getattr(torch, case.dtype)
    x, t = d["x"], d["t"]
    if case.dp == "split":  # this rank's block of rows of the global batch
        x = x.chunk(world, dim=-2)[rank]
        t = t.chunk(world, dim=-1)[rank]
    shard = x[..., start : start + width].to(dtype).clone().requires_grad_()
    kw = call_kwargs(case)
    group = groups["tp"]
    vocab_start = start if case.layout in ("uneven", "permuted", "empty", "overlap") else None
    if case.dp == "split":
        group, vocab_start = groups["single"], None
        kw["num_items_group"] = groups["tp"] if groups["tp"] is not None else dist.group.WORLD
    elif case.dp == "same":
        kw["num_items_group"] = groups["tp"] if groups["tp"] is not None else dist.group.WORLD
    weight = d["weight"]
    if case.name == "weight_requires_grad":
        weight = weight.clone().requires_grad_()
    target = t
    if case.special == "target_too_large":
        target = t.clone()
        target.view(-1)[5] = V
    elif case.special == "target_negative":
        target = t.clone()
        target[1, 2] = -7
    elif case.special == "prob_target":
        target = torch.softmax(x, dim=-1)
    elif case.special == "target_shape":
        target = t[:-1]
    elif case.special == "short_weight":
        weight = weight[:-1]
    elif case.special == "bad_group":
        group = "world"
    elif case.special == "negative_start":
        vocab_start = -1
    elif case.special == "bool_start":
        vocab_start = True
    if case.tamper == "target" and rank == world - 1:
        target = t.clone()
        target.view(-1)[4] = (target.view(-1)[4] + 1) % V
    if case.tamper == "option" and rank == 0:
        kw["label_smoothing"] = 0.1

    counts_fwd: dict[str, int] = {}
    counts_bwd: dict[str, int] = {}
    originals = _counting(counts_fwd)
    try:
        out = vocab_parallel_cross_entropy(shard, target, group, vocab_start, weight=weight, **kw)
    except Exception as e:  # recorded; the parent checks the type and the message
        return {"error": (type(e).__name__, str(e)), "fwd": counts_fwd}
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)
    loss, lse = out if kw.get("return_lse") else (out, None)
    objective = loss.sum()
    if case.lse_grad:
        objective = objective + 0.3 * lse.sum()
    originals = _counting(counts_bwd)
    try:
        objective.backward()
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)
    res = {
        "loss": loss.detach(),
        "grad": shard.grad,
        "fwd": counts_fwd,
        "bwd": counts_bwd,
        "weight_grad_is_none": weight is None or weight.grad is None,
    }
    if lse is not None:
        res["lse"] = lse.detach()
    return res


def worker(rank: int, store: str, out: str) -> None:
    """One of max(WORLDS) processes: the world of 3 runs every case, then ranks 0 and 1 again
    as a subgroup of 2 (passed as ``group=``; the world runs with the default group=None)."""
    import datetime
    import warnings

    import logsumexp.torch._cpu_impl as kernels

    warnings.simplefilter("error")  # as pytest's filterwarnings = error, for the worker's own calls
    torch.set_num_threads(1)
    # Chunks of 2 rows (width 15) down to 1 row (width 30): the row-chunk loops of forward and
    # backward cross chunk boundaries in every case, as they do on real-sized shards.
    assert hasattr(kernels, "CHUNK_ELEMENTS"), "the torch face renamed its chunk size"
    kernels.CHUNK_ELEMENTS = 32
    size = max(WORLDS)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=size,
        timeout=datetime.timedelta(seconds=60),
    )
    # new_group is collective: every process creates every group, in the same order.
    subgroups = {w: dist.new_group(list(range(w))) for w in WORLDS if w != size}
    singles = [dist.new_group([r]) for r in range(size)]  # tensor-parallel groups of size 1
    results: dict[int, dict[str, Any]] = {}
    for world in sorted(WORLDS, reverse=True):
        if rank >= world:
            continue
        groups = {"tp": subgroups.get(world), "single": singles[rank]}
        results[world] = {}
        for case in ALL_CASES:
            results[world][case.name] = _run_case(case, rank, world, groups)
            # The parent prints this log when a worker fails: it shows where the ranks parted ways.
            got = results[world][case.name].get("error", "")
            print(f"world {world} rank {rank}: {case.name} {got}", flush=True)
    if rank == size - 1:  # not a member of the subgroup of ranks 0 .. size-2: a local ValueError
        from logsumexp.torch.distributed import vocab_parallel_cross_entropy

        try:
            vocab_parallel_cross_entropy(
                torch.zeros(2, 3), torch.tensor([0, 1]), subgroups[size - 1]
            )
        except ValueError as e:
            results[size]["err_not_a_member"] = {"error": ("ValueError", str(e))}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------- parent: run the workers


@pytest.fixture(scope="module")
def results() -> dict[int, list[dict[str, Any]]]:
    """Run the workers once; {world: [results of rank 0, rank 1, ...]}."""
    size = max(WORLDS)
    with tempfile.TemporaryDirectory(prefix="vpce-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "worker", str(r), str(tmp / "store"), str(tmp)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for r in range(size)
        ]
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


# --------------------------------------------------------------------------- references


def reference(case: Case, world: int, *, face: bool = False) -> dict[str, Any]:
    """Single-process loss, gradient of the full logits and LSE, in float64.

    ``face``: ``logsumexp.torch.cross_entropy``; otherwise ``F.cross_entropy`` where it has every
    option of the case, else the written-out formula around ``F.cross_entropy(reduction="none")``:
    ``Σ_rows (ce_row + z·LSE²·counted) / den``, ``z`` the softcapped logits, den = num_items or Σ w_t.
    """
    d = make_data(case, world)
    dtype = getattr(torch, case.dtype)
    x = d["x"].to(dtype).to(torch.float64).requires_grad_()
    t, weight = d["t"], d["weight"]
    kw = call_kwargs(case)
    red = kw.get("reduction", "mean")
    ii = kw.get("ignore_index", -100)
    eps = kw.get("label_smoothing", 0.0)
    x2, t1 = x.reshape(-1, V), t.reshape(-1)
    cap = kw.get("softcap")
    z = cap * torch.tanh(x2 / cap) if cap else x2
    lse = torch.logsumexp(z, dim=-1)
    if face:
        import logsumexp.torch as lt

        loss = lt.cross_entropy(
            x2,
            t1,
            weight,
            ignore_index=ii,
            reduction=red,
            label_smoothing=eps,
            z_loss=kw.get("z_loss", 0.0),
            softcap=cap,
            num_items=kw.get("num_items"),
        )
        loss = loss.reshape(t.shape) if red == "none" else loss
    elif not (kw.get("z_loss") or cap or "num_items" in kw or case.ignore == "all" or case.dp):
        loss = F.cross_entropy(x2, t1, weight, ignore_index=ii, reduction=red, label_smoothing=eps)
        loss = loss.reshape(t.shape) if red == "none" else loss
    else:
        rows = F.cross_entropy(
            z, t1, weight, ignore_index=ii, reduction="none", label_smoothing=eps
        )
        valid = t1 != ii
        rows = rows + kw.get("z_loss", 0.0) * lse.square() * valid
        if red == "none":
            loss = rows.reshape(t.shape)
        elif red == "sum":
            loss = rows.sum()
        else:
            w_t = (
                torch.ones(V, dtype=torch.float64)[t1.clamp(0)]
                if weight is None
                else weight[t1.clamp(0)]
            )
            den = kw.get("num_items") or (w_t * valid).sum()
            if case.dp == "same":
                den = den * world  # every rank of the world counts the same targets
            loss = rows.sum() / den if den > 0 else rows.sum() * 0.0
    objective = loss.sum() + (0.3 * lse.sum() if case.lse_grad else 0.0)
    (grad,) = torch.autograd.grad(objective, x)
    return {"loss": loss.detach(), "grad": grad, "lse": lse.detach().reshape(t.shape), "data": d}


def assembled_grad(case: Case, world: int, res: list[dict[str, Any]]) -> torch.Tensor:
    """The ranks' gradient slices put back in vocabulary order, as float64."""
    lay = slices(case, world)
    parts = sorted(((lay[r][0], res[r]["grad"]) for r in range(world)), key=lambda p: p[0])
    return torch.cat([g.to(torch.float64) for _, g in parts], dim=-1)


def tolerances(case: Case) -> tuple[tuple[float, float], tuple[float, float]]:
    """(rtol, atol) of the loss and of the gradient: float64 exact to 1e-12; float32 and
    bfloat16 (computed in float32, gradient rounded to the input dtype) as their rounding allows."""
    return {
        "float64": ((TOL, TOL), (TOL, TOL)),
        "float32": ((1e-6, 1e-9), (1e-5, 1e-9)),
        "bfloat16": ((1e-6, 1e-9), (2**-8, 1e-6)),
    }[case.dtype]


def ranks(results: dict, world: int, case: Case | str) -> list[dict[str, Any]]:
    name = case if isinstance(case, str) else case.name
    return [results[world][r][name] for r in range(world)]


def _close(
    actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, what: str
) -> None:
    torch.testing.assert_close(
        actual.to(torch.float64),
        expected.to(torch.float64),
        rtol=rtol,
        atol=atol,
        msg=lambda m: f"{what}: {m}",
    )


PLAIN = [c for c in CASES if c.special is None and c.dp != "split"]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", PLAIN, ids=lambda c: c.name)
def test_matches_single_process(results, case: Case, world: int) -> None:
    res = ranks(results, world, case)
    ref = reference(case, world)
    tol_loss, tol_grad = tolerances(case)
    for r in range(world):
        assert "error" not in res[r], res[r].get("error")
        _close(res[r]["loss"], ref["loss"], *tol_loss, f"loss on rank {r}")
    _close(assembled_grad(case, world, res), ref["grad"], *tol_grad, "gradient")
    if "lse" in res[0]:
        _close(res[0]["lse"], ref["lse"], *tol_loss, "lse")


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize(
    "case", [c for c in PLAIN if c.dtype == "float64" and not c.dp], ids=lambda c: c.name
)
def test_matches_torch_face(results, case: Case, world: int) -> None:
    """The same loss as ``logsumexp.torch.cross_entropy`` on the whole vocabulary (z-loss...)."""
    pytest.importorskip("logsumexp.torch", reason="the torch face")
    ref = reference(case, world, face=True)
    res = ranks(results, world, case)
    _close(res[0]["loss"], ref["loss"], TOL, TOL, "loss")
    if not case.lse_grad:
        _close(assembled_grad(case, world, res), ref["grad"], TOL, TOL, "gradient")


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_same_result_on_every_rank_and_collectives(results, case: Case, world: int) -> None:
    """Each rank merges the same gathered states in the same order: bitwise equal losses.

    Forward: exactly one all_gather (plus one all_reduce over num_items_group); backward: none.
    """
    res = ranks(results, world, case)
    for r in range(world):
        assert torch.equal(res[r]["loss"], res[0]["loss"]) or case.dp == "split"
        expected = (
            {"all_gather_single": 1}
            if hasattr(dist, "all_gather_single")
            else {"all_gather_into_tensor": 1}
        )
        if case.dp:
            expected["all_reduce"] = 1
        assert res[r]["fwd"] == expected
        assert res[r]["bwd"] == {}
        assert sum(res[r]["fwd"].values()) <= 2


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", [c for c in CASES if c.ignore == "all"], ids=lambda c: c.name)
def test_all_ignored_gives_zero_loss_and_gradient(results, case: Case, world: int) -> None:
    for res in ranks(results, world, case):
        assert not bool(res["loss"].any())
        assert not bool(res["grad"].any())
        assert bool(torch.isfinite(res["grad"]).all())


@pytest.mark.parametrize("world", WORLDS)
def test_confident_prediction_keeps_relative_accuracy(results, world: int) -> None:
    """Target logit 40 among zeros: loss log1p(29 e^-40) ≈ 1.2e-16 (LSE − x_t gives 0 or noise)."""
    case = next(c for c in CASES if c.name == "confident")
    res = ranks(results, world, case)
    loss = res[0]["loss"]
    expected = math.log1p((V - 1) * math.exp(-40.0))
    assert expected < 1e-15
    torch.testing.assert_close(loss, torch.full_like(loss, expected), rtol=4e-16, atol=0.0)
    # Non-target classes: softmax e^-40 / (1 + 29 e^-40), to full relative accuracy. (The target's
    # own gradient p_t − 1 ≈ −1.2e-15 is computed as a difference and is only accurate to 1e-16.)
    grad = assembled_grad(case, world, res)
    others = grad[grad > 0]
    assert others.numel() == case.n * (V - 1)
    p = math.exp(-40.0) / (1 + (V - 1) * math.exp(-40.0))
    torch.testing.assert_close(others, torch.full_like(others, p), rtol=4e-16, atol=0.0)


@pytest.mark.parametrize("world", WORLDS)
def test_confident_prediction_float32(results, world: int) -> None:
    loss = results[world][0]["confident_float32"]["loss"]
    assert loss.dtype == torch.float32
    expected = math.log1p(
        (V - 1) * math.exp(-20.0)
    )  # 5.98e-8, while 1 + 5.98e-8 rounds to 1 in float32
    torch.testing.assert_close(loss, torch.full_like(loss, expected), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("world", WORLDS)
def test_gradient_at_pm1000_keeps_float32_accuracy(results, world: int) -> None:
    """Logits at ±1000 in float32: the softmax in backward is e^{z − M}/s from the global max and
    sum, within 3e-7 of the float64 gradient; formed as e^{z − LSE}, LSE's own rounding (|LSE|·eps,
    6e-5 at 1000) became a relative error of every probability (2e-5)."""
    case = next(c for c in CASES if c.name == "pm1000_float32")
    got = assembled_grad(case, world, ranks(results, world, case))
    want = reference(case, world)["grad"]
    torch.testing.assert_close(got, want, rtol=3e-7, atol=1e-30)


@pytest.mark.parametrize("world", WORLDS)
def test_maximum_tied_across_ranks(results, world: int) -> None:
    """Two maximal logits on different ranks: exactly one is kept out of the global tail."""
    case = next(c for c in CASES if c.name == "tie_across_ranks")
    ref = reference(case, world)
    res = ranks(results, world, case)
    expected = math.log(2.0) + math.log1p((V - 2) * math.exp(-40.0) / 2.0)
    on_max = torch.tensor([True, True, False, True])
    _close(
        res[0]["loss"][on_max], torch.full((3,), expected, dtype=torch.float64), 4e-16, 0.0, "loss"
    )
    _close(res[0]["loss"], ref["loss"], TOL, TOL, "loss")
    _close(assembled_grad(case, world, res), ref["grad"], TOL, TOL, "gradient")


@pytest.mark.parametrize("world", WORLDS)
def test_plus_inf_logits_on_two_ranks_share_the_probability(results, world: int) -> None:
    case = next(c for c in CASES if c.name == "plus_inf_on_two_ranks")
    res = ranks(results, world, case)
    loss, grad = res[0]["loss"], assembled_grad(case, world, res)
    assert loss[0].item() == pytest.approx(math.log(2.0), rel=1e-15)
    expected_row = torch.zeros(V, dtype=torch.float64)
    expected_row[0], expected_row[V - 1] = (
        0.5,
        -0.5,
    )  # softmax 1/2 on both, minus the target's one-hot
    _close(grad[0], expected_row, 0.0, 0.0, "gradient of the +inf row")
    # The other rows are ordinary: F.cross_entropy on them alone.
    d = make_data(case, world)
    x = d["x"][1:].clone().requires_grad_()
    ref = F.cross_entropy(x, d["t"][1:], reduction="none")
    (g,) = torch.autograd.grad(ref.sum(), x)
    _close(loss[1:], ref.detach(), TOL, TOL, "loss")
    _close(grad[1:], g, TOL, TOL, "gradient")


@pytest.mark.parametrize("world", WORLDS)
def test_minus_inf_slice(results, world: int) -> None:
    """A rank whose whole slice is −inf contributes nothing (no inf − inf), gradient 0 there."""
    case = next(c for c in CASES if c.name == "minus_inf_slice")
    res = ranks(results, world, case)
    ref = reference(case, world)
    _close(res[0]["loss"], ref["loss"], TOL, TOL, "loss")
    grad = assembled_grad(case, world, res)
    _close(grad, ref["grad"], TOL, TOL, "gradient")
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", [c for c in CASES if c.dp == "split"], ids=lambda c: c.name)
def test_num_items_group_normalises_over_data_parallel_ranks(
    results, case: Case, world: int
) -> None:
    """TP size 1, DP = world: rank r holds batch block r; the losses add up to the global mean."""
    res = ranks(results, world, case)
    ref = reference(case, world)  # the mean over the whole global batch
    total = sum(r_["loss"] for r_ in res)
    _close(total, ref["loss"], TOL, TOL, "sum of the data-parallel losses")
    grad = torch.cat([r_["grad"] for r_ in res], dim=-2)  # each rank: its rows, whole vocabulary
    _close(grad, ref["grad"], TOL, TOL, "gradient")


@pytest.mark.parametrize("world", WORLDS)
def test_gradient_flows_to_logits_only(results, world: int) -> None:
    for r in range(world):
        assert results[world][r]["weight_requires_grad"]["weight_grad_is_none"]


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_errors_are_raised_on_every_rank(results, case: Case, world: int) -> None:
    kind, fragment = case.error
    for r in range(world):
        got = results[world][r][case.name]
        assert "error" in got, f"rank {r} raised nothing"
        name, message = got["error"]
        assert name == kind.__name__, message
        assert fragment in message


def test_rank_outside_the_group_is_refused(results) -> None:
    got = results[3][2].get("err_not_a_member")
    assert got is not None, "no ValueError for a process outside the group"
    assert "is not a member of group" in got["error"][1]


def test_error_messages_name_the_argument(results) -> None:
    msg = results[2][0]["err_uneven_without_vocab_start"]["error"][1]
    assert "[11, 19]" in msg and "vocab_start" in msg
    msg = results[3][1]["err_target_differs"]["error"][1]
    assert "position (4,)" in msg


# --------------------------------------------------------------------------- without a process group


def test_needs_an_initialised_process_group() -> None:
    from logsumexp.torch.distributed import vocab_parallel_cross_entropy

    if dist.is_available() and dist.is_initialized():
        pytest.skip("this process already has a default process group")
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("logits", "target", "error", "match"),
    [
        ([[0.0]], torch.tensor([0]), TypeError, "logits_shard must be a torch.Tensor"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]), TypeError, "floating dtype"),
        (torch.tensor(1.0), torch.tensor(0), ValueError, "class dimension"),
        (torch.zeros(2, 3), torch.tensor([0.5, 1.0]), TypeError, "integer class indices"),
        (torch.zeros(2, 3), torch.tensor([0, 1, 2]), ValueError, r"target must have shape \(2,\)"),
    ],
)
def test_local_argument_errors(logits, target, error, match) -> None:
    """Checked before any communication (and before the process group is looked at)."""
    from logsumexp.torch.distributed import vocab_parallel_cross_entropy

    with pytest.raises(error, match=match):
        vocab_parallel_cross_entropy(logits, target)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
