"""The NWM channel's secant depth solve compiled (numba, CPU): :func:`rivergraph.physics.nwm.secant_depth` per
reach in a scalar loop, and the step's end after it where no gradient is needed.

WRF-Hydro ``src/Routing/module_channel_routing.F90``, routine ``SUBMUSKINGCUNGE`` (NCAR/wrf_hydro_nwm_public,
WRF-Hydro v5.3, the NWM v3.0 retrospective), solves one reach at a time: a secant iteration on
f(h) = Q_MC(h) - Q_Manning(h) from h = 1.33 depth + 0.01, h_0 = 0.67 depth, 100 iterations, then up to 4 restarts
that widen [h_0, h] by 0.67 / 1.33, reset ``Qj_0`` and the count and allow 25 more iterations. The torch version
(:func:`~rivergraph.physics.nwm.secant_depth`, the GPU path and the reference) runs that loop for all reaches at
once with masks and gathers per iteration; here every reach iterates on its own in compiled code (no masks, no
gathers, one pass over the reaches). The scalar helpers below are the torch functions of
:mod:`rivergraph.physics.nwm` written for one reach, with the same operations in the same order (so the same
values to rounding: torch's vectorised ``pow`` differs from libm's in the last bit for ~6 % of arguments, which
the iteration carries to ~1e-11 relative on ill-conditioned reaches). Arithmetic is float64, without fused
multiply-adds. An iteration's lower point is the last one's upper point (h_0 = h, h >= 0), so the section's
part of an evaluation (:func:`_geometry`: celerity, width, Manning flow, the R^(2/3) power) is kept from one to
the next (the same values bit for bit; 64 -> 59 ms per step on the 300k tree).
The kernel ends each reach with the step's end from its last interval (:func:`_end`: the final coefficients, the C4
guard and the negative-outflow rule; :func:`finish_kernel` computes the same from the secant's points, for a
secant result from elsewhere). No autograd here: the gradients are
:mod:`rivergraph.engine.compiled_nwm_adjoint`'s (or torch's, :func:`~rivergraph.physics.nwm.mc_step`).

Units: depths, widths, lengths m; flows m3/s; dt s; slopes m/m; Manning n s m^-1/3.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..physics.nwm import MAX_ITER, MAX_TRIES, MIN_DEPTH, NWMChannel, SecantResult
from .compiled_base import jit_with, kernel_threads, prange

__all__ = ["secant_depth_compiled", "secant_kernel", "finish_compiled", "finish_kernel"]

# compiled_base's options without fused multiply-adds: they round differently from torch's separate multiply and
# add, and the secant's stopping tests and restarts amplify that (measured on 20,000 random reaches: depths up to
# 6 % apart on 25 of them with FMA, 1.6e-11 relative at most without)
jit = jit_with(fastmath=False)
inline = jit_with(fastmath=False, inline="always")
par = jit_with(fastmath=False, parallel=True)
"""The reach loops (independent reaches) on :func:`~rivergraph.engine.compiled_base.kernel_threads` threads: the
same values whatever the count (each reach's arithmetic is its own); 2x on this 2-core machine."""


@inline
def _safe_pow(x, p):  # pragma: no cover - compiled
    """x**p for x > 0, else 0 (the NWM's R^(2/3), (h - bfd)^(2/3); :func:`rivergraph.physics.nwm.safe_pow`)."""
    return x ** p if x > 0.0 else 0.0


@inline
def _bankfull_depth(bw, tw, z):  # pragma: no cover - compiled
    """Bankfull depth (m) of the NWM trapezoid (SUBMUSKINGCUNGE "locals"): (tw - bw)/(2 z); bw / (2 z) if
    bw == tw; ``bw / 1e-5`` ("effectively infinite") if bw > tw (:func:`rivergraph.physics.nwm.bankfull_depth`)."""
    if bw > tw:
        return bw / 1e-5
    if bw == tw:
        return bw / (2.0 * z)
    return (tw - bw) / (2.0 * z)


@inline
def _section(h, bw, z, sz, bfd, twcc, ncc):  # pragma: no cover - compiled
    """The NWM compound section at depth h (m): ``(A, Ac, P, Pc, R, h_in, h_over)``, areas m2, perimeters and
    depths m, R = (A + Ac)/(P + Pc) m; sz = sqrt(1 + z^2). Trapezoid below bankfull (or with no floodplain,
    twcc = 0 or ncc = 0), above it the trapezoid at bankfull plus a rectangle twcc wide (SUBMUSKINGCUNGE's lower /
    upper interval geometry; :func:`rivergraph.physics.nwm.compound_section`)."""
    over = h > bfd and twcc > 0.0 and ncc > 0.0
    h_in = bfd if over else h
    h_over = h - bfd if over else 0.0
    A = (bw + z * h_in) * h_in
    P = bw + 2.0 * h_in * sz
    Ac = twcc * h_over
    Pc = twcc + 2.0 * h_over if over else 0.0
    return A, Ac, P, Pc, (A + Ac) / (P + Pc), h_in, h_over


@inline
def _celerity(A, Ac, R, r23, h_in, h_over, n, ncc, rs, bw, z, sz):  # pragma: no cover - compiled
    """Kinematic celerity Ck (m/s) of the section (SUBMUSKINGCUNGE; :func:`rivergraph.physics.nwm.nwm_celerity`):
    in the channel rs/n [5/3 R^(2/3) - 2/3 R^(5/3) 2 sz/(bw + 2 h_in z)] (R^(5/3) as R r23, as torch's), above
    bankfull area-weighted with the floodplain's rs/ncc 5/3 h_over^(2/3); 0 without area, floored at 0.
    rs = sqrt(s0), r23 = R^(2/3). The floodplain term only above bankfull, as SUBMUSKINGCUNGE (and torch's
    ``nwm_celerity``)."""
    k_ch = rs / n * (5.0 / 3.0 * r23 - 2.0 / 3.0 * (R * r23) * (2.0 * sz / (bw + 2.0 * h_in * z)))
    tot = A + Ac
    if not tot > 0.0:
        return 0.0
    if Ac != 0.0:  # above bankfull (ncc > 0 there)
        ck = (k_ch * A + rs / ncc * (5.0 / 3.0) * _safe_pow(h_over, 2.0 / 3.0) * Ac) / tot
    else:
        ck = k_ch * A / tot
    return 0.0 if ck < 0.0 else ck


@inline
def _geometry(h, n, ncc, rs, bw, z, sz, bfd, twcc):  # pragma: no cover - compiled
    """What a secant evaluation at depth h (m) takes from the section alone, whatever its X: ``(Ck, W, Q_M)``,
    the kinematic celerity (m/s, :func:`_celerity`), the width of X (m: twcc above bankfull, else bw + 2 z h)
    and the Manning flow Q_M = (A + Ac) R^(2/3) rs / n_eff, n_eff = (P n + Pc ncc)/(P + Pc) (m3/s)."""
    A, Ac, P, Pc, R, h_in, h_over = _section(h, bw, z, sz, bfd, twcc, ncc)
    r23 = _safe_pow(R, 2.0 / 3.0)
    ck = _celerity(A, Ac, R, r23, h_in, h_over, n, ncc, rs, bw, z, sz)
    width = twcc if h_over > 0.0 else bw + 2.0 * z * h
    n_eff = (P * n + Pc * ncc) / (P + Pc)
    return ck, width, (A + Ac) * r23 * rs / n_eff


@inline
def _coefficients(ck, width, q_ref, x_floor, dx, s0, dt, ql):  # pragma: no cover - compiled
    """The Muskingum-Cunge coefficients ``(C1, C2, C3, C4, K, X)`` of a section with celerity ck and width W
    (:func:`_geometry`; :func:`rivergraph.physics.nwm.nwm_coefficients`): K = max(dt, dx/Ck) (dt where Ck = 0),
    X = 0.5 (1 - q_ref / (2 W s0 Ck dx)) clipped to [x_floor, 0.5] (0.5 where Ck = 0); D = K(1-X) + dt/2."""
    if ck > 0.0:
        K = dx / ck
        K = dt if K < dt else K
        X = 0.5 * (1.0 - q_ref / (2.0 * width * s0 * ck * dx))
        X = 0.5 if X > 0.5 else (x_floor if X < x_floor else X)
    else:
        K, X = dt, 0.5
    D = K * (1.0 - X) + 0.5 * dt
    C1 = (K * X + 0.5 * dt) / D
    C2 = (0.5 * dt - K * X) / D
    C3 = (K * (1.0 - X) - 0.5 * dt) / D
    C4 = ql * dt / D
    return C1, C2, C3, C4, K, X


@inline
def _guard_c4(C1, C2, C3, C4, qup, quc, qdp):  # pragma: no cover - compiled
    """SUBMUSKINGCUNGE's guard (``_clip_c4``): a negative C4 (a loss) removes at most the routed water
    C1 qup + C2 quc + C3 qdp; returns (C4, routed)."""
    routed = C1 * qup + C2 * quc + C3 * qdp
    return (-routed if (C4 < 0.0 and abs(C4) > routed) else C4), routed


@inline
def _reach_constants(s0, z, bw, tw):  # pragma: no cover - compiled
    """sqrt(s0), sqrt(1 + z^2) and the bankfull depth of one reach."""
    return math.sqrt(s0), math.sqrt(1.0 + z * z), _bankfull_depth(bw, tw, z)


@inline
def _residual(geom, q_ref, x_floor, dx, s0, dt, qup, quc, qdp, ql):  # pragma: no cover - compiled
    """One secant evaluation of a section ``geom`` (:func:`_geometry` at its depth): ``(Qj, Qmc)`` (m3/s),
    Qmc = C1 qup + C2 quc + C3 qdp + C4 with the coefficients there (:func:`_coefficients`) and
    Qj = Qmc - Q_Manning (SUBMUSKINGCUNGE's lower / upper interval; :func:`rivergraph.physics.nwm.mc_residual`):
    a negative C4 limited to the routed water (``_clip_c4``)."""
    ck, width, q_manning = geom
    C1, C2, C3, C4 = _coefficients(ck, width, q_ref, x_floor, dx, s0, dt, ql)[:4]
    C4, routed = _guard_c4(C1, C2, C3, C4, qup, quc, qdp)
    qmc = routed + C4
    return qmc - q_manning, qmc


@par
def secant_kernel(depth, dx, n, ncc, s0, bw, tw, twcc, z, qup, quc, qdp, ql, dt, rtol, atol, min_depth, max_iter,
                  max_tries, out_h0, out_h, out_q0, out_hn, out_slope, out_end):  # pragma: no cover - compiled
    """SUBMUSKINGCUNGE's secant per reach i (module docstring; the rules of
    :func:`rivergraph.physics.nwm.secant_depth`): writes the last lower / upper points (m), the ``Qj_0`` (m3/s)
    that set the lower point's X, the returned depth (m) and the last secant slope df/dh (m2/s), and ``out_end``
    [4, N] the end of step from that last interval (:func:`_end`: what :func:`finish_kernel` gives from those
    points, bit for bit, without evaluating them again). All arrays float64; ``min_depth`` (m), ``max_iter``,
    ``max_tries`` the NWM's 0.01, 100, 4."""
    for i in prange(depth.shape[0]):
        dxi, ni, ncci, s0i, bwi, zi, twcci = dx[i], n[i], ncc[i], s0[i], bw[i], z[i], twcc[i]
        qu, qc, qd, qli = qup[i], quc[i], qdp[i], ql[i]
        rs, sz, bfd = _reach_constants(s0i, zi, bwi, tw[i])
        d = depth[i] if depth[i] > 0.0 else 0.0
        h = d * 1.33 + min_depth
        h0 = d * 0.67
        qj0, rerr, aerr = 0.0, 1.0, min_depth
        it, maxit, tries = 0, max_iter, 0
        o_h0, o_h, o_q0, o_slope = h0, h, qj0, 0.0
        g0 = _geometry(h0, ni, ncci, rs, bwi, zi, sz, bfd, twcci)
        e_g, e_q = g0, 0.0  # the last interval's upper section and lower MC outflow
        while True:
            g = _geometry(h, ni, ncci, rs, bwi, zi, sz, bfd, twcci)
            qj0_new, qmc0 = _residual(g0, qj0, 0.0, dxi, s0i, dt, qu, qc, qd, qli)
            qj, _ = _residual(g, qmc0, 0.25, dxi, s0i, dt, qu, qc, qd, qli)
            den = qj0_new - qj
            h1 = h - qj * (h0 - h) / den if den != 0.0 else h
            if h1 < 0.0:
                h1 = h
            if h > 0.0:
                aerr = abs(h1 - h)
                rerr = aerr / h
            else:
                rerr, aerr = 0.0, 0.9
            dh = h0 - h
            o_h0, o_h, o_q0, o_slope = h0, h, qj0, (den / dh if dh != 0.0 else 0.0)
            e_g, e_q = g, qmc0
            qj0 = qj0_new
            h0 = h if h > 0.0 else 0.0
            g0 = g  # h0 is h (h >= 0 after the start): the next lower point's section is this upper one's
            h = h1 if h1 > 0.0 else 0.0
            it += 1
            if rerr > rtol and aerr >= atol and it <= maxit and h >= min_depth:
                continue
            if it >= maxit and tries < max_tries:  # widen the search and restart (SUBMUSKINGCUNGE "goto 110")
                tries += 1
                h *= 1.33
                h0 *= 0.67
                g0 = _geometry(h0, ni, ncci, rs, bwi, zi, sz, bfd, twcci)
                maxit += 25
                qj0 = 0.0
                it = 0
                if rerr > rtol and aerr >= atol:
                    continue
            break
        out_h0[i], out_h[i], out_q0[i], out_hn[i], out_slope[i] = o_h0, o_h, o_q0, h, o_slope
        out_end[0, i], out_end[1, i], out_end[2, i], out_end[3, i] = _end(e_g, e_q, dxi, s0i, dt, qu, qc, qd, qli)


@inline
def _end(geom, qmc0, dx, s0, dt, qup, quc, qdp, ql):  # pragma: no cover - compiled
    """The end of :func:`rivergraph.physics.nwm.mc_step` at the last upper point (its section ``geom``,
    :func:`_geometry`) with the lower point's MC outflow qmc0 as X's reference flow and X >= 0.25: the C4 guard,
    the outflow Qmc = C1 qup + C2 quc + C3 qdp + C4 and the NWM's negative-outflow rule (0 if C4 is a loss larger
    than the routed water, else max(C1 qup + C2 quc + C4, C1 qup + C3 qdp + C4)): ``(outflow, created, K, X)``,
    created the water that rule added. The same operations as torch's, in its order."""
    C1, C2, C3, C4, K, X = _coefficients(geom[0], geom[1], qmc0, 0.25, dx, s0, dt, ql)
    C4, routed = _guard_c4(C1, C2, C3, C4, qup, quc, qdp)
    qmc = routed + C4
    q, created = qmc, 0.0
    if qmc < 0.0:
        if C4 < 0.0 and abs(C4) > routed:
            q = 0.0
        else:
            a, b = C1 * qup + C2 * quc + C4, C1 * qup + C3 * qdp + C4
            q = a if a >= b else b
        created = q - qmc
    return q, created, K, X


@par
def finish_kernel(h0, h, q0, dx, n, ncc, s0, bw, tw, twcc, z, qup, quc, qdp, ql, dt, out_q, out_created, out_K,
                  out_X):  # pragma: no cover - compiled
    """:func:`_end` per reach i from the secant's last points: Qmc0 of the lower point h0 (its X from ``q0`` =
    ``Qj_0``), the section of the upper point h; writes the outflow, the water created, K and X."""
    for i in prange(h.shape[0]):
        dxi, ni, ncci, s0i, bwi, zi, twcci = dx[i], n[i], ncc[i], s0[i], bw[i], z[i], twcc[i]
        qu, qc, qd, qli = qup[i], quc[i], qdp[i], ql[i]
        rs, sz, bfd = _reach_constants(s0i, zi, bwi, tw[i])
        qmc0 = _residual(_geometry(h0[i], ni, ncci, rs, bwi, zi, sz, bfd, twcci), q0[i], 0.0, dxi, s0i, dt, qu, qc,
                         qd, qli)[1]
        out_q[i], out_created[i], out_K[i], out_X[i] = _end(_geometry(h[i], ni, ncci, rs, bwi, zi, sz, bfd, twcci),
                                                            qmc0, dxi, s0i, dt, qu, qc, qd, qli)


def finish_compiled(sr: SecantResult, ch: NWMChannel, dt, qup, quc, qdp, ql):
    """:func:`finish_kernel` on tensors: ``(outflow, created, K, X)`` of the active reaches in ``qdp``'s dtype
    (the no-gradient end of :func:`rivergraph.physics.nwm.mc_step`); ``sr.end`` where the compiled secant gave it
    (for these inputs: :func:`secant_depth_compiled`)."""
    if sr.end is not None:
        return sr.end
    N = sr.h.shape[0]
    outs = [np.empty(N) for _ in range(4)]
    kernel_threads()
    finish_kernel(*(_f64(v) for v in (sr.h0, sr.h, sr.qj0_prev)),
                  *_channel_f64(ch), *(_f64(v) for v in (qup, quc, qdp, ql)), float(dt), *outs)
    return tuple(torch.from_numpy(o).to(qdp.dtype) for o in outs)


def _f64(x: torch.Tensor) -> np.ndarray:
    """A float64 contiguous numpy view (or copy) of a detached CPU tensor."""
    return x.detach().to(torch.float64).contiguous().numpy()


def _channel_f64(ch: NWMChannel) -> tuple[np.ndarray, ...]:
    """The float64 arrays of ``ch``'s parameters in the kernels' order (dx, n, ncc, s0, bw, tw, twcc, z),
    converted once and kept on the channel while its tensors are the same, unmodified (their data pointers and
    in-place versions: a step's secant and end of step read the same channel, and a router passes one to every
    step where all reaches route water)."""
    fields = ch.fields()  # in the kernels' order
    key = tuple((t.data_ptr(), t._version, t.dtype, t.shape) for t in fields)
    got = ch.__dict__.get("_f64")
    if got is None or got[0] != key:
        got = (key, tuple(_f64(t) for t in fields))
        ch.__dict__["_f64"] = got
    return got[1]


def secant_depth_compiled(depth, ch: NWMChannel, dt, qup, quc, qdp, ql, rtol: float, atol: float) -> SecantResult:
    """:func:`rivergraph.physics.nwm.secant_depth` (same arguments and result) by :func:`secant_kernel`: CPU
    tensors, float64 arithmetic, results in ``depth``'s dtype; with the end of step of its last interval
    (``end``: outflow, created, K, X, read by :func:`finish_compiled`)."""
    N = depth.shape[0]
    outs, end = [np.empty(N) for _ in range(5)], np.empty((4, N))
    kernel_threads()
    secant_kernel(_f64(depth), *_channel_f64(ch), *(_f64(v) for v in (qup, quc, qdp, ql)), float(dt), float(rtol),
                  float(atol), MIN_DEPTH, MAX_ITER, MAX_TRIES, *outs, end)
    as_t = lambda o: torch.from_numpy(o).to(depth.dtype)  # noqa: E731
    return SecantResult(*(as_t(o) for o in outs), end=tuple(as_t(e) for e in end))
