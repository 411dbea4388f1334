"""Compiled static Muskingum: the per-reach recursion of RAPID (David et al. 2011) written sequentially,

    I_k(t) = sum_{j -> k} Q_j(t),   Q_k(t) = c3 Q_k(t-1) + c1 I_k(t) + c2 I_k(t-1) + c4 q_k(t),

per step t over the reaches in the schedule's level order (a topological order), the inflow of the downstream
reach accumulated as soon as Q_k(t) is known: one pass per step reads each reach's coefficients and state once.
The adjoint is the same loop in reverse (downstream before upstream, last step first) on the transposed graph,
with the closed-form vector-Jacobian product of :class:`rivergraph.engine.cells.StaticMuskingum`. Driven by
:class:`rivergraph.engine.compiled.CompiledSweep`.
"""
from __future__ import annotations

import numpy as np

from .compiled_base import as_numpy, end_step, grad_row, jit, read_row, send

__all__ = ["StaticKernel"]


@jit
def _static_fwd(c1, c2, c3, c4, down, order, q, t0, t1, Q, I_old, I_new, out, out_mode, out_pos, Qh, Ih, keep,
                row):  # pragma: no cover - compiled
    """Steps t0..t1-1 in place on Q, I_old (sorted; I_new zeroed scratch; row [N] scratch). out_mode 0:
    out[t, order[k]], 1: out[t, k], 2: out[t, j] = Q[out_pos[j]]. keep: Qh[t - t0 + 1], Ih[t - t0 + 1] =
    the state after step t."""
    N = Q.shape[0]
    for t in range(t0, t1):
        read_row(q[t], order, row)
        for k in range(N):
            send(Q, I_new, down, k, c3[k] * Q[k] + c1[k] * I_new[k] + c2[k] * I_old[k] + c4[k] * row[k])
        if keep:
            Qh[t - t0 + 1] = Q
            Ih[t - t0 + 1] = I_new
        end_step(out[t], Q, I_old, I_new, order, out_pos, out_mode)


@jit
def _static_bwd(c1, c2, c3, c4, down, order, q, t0, t1, Qh, Ih, g, g_mode, g_col, carry_s, carry_m, m_bar,
                p_bar, u_bar, want_u, row, grow):  # pragma: no cover - compiled
    """Reverse steps t1-1..t0 (Qh, Ih rows t - t0 = before step t); g_mode as :func:`grad_row`. In place on
    carry_s, carry_m, p_bar, u_bar; m_bar [N + 1] scratch with m_bar[N] = 0; row, grow [N] scratch."""
    N = carry_s.shape[0]
    for t in range(t1 - 1, t0 - 1, -1):
        r = t - t0
        read_row(q[t], order, row)
        grad_row(g, t, g_mode, g_col, order, grow)
        for k in range(N - 1, -1, -1):
            Qb = carry_s[k] + m_bar[down[k]] + grow[k]
            p_bar[0, k] += Qb * Ih[r + 1, k]
            p_bar[1, k] += Qb * Ih[r, k]
            p_bar[2, k] += Qb * Qh[r, k]
            p_bar[3, k] += Qb * row[k]
            m_bar[k] = carry_m[k] + Qb * c1[k]
            carry_m[k] = Qb * c2[k]
            carry_s[k] = Qb * c3[k]
            grow[k] = Qb * c4[k]
        if want_u:
            ut = u_bar[t]
            for k in range(N):
                ut[order[k]] = grow[k]


class StaticKernel:
    """Static Muskingum for :class:`~rivergraph.engine.compiled.CompiledSweep`: one state (Q), parameters
    (c1, c2, c3, c4) [N] in the states' dtype; histories Q and I."""

    SNAPSHOT_SCRATCH = 0
    """Vectors (states' dtype) kept at each checkpoint beside the states (``compiled.snapshot_scratch_bytes``)."""
    INFLOW_HISTORY = True  # the adjoint reads the inflow history

    n_states = 1

    def __init__(self, sched, cell):
        self.cell = cell
        self.down, self.order = as_numpy(sched.down), as_numpy(sched.order)

    def bind(self, q, params, states0):
        self.q = as_numpy(q)
        self.cs = [as_numpy(c.detach().contiguous()) for c in params]
        self.row = np.empty(q.shape[1], dtype=self.q.dtype)
        self.grow = np.empty(q.shape[1], dtype=self.q.dtype)

    @staticmethod
    def parameters(params):
        return tuple(params)

    def history_states(self):
        return (0,)  # Q (then I)

    def forward(self, t0, t1, states, I_old, I_new, out, mode, opos, hist, keep, count):
        Qh, Ih = hist
        _static_fwd(*self.cs, self.down, self.order, self.q, t0, t1, states[0], I_old, I_new, out, mode, opos, Qh,
                    Ih, keep, self.row)

    def backward(self, t0, t1, hist, g, g_mode, g_col, carries, carry_m, m_bar, p_bar, u_bar, want_u):
        Qh, Ih = hist
        _static_bwd(*self.cs, self.down, self.order, self.q, t0, t1, Qh, Ih, g, g_mode, g_col, carries[0], carry_m,
                    m_bar, p_bar, u_bar, want_u, self.row, self.grow)

    def diagnostics(self, I_final, states, I0, states0, params):
        return self.cell.finish(I_final, list(states), I0, states0, [c.detach() for c in params])
