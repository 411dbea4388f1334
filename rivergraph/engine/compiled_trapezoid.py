"""Compiled Muskingum-Cunge on the trapezoid channel, forward and adjoint (numba, CPU).

Per step t, the reaches in level order, each one step of :func:`rivergraph.physics.muskingum.mc_step` with
:func:`rivergraph.physics.channels.trapezoid_celerity`: the 3-point reference flow Qr (floored at
``MIN_REFERENCE_FLOW``; :func:`compiled_mc.reference_flow`), the normal depth h of Qr, then

    A = (B + z h) h,  P = B + 2 h s,  T = B + 2 z h,  s = sqrt(1 + z^2)
    c0 = (Qr / A) (5/3 - 4/3 s A / (T P)),   u = Qr / (T S0 dx)

(Manning; Chow, Maidment & Mays 1988, 9.4) and the shared Cunge step (:func:`compiled_mc.cunge_reach`: the
celerity bounds, K = dx/c, X = 0.5 (1 - u/c) clipped, positivity, the Muskingum update). That arithmetic is
float64 whatever the states' dtype (the parameters are read in the states' precision,
``compiled_base.in_precision``); the depth solve computes in the states' dtype, as the torch path does.

Depth (``SOLVERS``, :func:`_depth_solver`), per level (the reaches of a level are independent): Newton passes on
log h towards the root of log r = 0, r = A^5 / (P^2 K3), K3 = (Qr n / sqrt(S0))^3 (Manning cubed), each pass one
vectorised loop over the level with no log or exp: log r is 2 (r - 1)/(r + 1) near the root (the same root,
Newton's quadratic convergence kept, one division) and the difference of the binary exponents times ln 2 far
from it (once no reach of the level starts far, the passes drop that branch); h exp(-step) is a short series.
Passes stop when every step of the level is below ``TOLERANCE`` (the error left is of order that step squared:
1e-16 for float64 states, 1e-10 for float32 ones). The start is the reach's depth of its previous reach-step (a
per-reach scratch in the states' dtype), or on the first step the torch path's wide-rectangle guess
(Qr n / (B sqrt(S0)))^(3/5). A level that does not converge (with float32 states, A^5 or P^2 K3 past 3e38, a
channel some 100 km wide; NaN) is solved again reach by reach in float64 (:func:`rescue_depths`).

Speed on the 300k tree (float32 states, one thread): one scalar Newton loop per reach, a log per iteration,
3.7e6 reach-steps/s; per level vectorised, 4e7; the first-step guess in a loop of its own (inside the start
loop its select computed an exp and a log for every reach-step) and no log pass, 5e7; the passes' convergence
flags as booleans (an integer count is int64 in numba, which held the float32 loop to 4 lanes; measured
inside the pipeline, a pass of 0.8 ns per reach cost 1.3 ns with its count) and the float32 solve (8 lanes),
5.7e7; the first pass computing the right-hand sides (``solve_level``), 5 % more (in one process). The forward
keeps the scratch at each checkpoint (one value per reach: a third more checkpoint memory than Q, S, I alone)
so that a recomputed segment starts from the same depths (the checkpointed adjoint stays bit-identical to the
full-history one). Where it keeps histories for the adjoint, the forward keeps each step's depths too (``Hh``:
one value per reach-step, a third more history memory, counted by ``compiled.history_scratch``), and the
adjoint reads them instead of solving the depths again (it warm-started its own scratch in reverse order
before: forward+backward 1.1x faster, and the gradients are taken at the forward's own depths).

Adjoint (:func:`_trap_bwd`): the reach-step recomputed from the kept Q, S, I, h histories, the Cunge step's VJP
(:func:`compiled_mc.cunge_reach_vjp`), then by hand through (c0, u) -> (A, P, T, s) -> (h, B, z) and the
implicit-function derivative of the depth, F(h) = log Q(h) - log Qr = 0:
dh/dQr = 1 / (dQ/dh), dh/dtheta = -(dQ/dtheta) / (dQ/dh), the torch path's gradients (one differentiable
Newton step at the root) to rounding. Parameters (n, S0, B, z, dx) [N] tensors, gradients to each.
"""
from __future__ import annotations

import numpy as np
import torch

