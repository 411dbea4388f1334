"""Compiled linear heat transport (numba, CPU): the :class:`~rivergraph.engine.cells.LinearHeat` recursion

    x_i(t) = sum_{j -> i} a_j(t) x_j(t) + beta_i(t) x_i(t-1) + gamma_i(t)

per step t over the reaches in the schedule's sorted order (a topological order; the forcings a, beta, gamma
[T, N] are in that order already), each reach's emission a_k x_k added to its downstream reach's message as soon
as x_k(t) is known: one pass per step, as the static Muskingum kernel (:mod:`rivergraph.engine.compiled_static`).
The adjoint is the same loop in reverse on the transposed graph, the cell's closed form:

    lam_k(t) = g_k(t) + beta_k(t+1) lam_k(t+1) + a_k(t) lam_down(k)(t)
    dL/da_k(t) = lam_down(k)(t) x_k(t),  dL/dbeta_k(t) = lam_k(t) x_k(t-1),  dL/dgamma_k(t) = lam_k(t)

(the message of step t is read in step t only; the returned final message's cotangent enters at the last step).
The three forcings reach :class:`~rivergraph.engine.compiled.CompiledSweep` stacked, [3, T, N], so their
gradient is one [3, T, N] array. Histories: x only (no message history).
"""
from __future__ import annotations

import numpy as np

from .compiled_base import as_numpy, end_step, grad_row, jit

__all__ = ["HeatKernel"]


@jit
def _heat_fwd(u, down, order, t0, t1, X, I_old, I_new, out, out_mode, out_pos, Xh,
              keep):  # pragma: no cover - compiled
    """Steps t0..t1-1 in place on X (sorted), I_old, I_new (the messages; I_new zeroed scratch); u [3, T, N]
    the forcings a, beta, gamma; keep: Xh[t - t0 + 1] = x after step t."""
    N = X.shape[0]
    for t in range(t0, t1):
        a, beta, gamma = u[0, t], u[1, t], u[2, t]
        for k in range(N):
            xk = I_new[k] + beta[k] * X[k] + gamma[k]
            X[k] = xk
            dk = down[k]
            if dk < N:
                I_new[dk] += a[k] * xk
        if keep:
            Xh[t - t0 + 1] = X
        end_step(out[t], X, I_old, I_new, order, out_pos, out_mode)


@jit
def _heat_bwd(u, down, order, t0, t1, Xh, g, g_mode, g_col, carry_s, carry_m, m_bar, u_bar, want_u,
              grow):  # pragma: no cover - compiled
    """Reverse steps t1-1..t0 (Xh rows t - t0 = x before step t); in place on carry_s (the cotangent of x(t-1)),
    carry_m (of the final message, spent at the last step), u_bar [3, T, N]; m_bar [N + 1] scratch, m_bar[N] = 0."""
    N = carry_s.shape[0]
    for t in range(t1 - 1, t0 - 1, -1):
        r = t - t0
        grad_row(g, t, g_mode, g_col, order, grow)
        a, beta = u[0, t], u[1, t]
        x_new, x_old = Xh[r + 1], Xh[r]
        for k in range(N - 1, -1, -1):
            md = m_bar[down[k]]
            lam = carry_s[k] + md * a[k] + grow[k]
            m_bar[k] = lam + carry_m[k]
            carry_m[k] = 0.0
            carry_s[k] = lam * beta[k]
            if want_u:
                u_bar[0, t, k] = md * x_new[k]
                u_bar[1, t, k] = lam * x_old[k]
                u_bar[2, t, k] = lam


class HeatKernel:
    """Linear heat transport for :class:`~rivergraph.engine.compiled.CompiledSweep`: one state (x), the forcings
    (a, beta, gamma) stacked [3, T, N] in the states' dtype, no parameters; history x only."""

    SNAPSHOT_SCRATCH = 0
    """Vectors (states' dtype) kept at each checkpoint beside the states (``compiled.snapshot_scratch_bytes``)."""
    INFLOW_HISTORY = False  # the message of a step is read in that step only
    n_states = 1

    def __init__(self, sched, cell):
        self.cell = cell
        self.down, self.order = as_numpy(sched.down), as_numpy(sched.order)

    @staticmethod
    def parameters(params):
        return tuple(params)

    def bind(self, q, params, states0):
        self.u = as_numpy(q)
        self.grow = np.empty(q.shape[-1], dtype=self.u.dtype)

    def history_states(self):
        return (0,)

    def forward(self, t0, t1, states, I_old, I_new, out, mode, opos, hist, keep, count):
        _heat_fwd(self.u, self.down, self.order, t0, t1, states[0], I_old, I_new, out, mode, opos, hist[0], keep)

    def backward(self, t0, t1, hist, g, g_mode, g_col, carries, carry_m, m_bar, p_bar, u_bar, want_u):
        _heat_bwd(self.u, self.down, self.order, t0, t1, hist[0], g, g_mode, g_col, carries[0], carry_m, m_bar, u_bar,
                  want_u, self.grow)

    def diagnostics(self, I_final, states, I0, states0, params):
        return self.cell.finish(I_final, list(states), I0, states0, list(params))

