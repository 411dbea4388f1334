"""A linear recursion on the river graph, swept on the wavefront schedule, with a hand-written adjoint.

    x_i(t) = sum_{j -> i} a_j(t) x_j(t) + beta_i(t) x_i(t-1) + gamma_i(t),   x_i(-1) = x0_i

``a_j(t)`` is the weight of reach j's value in its (single) downstream reach at the same step (0 for
outlets). This is the structure of implicit upwind transport of a tracer (here heat) on the routed water:
with non-negative weights summing to <= 1 per reach, x(t) is a convex combination of its sources.

The forward pass runs on the anti-diagonals of :class:`rivergraph.engine.Schedule` (reach i at step t
is computed on diagonal t + level_i; all its dependencies lie on earlier diagonals), one scatter-sum
message per diagonal, as the discharge router. The reverse pass is the adjoint recursion on the
transposed graph (each reach has one downstream, so the transposed message is a gather):

    lam_j(t) = g_j(t) + beta_j(t+1) lam_j(t+1) + a_j(t) lam_down(j)(t)
    dL/da_j(t) = lam_down(j)(t) x_j(t),  dL/dbeta_i(t) = lam_i(t) x_i(t-1),  dL/dgamma_i(t) = lam_i(t),
    dL/dx0_i = beta_i(0) lam_i(0).

Memory: the inputs and the output [T, N]; no autograd graph per step.
"""
from __future__ import annotations

import torch

from .schedule import Schedule

__all__ = ["linear_wavefront"]


class _LinearWavefront(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, beta, gamma, x0, sched):
        T, N = gamma.shape
        hist = gamma.new_empty(T + 1, N)  # hist[0] = x0, hist[t + 1] = x(t)
        hist[0] = x0
        hf = hist.view(-1)
        af, bf, gf = a.detach().reshape(-1), beta.detach().reshape(-1), gamma.detach().reshape(-1)
        x = x0.detach().clone()
        msg = gamma.new_zeros(N)
        base = sched.flat_base()
        for d, _, _, a_, b_, sa, sb in sched.diagonals(T):
            idx = base[a_:b_] + d * N
            if sb > sa:
                up = af.index_select(0, base[sa:sb] + (d - 1) * N) * x[sa:sb]
                sched.send_down(msg, up, a_, b_, sa, sb)
                xn = msg[a_:b_] + bf.index_select(0, idx) * x[a_:b_] + gf.index_select(0, idx)
            else:
                xn = bf.index_select(0, idx) * x[a_:b_] + gf.index_select(0, idx)
            x[a_:b_] = xn
            hf.scatter_(0, idx + N, xn)
        ctx.sched = sched
        ctx.save_for_backward(a, beta, hist)
        return hist[1:]

    @staticmethod
    def backward(ctx, g):
        a, beta, hist = ctx.saved_tensors
        sched = ctx.sched
        T, N = a.shape
        af, bf, hf = a.reshape(-1), beta.reshape(-1), hist.reshape(-1)
        gf = g.contiguous().reshape(-1)
        ga, gb, gg = (torch.zeros(T * N, dtype=a.dtype, device=a.device) for _ in range(3))
        lam = a.new_zeros(N + 1)  # lam[N] = 0: the "downstream" of outlets
        carry = a.new_zeros(N)  # beta(t+1) lam(t+1)
        base = sched.flat_base()
        for d, _, _, a_, b_, _, _ in sched.diagonals(T, reverse=True):
            if a_ == b_:
                continue
            idx = base[a_:b_] + d * N
            lam_dn = lam.index_select(0, sched.down[a_:b_])
            lk = gf.index_select(0, idx) + carry[a_:b_] + af.index_select(0, idx) * lam_dn
            ga.scatter_(0, idx, lam_dn * hf.index_select(0, idx + N))
            gb.scatter_(0, idx, lk * hf.index_select(0, idx))
            gg.scatter_(0, idx, lk)
            carry[a_:b_] = bf.index_select(0, idx) * lk
            lam[a_:b_] = lk
        return ga.view(T, N), gb.view(T, N), gg.view(T, N), carry, None


def linear_wavefront(sched: Schedule, a: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor,
                     x0: torch.Tensor) -> torch.Tensor:
    """Solve the recursion of the module docstring; every tensor in the schedule's sorted reach order.

    Args:
        sched: the network's wavefront schedule.
        a: [T, N] weight of each reach's value in its downstream reach (ignored for outlets).
        beta: [T, N] weight of the reach's own previous value.
        gamma: [T, N] source term.
        x0: [N] value before the first step.
    Returns:
        x [T, N] (sorted order), differentiable in a, beta, gamma and x0.
    """
    T, N = gamma.shape
    for name, v in (("a", a), ("beta", beta)):
        if v.shape != (T, N):
            raise ValueError(f"'{name}' has shape {tuple(v.shape)}, expected {(T, N)}")
    if x0.shape != (N,) or N != sched.n:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}, expected ({sched.n},)")
    return _LinearWavefront.apply(a.contiguous(), beta.contiguous(), gamma.contiguous(), x0, sched)