from ..physics.channels import CELERITY_BOUNDS, MIN_REFERENCE_FLOW
from .compiled_base import as_numpy, in_precision, inline, jit, read_row
from .compiled_math import _bits, _bits32, _float, vexp, vlog
from .compiled_mc import (
    MCKernel,
    carry_back,
    cunge_reach,
    cunge_reach_vjp,
    finish_step,
    gather_cotangents,
    reference_flow,
    reverse_step,
    send_level,
    write_row,
)

__all__ = ["TrapezoidKernel"]

TOLERANCE = {np.dtype(np.float64): float(np.finfo(np.float64).eps) ** 0.5, np.dtype(np.float32): 1e-5}
"""The depth solve's stopping step per states' dtype: the error left is of order the last step squared
(quadratic convergence), 1e-16 relative for float64 states and 1e-10 for float32 ones (600 times below their
rounding, 6e-8)."""
_TOL64 = TOLERANCE[np.dtype(np.float64)]
_MAX_ITERS = 60
_LN2 = 0.6931471805599453
_EXPONENT_FIELD = 0x7FF
_MAGIC = 0x4330000000000000  # the bits of 2^52: OR-ed with an integer j < 2^52, the float 2^52 + j


@inline
def _exponent64(x):  # pragma: no cover - compiled
    """The biased binary exponent of float64 x, as a float64 (bit operations only: vectorises)."""
    return _float(((_bits(x) >> 52) & _EXPONENT_FIELD) | _MAGIC) - 4503599627370496.0


@inline
def _exponent32(x):  # pragma: no cover - compiled
    """The biased binary exponent of float32 x, as a float32."""
    return np.float32((_bits32(x) >> 23) & 0xFF)


