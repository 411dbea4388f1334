"""Compiled Muskingum-Cunge on the power-law channel, forward and adjoint (numba, CPU).

Per step t, the reaches in level order (a topological order), each one step of
:func:`rivergraph.physics.muskingum.mc_step` with :func:`rivergraph.physics.channels.power_law_celerity` and
:func:`rivergraph.physics.channels.cunge_K_X`: the 3-point reference flow r = (I(t-1) + I(t) + Q(t-1) + 2q)/3
floored at ``MIN_REFERENCE_FLOW`` (Ponce & Chaganti 1994), the kinematic celerity c clamped to
``CELERITY_BOUNDS``, K = dx/c, Cunge's X = 0.5 (1 - Qr/(T S0 c dx)) clipped to [0, 0.5] and, with positivity,
lowered to min(X, dt/(2K), 1 - dt/(2K)); then the Muskingum update (:func:`compiled_base.muskingum_update`).

The power law in closed form (T = p d^w, e = w + 5/3): d = a_d Qr^(1/e), T = b_t Qr^(w/e), so

    c = e Qr / (T d) = k_c y^2,   Qr / (T S0 dx) = k_u y^5,   y = Qr^(1/(3e))

with per-reach constants k_c = e / (a_d b_t), k_u = 1 / (b_t S0 dx), a_3 = 1/(3e) (:func:`power_law_constants`,
in torch, so that autograd carries their gradients to n, S0, p, w, dx): one log, one exp and two divisions per
reach-step. All arithmetic is float64 whatever the states' dtype (rounded to it where stored); with float32
states the constants are read as float32 (``compiled_base.in_precision``) and y by the short series
(``compiled_math.vexp_f32`` / ``vlog_f32``, 3e-10 relative). The reaches of one level do not depend on each
other: per level, one pass computes their y, a second their Cunge steps (both vectorised by LLVM: unsigned
indices, scalar-only inlined helpers, the arithmetic exp / log of :mod:`rivergraph.engine.compiled_math`), a
third adds their outflows into the downstream inflows; the storage sums of the mass balance are one vectorised
pass per step.

The adjoint (:func:`_mc_bwd`) recomputes each reach-step from the kept Q, S, I histories and applies the chain
rule by hand through r -> Qr -> y -> (c, u) -> (K, X) -> the update, with the clamps' gradients as torch's
(zero where a clamp is active, passed at its bound); it runs downstream before upstream, last step first, on the
transposed graph, per level: the cotangents of Q(t) gathered, the log / exp in one vectorised pass, the rest
in a second (vectorised once LLVM may emit its ~200 runtime alias checks: ``compiled_base`` raises that cap). Ties of the positivity minimum (X exactly dt/(2K)) take one branch where torch.minimum splits the
gradient (a measure-zero case).
"""
from __future__ import annotations

import numpy as np
import torch

from ..physics.channels import CELERITY_BOUNDS, MIN_REFERENCE_FLOW
from .compiled_base import (
    as_numpy,
    end_step,
    grad_row,
    in_precision,
    inline,
    jit,
    jit_with,
    muskingum_update,
    muskingum_update_vjp,
    read_row,
)
from .compiled_math import vexp, vexp_f32, vlog, vlog_f32

__all__ = [
    "MCKernel",
    "carry_back",
    "cunge_reach",
    "cunge_reach_vjp",
    "finish_step",
    "gather_cotangents",
    "power_law_constants",
    "reference_flow",
    "reverse_step",
    "send_level",
    "write_row",
]


def power_law_constants(n, S0, p, w, dx):
    """Per-reach constants (k_c, k_u, a_3) of the power-law channel (module docstring), float64 tensors
    differentiable in Manning's n, slope S0, width coefficient p, width exponent w and length dx:
    a_d = [n (w+1)^(5/3) / (p sqrt(S0))]^(1/e), b_t = p a_d^w (:func:`~rivergraph.physics.channels.power_law_celerity`)."""
    n, S0, p, w, dx = (x.double() for x in (n, S0, p, w, dx))
    e = w + 5.0 / 3.0
    log_ad = (torch.log(n) + 5.0 / 3.0 * torch.log1p(w) - torch.log(p) - 0.5 * torch.log(S0)) / e
    log_bt = torch.log(p) + w * log_ad
    return e * torch.exp(-log_ad - log_bt), torch.exp(-log_bt - torch.log(S0) - torch.log(dx)), 1.0 / (3.0 * e)


