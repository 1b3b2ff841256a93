"""Every kernel family compiles ahead of time for Hopper (sm_90) on a machine without a GPU.

The interpreter runs kernels as Python, so it cannot catch what only the compiler rejects (types of
loop-carried values, constexpr branches, pointer arithmetic).  Triton compiles to PTX and a cubin with its
bundled ptxas without a device, so each kernel family is compiled here, in a subprocess without
TRITON_INTERPRET, for representative option sets (their default launch configurations); the row LSE,
softmax and cross-entropy kernels must use
16-byte vector loads (``ld.global.v4``) when rows are aligned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import triton
    import triton.language as tl
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    from logsumexp.triton import _cross_entropy as ce, _lse, _softmax as sm

    target = GPUTarget("cuda", 90, 32)
    X = "*bf16"
    def build(fn, sig, const, warps=8):
        # as the launcher specialises a V = 128256 problem: pointers 16-byte aligned, row strides and row
        # length multiples of 16 (an odd V gets masked scalar loads: rows are then misaligned anyway)
        attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]]
                 for k, v in sig.items() if v.startswith("*") or k.startswith("stride_") or k == "n_cols"}
        sig = dict(sig, **{k: "constexpr" for k in const})
        k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs), target=target,
                           options={"num_warps": warps})
        return k.asm["ptx"]

    F32 = dict(ACC=tl.float32)
    out = {}
    out["lse_fwd"] = build(_lse._lse_fwd_kernel, dict(X=X, stride_x="i64", LSE=X, M_OUT="*fp32", S_OUT="*fp32",
                           n_cols="i32"), dict(F32, BLOCK=8192, STAGES=None), warps=4)
    build(_lse._lse_fwd_kernel, dict(X=X, stride_x="i64", LSE=X, M_OUT="*fp32", S_OUT="*fp32", n_cols="i32"),
          dict(F32, BLOCK=8192, STAGES=3), warps=4)  # the pipelined variant the benchmark sweeps
    build(_lse._lse_bwd_kernel, dict(X=X, stride_x="i64", G=X, M="*fp32", S="*fp32", DX=X, stride_dx="i64",
          n_cols="i32"), dict(F32, BLOCK=4096), warps=4)
    build(_lse._lse_fwd_kernel, dict(X="*fp64", stride_x="i64", LSE="*fp64", M_OUT="*fp64", S_OUT="*fp64",
          n_cols="i32"), dict(ACC=tl.float64, BLOCK=1024, STAGES=None), warps=4)
    for log in (False, True):
        ptx = build(sm._softmax_fwd_kernel, dict(X=X, stride_x="i64", Y=X, stride_y="i64", n_rows="i32",
                    n_cols="i32"), dict(F32, LOG=log, BLOCK=16384), warps=16)
        out["softmax_fwd"] = out.get("softmax_fwd", ptx)
        build(sm._softmax_bwd_kernel, dict(Y=X, stride_y="i64", G=X, stride_g="i64", DX=X, stride_dx="i64",
              n_cols="i32"), dict(F32, LOG=log, BLOCK=4096), warps=4)
    ce_sig = dict(X=X, stride_x="i64", DX=X, stride_dx="i64", T="*i64", stride_t="i64", W="*fp32",
                  LOSS="*fp32", LSE="*fp32", SCALE="*fp32", stride_scale="i32", n_rows="i32", n_cols="i32",
                  ignore_index="i32", eps="fp32", eps_lo="fp32", z_loss="fp32", z_loss_lo="fp32", cap="fp32",
                  cap_lo="fp32")
    names = ("HAS_WEIGHT", "PROB_TARGET", "HAS_SMOOTHING", "HAS_ZLOSS", "HAS_SOFTCAP", "COMPUTE_GRAD")
    for flags in ((0, 0, 0, 0, 0, 1), (1, 0, 1, 1, 1, 1), (1, 1, 1, 1, 0, 1), (0, 0, 0, 0, 0, 0)):
        sig = dict(ce_sig, T="*fp32" if flags[1] else "*i64")
        ptx = build(ce._ce_kernel, sig, dict(zip(names, map(bool, flags)), **F32, BLOCK=8192))
        out["ce_plain"] = out.get("ce_plain", ptx)
    build(ce._scale_rows_kernel, dict(G=X, stride_g="i64", S="*fp32", stride_s="i32", n_cols="i32"),
          dict(BLOCK=4096), warps=4)
    build(ce._lse_grad_add_kernel, dict(X=X, stride_x="i64", DX=X, stride_dx="i64", LSE="*fp32", G_LSE="*fp32",
          n_cols="i32", cap="fp32", cap_lo="fp32"), dict(F32, HAS_SOFTCAP=True, BLOCK=4096), warps=4)
    json.dump({k: ("ld.global.v4" in v) for k, v in out.items()}, sys.stdout)
    """
)


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    vector_loads = json.loads(proc.stdout.strip().splitlines()[-1])
    assert vector_loads == {"lse_fwd": True, "softmax_fwd": True, "ce_plain": True}