def _depth_solver(ftype, exponent):
    """:func:`solve_depths` computing in ``ftype`` (float64, or float32 for float32 states: twice the lanes of a
    vector), ``exponent`` its binary exponent."""
    one, two, four, five, half, quarter = (ftype(v) for v in (1.0, 2.0, 4.0, 5.0, 0.5, 0.25))
    sixth, over24, ln2, far_gap, clamp = (ftype(v) for v in (1.0 / 6.0, 1.0 / 24.0, _LN2, 1.5, 2.0))
    third, qmin = ftype(1.0 / 3.0), ftype(MIN_REFERENCE_FLOW)

    @inline
    def terms(h, K3, B, z, s):  # pragma: no cover - compiled
        """At depth h: A^5, M = P^2 K3 (r = A^5 / M) and the factors of d log h / d log r = A P / D,
        D = h (5 T P - 4 s A)."""
        A = (B + z * h) * h
        P = B + two * h * s
        A2 = A * A
        return A2 * A2 * A, P * P * K3, A * P, h * (five * (B + two * z * h) * P - four * s * A)

    @inline
    def newton(h, K3, B, z, s):  # pragma: no cover - compiled
        """One Newton step on log h towards the root of log r = 0, r = A^5 / (P^2 K3) (module docstring), from h:
        (new h, the step, whether the start was far). log r is 2 (r - 1)/(r + 1) where the binary exponents of
        A^5 and P^2 K3 differ by at most 1 (r in (1/4, 4): exact to rounding near the root, no log), else the
        exponents' difference times ln 2 (within ln 2 of log r: a far start moves by the clamp's +-2 at once
        instead of the rational form's |2 (r - 1)/(r + 1)| < 2, which would crawl). h exp(-step) is (its
        4th-order series at step/4)^4, step clamped to +-2 as :func:`~rivergraph.physics.channels.trapezoid_depth`
        (positive for every step; exact to rounding for the small steps near the root)."""
        A5, M, AP, D = terms(h, K3, B, z, s)
        kd = exponent(A5) - exponent(M)
        far = abs(kd) > far_gap
        num = kd * ln2 * (A5 + M) if far else two * (A5 - M)
        step = num * AP / ((A5 + M) * D)  # log r over d log r / d log h, one division
        x = quarter * min(max(step, -clamp), clamp)
        e = one - x * (one - x * (half - x * (sixth - x * over24)))
        e2 = e * e
        return h * (e2 * e2), step, far

    @inline
    def newton_near(h, K3, B, z, s):  # pragma: no cover - compiled
        """``newton`` for a start near the root (every reach of the level near at the start of the pass
        before): log r by 2 (r - 1)/(r + 1) only, h exp(-step) by its 4th-order series (|step| < 0.4 there)."""
        A5, M, AP, D = terms(h, K3, B, z, s)
        step = two * (A5 - M) * AP / ((A5 + M) * D)
        return h * (one - step * (one - step * (half - step * (sixth - step * over24)))), step

    @inline
    def passes(a, b, K3, B, z, s, hs, tol, far, count):  # pragma: no cover - compiled
        """Up to ``count`` passes over reaches a..b-1 (``far``: whether a start of the pass before was far):
        whether the last one's steps were all below ``tol``."""
        for _ in range(count):
            left = False
            if far:
                far = False
                for k in range(a, b):
                    h, step, f = newton(hs[k], K3[k], B[k], z[k], s[k])
                    hs[k] = h
                    left |= not abs(step) < tol  # NaN too
                    far |= f
            else:
                for k in range(a, b):
                    h, step = newton_near(hs[k], K3[k], B[k], z[k], s[k])
                    hs[k] = h
                    left |= not abs(step) < tol
            if not left:
                return True
        return False

    @jit
    def solve_depths(a, b, K3, B, z, s, hs, tol):  # pragma: no cover - compiled
        """The normal depths of reaches a..b-1 in place on hs (their starts on entry), K3[k] = (Qr n / sqrt(S0))^3:
        passes of ``newton`` over all of them (one vectorised loop each), after a pass whose starts were all
        near the root those of ``newton_near`` (the same step there without the far branch: 7 % faster forward
        on the 300k tree; no start then is far: the iteration only comes closer), until every step of a pass is
        below ``tol`` (``TOLERANCE`` of the states' dtype), at most ``_MAX_ITERS``. A reach whose own iteration has
        converged takes the level's remaining passes too (each moves it by rounding), so a reach's result depends
        on its level's slowest one only at rounding level, the same in every run (the checkpointed recomputation
        repeats it exactly). Whether every reach converged."""
        return passes(a, b, K3, B, z, s, hs, tol, True, _MAX_ITERS)

    @inline
    def solve_level(a, b, Ii, Io, Qo, ql, nk, K3, B, z, s, hs, tol):  # pragma: no cover - compiled
        """:func:`solve_depths` of a level from its flows (inflow now and before, outflow before, lateral inflow),
        the kernels' solve: the first pass also computes the right-hand sides K3 = (Qr n / sqrt(S0))^3 (nk =
        n / sqrt(S0)) from the reference flow floored at ``MIN_REFERENCE_FLOW`` (:func:`compiled_mc.reference_flow`),
        in ``ftype`` (one loop less per level; computed in float64 it held the fused loop to 4 lanes: slower than
        two loops)."""
        left, far = False, False
        for k in range(a, b):
            r = (Io[k] + Ii[k] + Qo[k] + two * ql[k]) * third
            x = (r if r > qmin else qmin) * nk[k]
            K3k = x * x * x
            K3[k] = K3k
            h, step, f = newton(hs[k], K3k, B[k], z[k], s[k])
            hs[k] = h
            left |= not abs(step) < tol
            far |= f
        return not left or passes(a, b, K3, B, z, s, hs, tol, far, _MAX_ITERS - 1)

    return solve_depths, solve_level, newton


(_solve64, _level64, _newton64), (_solve32, _level32, _) = (_depth_solver(np.float64, _exponent64),
                                                            _depth_solver(np.float32, _exponent32))
SOLVERS = {np.dtype(np.float64): _solve64, np.dtype(np.float32): _solve32}
"""The depth solve per states' dtype (:func:`_depth_solver`): whether every reach of the level converged."""


@jit
def rescue_depths(a, b, K3, B, z, s, hs):  # pragma: no cover - compiled
    """A level whose solve did not converge (in float32, A^5 or P^2 K3 beyond its range, 3e38; NaN), again reach
    by reach in float64 from the wide-rectangle start (K3 / B^3)^(1/5), to float64's ``TOLERANCE``; NaN for a
    reach that does not converge then either (never a depth that does not carry its flow)."""
    for k in range(a, b):
        K3k, Bk, zk, sk = np.float64(K3[k]), np.float64(B[k]), np.float64(z[k]), np.float64(s[k])
        h = vexp(0.2 * vlog(K3k) - 0.6 * vlog(Bk))
        done = False
        for _ in range(_MAX_ITERS):
            h, step, _f = _newton64(h, K3k, Bk, zk, sk)
            if abs(step) < _TOL64:
                done = True
                break
        hs[k] = h if done else np.nan