@inline
def _channel_vjp(a3_Qr, lq, y, c0, u, c0_bar, u_bar):  # pragma: no cover - compiled
    """The cotangents of (k_c, k_u, a_3, Qr) from those of (c, u) = (k_c y^2, k_u y^5), y = exp(a_3 log Qr);
    a3_Qr = a_3 / Qr."""
    y2 = y * y
    w = 2.0 * c0_bar * c0 + 5.0 * u_bar * u  # y dL/dy
    return c0_bar * y2, u_bar * y2 * y2 * y, w * lq, w * a3_Qr


@inline
def cunge_reach(c0, u, dx, inv_dx, Ii, Io, Qo, So, ql, first, dt, positivity, conservative, c_lo,
                c_hi):  # pragma: no cover - compiled
    """One Muskingum-Cunge reach-step from the channel's celerity c0 (m/s, before its clamp) and
    u = Qr / (T S0 dx) (-): c clamped to [c_lo, c_hi], K = dx / c, X = 0.5 (1 - u / c) clipped to [0, 0.5] and
    lowered for positivity, then the update; returns Q(t), S(t), S(t-1) as used and the intermediates of
    :func:`cunge_reach_vjp`. Shared by every compiled Muskingum-Cunge channel; scalars only (an array argument of
    an inlined helper keeps reference-count calls that stop vectorisation)."""
    c = min(max(c0, c_lo), c_hi)
    ic = 1.0 / c
    K = dx * ic
    Xr = 0.5 - 0.5 * u * ic
    X = min(max(Xr, 0.0), 0.5)
    sel = 0
    h = 0.0
    if positivity:
        h = 0.5 * dt * c * inv_dx  # dt / (2K)
        if h < X:
            X, sel = h, 1
        if 1.0 - h < X:
            X, sel = 1.0 - h, 2
    Pw = K * X
    Rw = K - Pw
    Sp = Pw * Io + Rw * Qo if (first or not conservative) else So
    Qn, Sn, iD = muskingum_update(Pw, Rw, Ii, Io, Qo, Sp, ql, dt, conservative)
    return Qn, Sn, Sp, c, ic, K, Xr, X, sel, h, Pw, Rw, iD


@inline
def cunge_reach_vjp(Qn_bar, Sn_bar, Qn, c0, u, c, ic, K, Xr, X, sel, h, Pw, Rw, iD, dx, inv_dx, Ii, Io, Qo, first, dt,
                    conservative, c_lo, c_hi):  # pragma: no cover - compiled
    """Vector-Jacobian product of :func:`cunge_reach` for the cotangents of Q(t), S(t): returns those of
    (c0, u, dx, I(t), I(t-1), Q(t-1), S(t-1), q); the clamps' gradients as torch's (zero where a clamp is active,
    passed at its bound)."""
    Pb, Rb, Iib, Iob, Qob, Spb, qlb = muskingum_update_vjp(Qn_bar, Sn_bar, Qn, iD, Pw, Rw, Ii, Io, Qo, dt,
                                                           conservative)
    Sob = 0.0
    if conservative:
        if first:  # S(t-1) = P I(t-1) + R Q(t-1)
            Pb += Spb * Io
            Rb += Spb * Qo
            Iob += Spb * Pw
            Qob += Spb * Rw
        else:
            Sob = Spb
    Kb = Pb * X + Rb * (1.0 - X)  # P = K X, R = K (1 - X)
    Xb = K * (Pb - Rb)
    Xrb = Xb if (sel == 0 and Xr >= 0.0 and Xr <= 0.5) else 0.0
    if sel == 1:  # X = h = dt / (2K), dh/dK = -h / K = -h c / dx
        Kb -= Xb * h * c * inv_dx
    elif sel == 2:  # X = 1 - h
        Kb += Xb * h * c * inv_dx
    icb = Kb * dx - 0.5 * u * Xrb  # K = dx / c, Xr = 0.5 - 0.5 u / c
    c0b = -icb * ic * ic if (c0 >= c_lo and c0 <= c_hi) else 0.0
    return c0b, -0.5 * ic * Xrb, Kb * ic, Iib, Iob, Qob, Sob, qlb


@inline
def _reach(kc, ku, y, dx, inv_dx, Ii, Io, Qo, So, ql, first, dt, positivity, conservative, c_lo,
           c_hi):  # pragma: no cover - compiled
    """One power-law reach-step (module docstring) given y = Qr^(a_3): (c0, u) then :func:`cunge_reach`; the
    caller evaluates y, with the vectorisable exp/log in the forward sweep."""
    y2 = y * y
    c0 = kc * y2  # celerity
    u = ku * y2 * y2 * y  # Qr / (T S0 dx)
    return (c0, u, *cunge_reach(c0, u, dx, inv_dx, Ii, Io, Qo, So, ql, first, dt, positivity, conservative, c_lo,
                                c_hi))


@inline
def reference_flow(Ii, Io, Qo, ql, q_min):  # pragma: no cover - compiled
    """The 3-point reference flow r and its floored value Qr (m3/s)."""
    r = (Io + Ii + Qo + 2.0 * ql) / 3.0
    return r, max(r, q_min)


@jit
def send_level(a, b, Q, I_new, down):  # pragma: no cover - compiled
    """The outflows Q[a:b] of one level added into their downstream inflows."""
    N = Q.shape[0]
    for k in range(a, b):
        dk = down[k]
        if dk < N:
            I_new[dk] += Q[k]


@jit_with(fastmath={"reassoc", "contract"})
def _storage_sums(spb, S):  # pragma: no cover - compiled
    """The sums of the step-start (spb) and step-end (S) storages (m3) over all reaches: one vectorised pass
    (reassociated: the order of the additions is the vectoriser's)."""
    s_all = 0.0
    e_all = 0.0
    for k in range(S.shape[0]):
        s_all += spb[k]
        e_all += S[k]
    return s_all, e_all


@jit
def finish_step(t, t0, T, Q, S, I_old, I_new, Qh, Sh, Ih, keep, conservative, count, stor, spb, ot, order, out_pos,
                out_mode):  # pragma: no cover - compiled
    """The end of forward step t: the histories (keep: rows t - t0 + 1), the storage sums (count), the output
    row and the inflow swap (``end_step``)."""
    if keep:
        Qh[t - t0 + 1] = Q
        Ih[t - t0 + 1] = I_new
        if conservative:
            Sh[t - t0 + 1] = S
    if count:
        s_all, e_all = _storage_sums(spb, S)
        stor[0] += s_all
        stor[1] += e_all
        if t == 0:
            stor[2] += s_all
        if t == T - 1:
            stor[3] += e_all
    end_step(ot, Q, I_old, I_new, order, out_pos, out_mode)


@inline
def carry_back(k, r, q_min, Qrb, Iib, Iob, Qob, Sob, qlb, m_bar, carry_q, carry_s, carry_m,
               grow):  # pragma: no cover - compiled
    """The adjoint's cotangents of reach k before step t from those of its update (I(t), I(t-1), Q(t-1),
    S(t-1), q) and of its floored reference flow Qr = max(r, q_min), r = (I(t-1) + I(t) + Q(t-1) + 2q)/3."""
    rb = Qrb * (1.0 / 3.0) if r >= q_min else 0.0
    m_bar[k] = carry_m[k] + Iib + rb
    carry_m[k] = Iob + rb
    carry_q[k] = Qob + rb
    carry_s[k] = Sob
    grow[k] = qlb + 2.0 * rb


@jit
def gather_cotangents(a, b, gq, carry_q, m_bar, down, grow):  # pragma: no cover - compiled
    """The cotangents of Q(t) of reaches a..b-1 in the reverse sweep: their own carry, their downstream reach's
    inflow cotangent (m_bar[N] = 0 for outlets) and the output's."""
    for k in range(a, b):
        gq[k] = carry_q[k] + m_bar[down[k]] + grow[k]


@jit
def write_row(ut, order, grow):  # pragma: no cover - compiled
    """ut[order[k]] = grow[k]: one row from level order back to network order (``read_row``'s inverse)."""
    for k in range(grow.shape[0]):
        ut[order[k]] = grow[k]