@inline
def cold_depth(Qr, nk, B):  # pragma: no cover - compiled
    """The Newton start without a previous depth: the torch path's wide-rectangle guess (Qr n / (B sqrt(S0)))^(3/5)."""
    return vexp(0.6 * vlog(Qr * nk / B))


@inline
def _channel(Qr, h, B, z, s, S0, dx):  # pragma: no cover - compiled
    """(c0, u, A, P, T, G1, G2) at depth h: c0 = Qr (G1 - G2), G1 = 5/(3A), G2 = 4 s/(3 T P),
    u = Qr / (T S0 dx); one division (by 3 A T P)."""
    A = (B + z * h) * h
    P = B + 2.0 * h * s
    T = B + 2.0 * z * h
    inv = 1.0 / (3.0 * A * T * P)
    G1 = 5.0 * T * P * inv
    G2 = 4.0 * s * A * inv
    return Qr * (G1 - G2), 3.0 * Qr * A * P * inv / (S0 * dx), A, P, T, G1, G2


@inline
def _channel_vjp(c0b, ub, Qr, h, B, z, s, n, S0, inv_dx, u, A, P, T, G1, G2):  # pragma: no cover - compiled
    """The cotangents of (Qr, n, S0, B, z, dx) from those of (c0, u) of :func:`_channel`, through the depth
    h(Qr, n, S0, B, z) by the implicit-function theorem. Two divisions: 1/(A T P) and 1/(Qr n S0 s W), whose
    products give every reciprocal (18 divisions before: 1.2x faster forward+backward on the 300k tree)."""
    iATP = 1.0 / (A * T * P)
    iA, iP, iT = T * P * iATP, A * T * iATP, A * P * iATP
    W = 5.0 / 3.0 * T * iA - 4.0 / 3.0 * s * iP  # Q'(h) / Q
    Qn, Ss = Qr * n, S0 * s
    ir = 1.0 / (Qn * Ss * W)
    iQr, i_n, iS0, i_s, iW = n * Ss * W * ir, Qr * Ss * W * ir, Qn * s * W * ir, Qn * S0 * W * ir, Qn * Ss * ir
    uu = ub * u
    Qrb = c0b * (G1 - G2) + uu * iQr
    cq = c0b * Qr
    Ab = -cq * G1 * iA
    Pb = cq * G2 * iP
    Tb = (cq * G2 - uu) * iT
    S0b = -uu * iS0
    dxb = -uu * inv_dx
    hb = Ab * T + Pb * 2.0 * s + Tb * 2.0 * z  # dA/dh = T, dP/dh = 2 s, dT/dh = 2 z
    Bb = Ab * h + Pb + Tb
    zb = Ab * h * h + Pb * 2.0 * h * z * i_s + Tb * 2.0 * h - cq * G2 * z * i_s * i_s
    # Q(h) = A^(5/3) P^(-2/3) sqrt(S0) / n = Qr at the root: dh/dQr = 1 / Q'(h), dh/dtheta = -dQ/dtheta / Q'(h)
    w = hb * iW  # hb / (Q'(h) / Q), Q = Qr
    Qrb += w * iQr
    nb = w * i_n
    S0b -= 0.5 * w * iS0
    Bb -= w * (5.0 / 3.0 * h * iA - 2.0 / 3.0 * iP)
    zb -= w * (5.0 / 3.0 * h * h * iA - 4.0 / 3.0 * h * z * i_s * iP)
    return Qrb, nb, S0b, Bb, zb, dxb


def _forward_kernel(solve_level):
    """The forward sweep with the level depth solve ``solve_level`` (inlined: 2 % faster forward on the 300k
    tree than calling it, measured in one process)."""

    @jit
    def trap_fwd(n, S0, B, z, s, nk, dx, inv_dx, lstart, down, order, q, t0, t1, Q, S, I_old, I_new, out, out_mode,
                 out_pos, Qh, Sh, Ih, Hh, keep, row, spb, hs, K3, stor, count, T, dt, positivity, conservative, derive,
                 q_min, c_lo, c_hi, tol):  # pragma: no cover - compiled
        """Steps t0..t1-1 in place on Q, S, I_old and the depth scratch hs (as ``compiled_mc._mc_fwd``); with
        ``keep`` each step's depths into Hh[t - t0] (the adjoint's)."""
        for t in range(t0, t1):
            read_row(q[t], order, row)
            first = derive and t == 0
            for L in range(lstart.shape[0] - 1):
                a, b = np.uint64(lstart[L]), np.uint64(lstart[L + 1])
                if t == 0:  # the scratch holds no depth yet (bind zeroes it; the snapshot of step 0 is that)
                    for k in range(a, b):  # its own loop: a select inside the solve computed exp and log always
                        hs[k] = cold_depth(reference_flow(I_new[k], I_old[k], Q[k], row[k], q_min)[1], nk[k], B[k])
                if not solve_level(a, b, I_new, I_old, Q, row, nk, K3, B, z, s, hs, tol):
                    rescue_depths(a, b, K3, B, z, s, hs)
                for k in range(a, b):
                    Ii, Io, Qo, ql = I_new[k], I_old[k], Q[k], row[k]
                    Qr = reference_flow(Ii, Io, Qo, ql, q_min)[1]
                    c0, u = _channel(Qr, hs[k], B[k], z[k], s[k], S0[k], dx[k])[:2]
                    Q[k], S[k], spb[k] = cunge_reach(c0, u, dx[k], inv_dx[k], Ii, Io, Qo, S[k], ql, first, dt,
                                                     positivity, conservative, c_lo, c_hi)[:3]
                send_level(a, b, Q, I_new, down)
            if keep:
                Hh[t - t0] = hs
            finish_step(t, t0, T, Q, S, I_old, I_new, Qh, Sh, Ih, keep, conservative, count, stor, spb, out[t],
                        order, out_pos, out_mode)

    return trap_fwd


FORWARDS = {np.dtype(np.float64): _forward_kernel(_level64),
            np.dtype(np.float32): _forward_kernel(_level32)}
"""The forward sweep per states' dtype."""


@jit
def _trap_bwd(n, S0, B, z, s, nk, dx, inv_dx, lstart, down, order, q, t0, t1, Qh, Sh, Ih, g, g_mode, g_col,
              carry_q, carry_s, carry_m, m_bar, n_bar, S0_bar, B_bar, z_bar, dx_bar, u_bar, want_u, row, grow, gq,
              Hh, dt, positivity, conservative, derive, q_min, c_lo, c_hi):  # pragma: no cover - compiled
    """Reverse steps t1-1..t0 (as ``compiled_mc._mc_bwd``) at the forward's depths Hh[t - t0] (nk: a parameter of
    the forward's, unused here)."""
    for t in range(t1 - 1, t0 - 1, -1):
        first = derive and t == 0
        Ii_h, Io_h, Qo_h, So_h = reverse_step(t, t0, q, order, row, g, g_mode, g_col, grow, Qh, Sh, Ih, conservative)
        hs = Hh[t - t0]
        for L in range(lstart.shape[0] - 2, -1, -1):
            a, b = np.uint64(lstart[L]), np.uint64(lstart[L + 1])
            gather_cotangents(a, b, gq, carry_q, m_bar, down, grow)
            for k in range(a, b):
                Ii, Io, Qo, ql = Ii_h[k], Io_h[k], Qo_h[k], row[k]
                Bk, zk, sk, dxk = B[k], z[k], s[k], dx[k]
                r, Qr = reference_flow(Ii, Io, Qo, ql, q_min)
                h = hs[k]
                c0, u, A, P, Tw, G1, G2 = _channel(Qr, h, Bk, zk, sk, S0[k], dxk)
                Qn, _, _, c, ic, K, Xr, X, sel, hh, Pw, Rw, iD = cunge_reach(
                    c0, u, dxk, inv_dx[k], Ii, Io, Qo, So_h[k] if conservative else 0.0, ql, first, dt, positivity,
                    conservative, c_lo, c_hi)
                c0b, ub, dxb, Iib, Iob, Qob, Sob, qlb = cunge_reach_vjp(
                    gq[k], carry_s[k], Qn, c0, u, c, ic, K, Xr, X, sel, hh, Pw, Rw, iD, dxk, inv_dx[k], Ii, Io, Qo,
                    first, dt, conservative, c_lo, c_hi)
                Qrb, nb, S0b, Bb, zb, dxb2 = _channel_vjp(c0b, ub, Qr, h, Bk, zk, sk, n[k], S0[k], inv_dx[k], u, A, P,
                                                          Tw, G1, G2)
                n_bar[k] += nb
                S0_bar[k] += S0b
                B_bar[k] += Bb
                z_bar[k] += zb
                dx_bar[k] += dxb + dxb2
                carry_back(k, r, q_min, Qrb, Iib, Iob, Qob, Sob, qlb, m_bar, carry_q, carry_s, carry_m, grow)
        if want_u:
            write_row(u_bar[t], order, grow)