@jit
def _mc_fwd(kc, ku, a3, dx, inv_dx, lstart, down, order, q, t0, t1, Q, S, I_old, I_new, out, out_mode, out_pos,
            Qh, Sh, Ih, keep, row, spb, ys, stor, count, T, dt, positivity, conservative, derive, q_min, c_lo,
            c_hi, f32):  # pragma: no cover - compiled
    """Steps t0..t1-1 in place on Q, S, I_old (sorted; I_new zeroed scratch, row, spb, ys [N] scratch), output as
    ``end_step``. keep: Qh, Ih (and Sh when conservative) rows t - t0 + 1 = the state after step t. count: add
    to stor (float64 [4]) the sums of the step-start and step-end storages, first-step starts, last-step ends.
    Per level (lstart[L]:lstart[L+1], reaches independent of each other) two vectorised passes compute the
    reach-steps (y = Qr^a_3, then the Cunge step), a third adds the outflows into the downstream inflows
    (unsigned indices: no wraparound)."""
    for t in range(t0, t1):
        read_row(q[t], order, row)
        first = derive and t == 0
        for L in range(lstart.shape[0] - 1):
            a, b = np.uint64(lstart[L]), np.uint64(lstart[L + 1])
            if f32:  # vectorised: the transcendental part (a pass of its own: measured 8% faster)
                for k in range(a, b):
                    ys[k] = vexp_f32(a3[k] * vlog_f32(reference_flow(I_new[k], I_old[k], Q[k], row[k], q_min)[1]))
            else:
                for k in range(a, b):
                    ys[k] = vexp(a3[k] * vlog(reference_flow(I_new[k], I_old[k], Q[k], row[k], q_min)[1]))
            for k in range(a, b):  # vectorised: the Cunge step
                Ii, Io, Qo, ql = I_new[k], I_old[k], Q[k], row[k]
                Q[k], S[k], spb[k] = _reach(kc[k], ku[k], ys[k], dx[k], inv_dx[k], Ii, Io, Qo, S[k], ql, first, dt,
                                            positivity, conservative, c_lo, c_hi)[2:5]
            send_level(a, b, Q, I_new, down)
        finish_step(t, t0, T, Q, S, I_old, I_new, Qh, Sh, Ih, keep, conservative, count, stor, spb, out[t], order,
                    out_pos, out_mode)


@jit
def reverse_step(t, t0, q, order, row, g, g_mode, g_col, grow, Qh, Sh, Ih, conservative):  # pragma: no cover
    """The start of reverse step t: q(t) into row and the output cotangent into grow (level order), and the
    history rows the step read: I(t), I(t-1), Q(t-1), S(t-1) (S's row 0 when not kept)."""
    r_ = t - t0
    read_row(q[t], order, row)
    grad_row(g, t, g_mode, g_col, order, grow)
    return Ih[r_ + 1], Ih[r_], Qh[r_], Sh[r_ if conservative else 0]


@jit
def _mc_bwd(kc, ku, a3, dx, inv_dx, lstart, down, order, q, t0, t1, Qh, Sh, Ih, g, g_mode, g_col, carry_q,
            carry_s, carry_m, m_bar, kc_bar, ku_bar, a3_bar, dx_bar, u_bar, want_u, row, grow, gq, lqs, ys, a3q, dt, positivity,
            conservative, derive, q_min, c_lo, c_hi, f32):  # pragma: no cover - compiled
    """Reverse steps t1-1..t0 (history rows t - t0 = before step t); g_mode as :func:`grad_row`. In place on
    carry_q, carry_s, carry_m (cotangents of Q, S, I after the step on entry, before it on exit), the parameter
    cotangents and u_bar [T, N]; m_bar [N + 1] scratch with m_bar[N] = 0, gq, lqs, ys, a3q [N] scratch. Per level, last
    level first: the cotangents of Q(t) gathered, then one vectorised pass over the level's reaches."""
    for t in range(t1 - 1, t0 - 1, -1):
        first = derive and t == 0
        Ii_h, Io_h, Qo_h, So_h = reverse_step(t, t0, q, order, row, g, g_mode, g_col, grow, Qh, Sh, Ih, conservative)
        for L in range(lstart.shape[0] - 2, -1, -1):
            a, b = np.uint64(lstart[L]), np.uint64(lstart[L + 1])
            gather_cotangents(a, b, gq, carry_q, m_bar, down, grow)
            if f32:  # vectorised: the transcendental part (the forward's) and a division
                for k in range(a, b):
                    Qr = reference_flow(Ii_h[k], Io_h[k], Qo_h[k], row[k], q_min)[1]
                    lq = vlog_f32(Qr)
                    lqs[k] = lq
                    ys[k] = vexp_f32(a3[k] * lq)
                    a3q[k] = a3[k] / Qr
            else:
                for k in range(a, b):
                    Qr = reference_flow(Ii_h[k], Io_h[k], Qo_h[k], row[k], q_min)[1]
                    lq = vlog(Qr)
                    lqs[k] = lq
                    ys[k] = vexp(a3[k] * lq)
                    a3q[k] = a3[k] / Qr
            for k in range(a, b):
                Ii, Io, Qo, ql = Ii_h[k], Io_h[k], Qo_h[k], row[k]
                dxk = dx[k]
                r, Qr = reference_flow(Ii, Io, Qo, ql, q_min)
                lq, y = lqs[k], ys[k]
                c0, u, Qn, _, _, c, ic, K, Xr, X, sel, h, Pw, Rw, iD = _reach(
                    kc[k], ku[k], y, dxk, inv_dx[k], Ii, Io, Qo, So_h[k] if conservative else 0.0, ql, first, dt,
                    positivity, conservative, c_lo, c_hi)
                c0b, ub, dxb, Iib, Iob, Qob, Sob, qlb = cunge_reach_vjp(
                    gq[k], carry_s[k], Qn, c0, u, c, ic, K, Xr, X, sel, h, Pw, Rw, iD, dxk, inv_dx[k], Ii, Io, Qo, first,
                    dt, conservative, c_lo, c_hi)
                dx_bar[k] += dxb
                kcb, kub, a3b, Qrb = _channel_vjp(a3q[k], lq, y, c0, u, c0b, ub)
                kc_bar[k] += kcb
                ku_bar[k] += kub
                a3_bar[k] += a3b
                carry_back(k, r, q_min, Qrb, Iib, Iob, Qob, Sob, qlb, m_bar, carry_q, carry_s, carry_m, grow)
        if want_u:
            write_row(u_bar[t], order, grow)