class TrapezoidKernel(MCKernel):
    """Muskingum-Cunge on the trapezoid channel for :class:`~rivergraph.engine.compiled.CompiledSweep`: states
    (Q, S), parameters (n, S0, B, z, dx) [N] float64; histories as :class:`~rivergraph.engine.compiled_mc.MCKernel`."""

    SNAPSHOT_SCRATCH = 1  # the depth scratch h_fwd, in the states' dtype
    HISTORY_SCRATCH = 1  # the depths of every kept step (Hh), for the adjoint

    @staticmethod
    def parameters(params):
        """The kernel's parameter tensors from the channel's (n, slope, bottom_width, side_slope, length)."""
        return tuple(x.double() for x in params)

    def bind(self, q, params, states0):
        self.q = as_numpy(q)
        n, S0, B, z, dx = (as_numpy(x.detach().contiguous()) for x in params)
        self.p = (*in_precision((n, S0, B, z, np.sqrt(1.0 + z * z), n / np.sqrt(S0), dx, 1.0 / dx),
                                self.q.dtype), self.lstart)
        self.derive = bool(torch.isnan(states0[1]).any())
        dt = self.q.dtype  # the depth solve's precision
        # the kernels' shared last arguments; the depth tolerance (the last) is the forward's only
        self.tail = (*self.opts, self.derive, MIN_REFERENCE_FLOW, *CELERITY_BOUNDS, dt.type(TOLERANCE[dt]))
        self.fwd = FORWARDS[dt]
        N = q.shape[1]
        self.row, self.grow = np.empty(N, dtype=self.q.dtype), np.empty(N, dtype=self.q.dtype)
        self.spb, self.gq, self.K3 = np.empty(N), np.empty(N), np.empty(N, dtype=dt)
        self.h_fwd = np.zeros(N, dtype=dt)  # depth scratch (0: cold start)
        self.h_snaps: dict[int, np.ndarray] = {}
        self.Hh = np.empty((1, N), dtype=dt)  # the depths of the steps kept for the adjoint

    def forward(self, t0, t1, states, I_old, I_new, out, mode, opos, hist, keep, count):
        if count:  # the first pass: keep the depth scratch at each segment start for the recomputations
            self.h_snaps[t0] = self.h_fwd.copy()
        else:
            self.h_fwd[:] = self.h_snaps[t0]
        Qh, Sh, Ih = hist
        if keep:  # the depths of steps t0..t1-1 for the backward that follows (of this segment)
            self.Hh = np.empty((t1 - t0, self.q.shape[1]), dtype=self.q.dtype)
        self.fwd(*self.p, self.down, self.order, self.q, t0, t1, states[0], states[1], I_old, I_new, out, mode,
                  opos, Qh, Sh, Ih, self.Hh, keep, self.row, self.spb, self.h_fwd, self.K3, self.stor,
                  count and self.books, self.q.shape[0], *self.tail)

    def backward(self, t0, t1, hist, g, g_mode, g_col, carries, carry_m, m_bar, p_bar, u_bar, want_u):
        Qh, Sh, Ih = hist
        _trap_bwd(*self.p, self.down, self.order, self.q, t0, t1, Qh, Sh, Ih, g, g_mode, g_col, carries[0],
                  carries[1], carry_m, m_bar, *p_bar, u_bar, want_u, self.row, self.grow, self.gq, self.Hh,
                  *self.tail[:-1])