class MCKernel:
    """Muskingum-Cunge on the power-law channel for :class:`~rivergraph.engine.compiled.CompiledSweep`: states
    (Q, S), parameters (k_c, k_u, a_3, dx) [N] float64 (:func:`power_law_constants` and the length); histories
    Q, I and, for the conservative form, S."""

    SNAPSHOT_SCRATCH = 0
    """Vectors (states' dtype) kept at each checkpoint beside the states (``compiled.snapshot_scratch_bytes``)."""
    INFLOW_HISTORY = True  # the adjoint reads the inflow history

    n_states = 2

    def __init__(self, sched, cell):
        self.down, self.order = as_numpy(sched.down), as_numpy(sched.order)
        self.lstart = np.ascontiguousarray(sched.lstart, dtype=np.int64)
        self.opts = (cell.dt, bool(cell.positivity), bool(cell.conservative))
        self.stor = np.zeros(4)
        self.books = True  # the storage sums of the mass balance (compiled_sweep's ``diagnostics``)

    @staticmethod
    def parameters(params):
        """The kernel's parameter tensors from the channel's (n, slope, width_coef, width_exp, length)."""
        n, S0, p, w, dx = params
        return (*power_law_constants(n, S0, p, w, dx), dx.double())

    def bind(self, q, params, states0):
        self.q = as_numpy(q)
        kc, ku, a3, dx = (as_numpy(x.detach().contiguous()) for x in params)
        self.p = (*in_precision((kc, ku, a3, dx, 1.0 / dx), self.q.dtype), self.lstart)
        self.derive = bool(torch.isnan(states0[1]).any())
        # float32 states: y = Qr^a_3 by the short series (compiled_math: 3e-10 relative, in float64)
        self.tail = (*self.opts, self.derive, MIN_REFERENCE_FLOW, *CELERITY_BOUNDS, self.q.dtype == np.float32)
        N = q.shape[1]
        self.row, self.grow = np.empty(N, dtype=self.q.dtype), np.empty(N, dtype=self.q.dtype)
        self.spb, self.gq, self.lqs, self.ys, self.a3q = (np.empty(N) for _ in range(5))

    def history_states(self):
        return (0, 1) if self.opts[2] else (0,)  # Q, S (conservative), then I

    def forward(self, t0, t1, states, I_old, I_new, out, mode, opos, hist, keep, count):
        Qh, Sh, Ih = hist
        _mc_fwd(*self.p, self.down, self.order, self.q, t0, t1, states[0], states[1], I_old, I_new, out, mode, opos,
                Qh, Sh, Ih, keep, self.row, self.spb, self.ys, self.stor, count and self.books, self.q.shape[0],
                *self.tail)

    def backward(self, t0, t1, hist, g, g_mode, g_col, carries, carry_m, m_bar, p_bar, u_bar, want_u):
        Qh, Sh, Ih = hist
        _mc_bwd(*self.p, self.down, self.order, self.q, t0, t1, Qh, Sh, Ih, g, g_mode, g_col, carries[0], carries[1],
                carry_m, m_bar, *p_bar, u_bar, want_u, self.row, self.grow, self.gq, self.lqs, self.ys, self.a3q, *self.tail)

    def diagnostics(self, I_final, states, I0, states0, params):
        return torch.from_numpy(self.stor.copy() if self.books else np.full(4, np.nan))
