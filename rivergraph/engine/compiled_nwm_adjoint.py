"""The NWM channel's end of step with its hand-written adjoint (numba, CPU): mode "nwm" with gradients.

:func:`rivergraph.physics.nwm.mc_step` differentiates its step by the implicit-function rule at the secant's fixed
point: with f(h_0, h) = Q_MC(h) - Q_Manning(h) (the upper evaluation, X from the lower point's MC outflow) and the
outflow F(h_0, h, theta) (the final coefficients, the C4 guard, the negative-outflow rule), both points shifted by
dh = -(df/dtheta)/(df/dh), df/dh the total derivative along h = h_0,

    dF/dtheta = dF/dtheta|_h + (dF/dh_0 + dF/dh) dh/dtheta = dF/dtheta|_h - (a / s) df/dtheta,
    a = g (dF/dh_0 + dF/dh),  s = df/dh_0 + df/dh

for a cotangent g of the outflow (dh = 0 where s = 0, as torch's). In torch that is five differentiable residual
evaluations per step and their graph (~290 floats per reach-step); here the backward recomputes the two
evaluations of the last secant interval from the saved points (h_0, h, ``Qj_0``) and flows (seven values per
reach-step, besides the channel's own tensors) and runs reverse mode through them twice, once seeded by g on F and once by 1 on f: theta takes the flows qup, quc,
qdp, ql and the eight channel parameters. Every branch is torch's (:mod:`rivergraph.physics.nwm`): gradients flow
through the side a ``torch.where`` takes, a clamp passes its gradient where its input is inside its bounds (ends
included), ``torch.maximum`` splits a tie in halves; ``x^p`` of ``safe_pow`` has derivative p x^(p-1) for x > 0.
The forward is :func:`rivergraph.engine.compiled_nwm.finish_compiled` (the values of the no-gradient path, bit
for bit). Tested against torch's gradients to 1e-9 relative on random channels (every input), and end to end.

Units: depths, widths, lengths m; flows m3/s; dt s; slopes m/m; Manning n s m^-1/3.
"""
from __future__ import annotations

import numpy as np
import torch

from ..physics.nwm import NWMChannel, SecantResult
from .compiled_base import kernel_threads, prange
from .compiled_nwm import (_channel_f64, _coefficients, _f64, _guard_c4, _reach_constants, _safe_pow, _section,
                           finish_compiled, inline, par)

__all__ = ["finish", "finish_with_grad", "finish_vjp_kernel"]

_N_GRADS = 12
"""The cotangents a step returns: qup, quc, qdp, ql, then dx, n, ncc, s0, bw, tw, twcc, z."""


_C1, _C2, _C3, _ROUTED, _C4G = 22, 23, 24, 26, 27
"""Positions in a :func:`_tape` of C1, C2, C3, the routed water C1 qup + C2 quc + C3 qdp and the guarded C4."""


@inline
def _tape(h, q_ref, xf, dx, n, ncc, s0, bw, z, twcc, rs, sz, bfd, dt, ql, qup, quc, qdp):  # pragma: no cover
    """One secant evaluation at depth h (m) with X's reference flow q_ref (m3/s) and floor xf, as
    :func:`rivergraph.physics.nwm.mc_residual`, by :mod:`~rivergraph.engine.compiled_nwm`'s section, coefficients
    and C4 guard, keeping what its reverse pass (:func:`_tape_vjp`) reads: the section, the celerity's parts, K,
    X, the coefficients and the Manning flow."""
    A, Ac, P, Pc, R, h_in, h_over = _section(h, bw, z, sz, bfd, twcc, ncc)
    tot = A + Ac
    Pt = P + Pc
    r23 = _safe_pow(R, 2.0 / 3.0)
    w = 2.0 * sz / (bw + 2.0 * h_in * z)
    k_ch = rs / n * (5.0 / 3.0 * r23 - 2.0 / 3.0 * (R * r23) * w)  # _celerity's parts
    ho23 = _safe_pow(h_over, 2.0 / 3.0)
    kfp = rs / ncc * (5.0 / 3.0) * ho23 if h_over > 0.0 else 0.0
    ck_raw = (k_ch * A + kfp * Ac) / tot if tot > 0.0 else 0.0
    ck = ck_raw if ck_raw > 0.0 else 0.0
    width = twcc if h_over > 0.0 else bw + 2.0 * z * h
    C1, C2, C3, C4, K, X = _coefficients(ck, width, q_ref, xf, dx, s0, dt, ql)
    C4g, routed = _guard_c4(C1, C2, C3, C4, qup, quc, qdp)
    n_eff = (P * n + Pc * ncc) / Pt
    QM = tot * r23 * rs / n_eff
    return (h, q_ref, xf, h_in, h_over, A, Ac, P, Pc, tot, Pt, R, r23, w, k_ch, ho23, kfp, ck_raw, ck, width, K, X,
            C1, C2, C3, C4, routed, C4g, n_eff, QM)


@inline
def _tape_vjp(t, gC1, gC2, gC3, gC4g, gQM, dx, n, ncc, s0, bw, z, twcc, rs, sz, bfd, dt, ql, qup, quc,
              qdp):  # pragma: no cover - compiled
    """Reverse mode through one :func:`_tape` evaluation ``t`` with cotangents of C1, C2, C3, the guarded C4 and the
    Manning flow: ``(g_h, g_qref, g_qup, g_quc, g_qdp, g_ql, g_dx, g_n, g_ncc, g_s0, g_bw, g_z, g_twcc, g_rs, g_sz,
    g_bfd)`` (the last three: of sqrt(s0), sqrt(1 + z^2) and the bankfull depth, chained by the caller)."""
    (h, q_ref, xf, h_in, h_over, A, Ac, P, Pc, tot, Pt, R, r23, w, k_ch, ho23, kfp, ck_raw, ck, width, K, X,
     C1, C2, C3, C4, routed, C4g, n_eff, QM) = t
    gh = gq = gqup = gquc = gqdp = gql = gdx = gn = gncc = gs0 = gbw = gz = gtwcc = grs = gsz = gbfd = 0.0
    # the C4 guard: a clipped C4 is -(C1 qup + C2 quc + C3 qdp)
    gC4 = gC4g
    if C4 < 0.0 and abs(C4) > routed:
        gC4 = 0.0
        gC1 -= gC4g * qup
        gC2 -= gC4g * quc
        gC3 -= gC4g * qdp
        gqup -= gC4g * C1
        gquc -= gC4g * C2
        gqdp -= gC4g * C3
    # the coefficients of D = K (1 - X) + dt/2
    D = K * (1.0 - X) + 0.5 * dt
    gql += gC4 * dt / D
    gD = -(gC1 * C1 + gC2 * C2 + gC3 * C3 + gC4 * C4) / D
    gKX = (gC1 - gC2) / D
    gK1X = gC3 / D + gD
    gK = gKX * X + gK1X * (1.0 - X)
    gX = (gKX - gK1X) * K
    gck = 0.0
    if ck > 0.0:  # K = max(dx / ck, dt), X = clip(x, xf, 0.5), x = 0.5 (1 - q_ref / den)
        Kr = dx / ck
        den = 2.0 * width * s0 * ck * dx
        x = 0.5 * (1.0 - q_ref / den)
        if xf <= x <= 0.5:  # X = x inside the clamp (its ends included, as torch's)
            gden = 0.5 * gX * q_ref / (den * den)
            gq -= 0.5 * gX / den
            gwidth = gden * 2.0 * s0 * ck * dx
            gs0 += gden * 2.0 * width * ck * dx
            gck += gden * 2.0 * width * s0 * dx
            gdx += gden * 2.0 * width * s0 * ck
            if h_over > 0.0:
                gtwcc += gwidth
            else:
                gbw += gwidth
                gz += gwidth * 2.0 * h
                gh += gwidth * 2.0 * z
        if Kr >= dt:
            gdx += gK / ck
            gck -= gK * Kr / ck
    # the celerity: (k_ch A + kfp Ac) / tot, floored at 0
    gA = gAc = gtot = gk_ch = gkfp = 0.0
    if tot > 0.0 and ck_raw >= 0.0:
        gnum = gck / tot
        gtot -= gck * ck_raw / tot
        gk_ch += gnum * A
        gA += gnum * k_ch
        gkfp += gnum * Ac
        gAc += gnum * kfp
    gh_over = 0.0
    if h_over > 0.0:
        a = rs / ncc
        grs += gkfp * (5.0 / 3.0) * ho23 / ncc
        gncc -= gkfp * (5.0 / 3.0) * ho23 * a / ncc
        gh_over += gkfp * a * (5.0 / 3.0) * (2.0 / 3.0) * ho23 / h_over
    B = 5.0 / 3.0 * r23 - 2.0 / 3.0 * (R * r23) * w
    ga = gk_ch * B
    gB = gk_ch * rs / n
    grs += ga / n
    gn -= ga * rs / (n * n)
    gr23 = gB * (5.0 / 3.0 - 2.0 / 3.0 * R * w)
    gR = -gB * 2.0 / 3.0 * r23 * w
    gw = -gB * 2.0 / 3.0 * R * r23
    wb = bw + 2.0 * h_in * z
    gsz += gw * 2.0 / wb
    gwb = -gw * w / wb
    gbw += gwb
    gh_in = gwb * 2.0 * z
    gz += gwb * 2.0 * h_in
    # the Manning flow tot R^(2/3) sqrt(s0) / n_eff, n_eff = (P n + Pc ncc) / Pt
    gtot += gQM * r23 * rs / n_eff
    gr23 += gQM * tot * rs / n_eff
    grs += gQM * tot * r23 / n_eff
    gne = -gQM * QM / n_eff
    gP = gne * n / Pt
    gn += gne * P / Pt
    gPc = gne * ncc / Pt
    gncc += gne * Pc / Pt
    gPt = -gne * n_eff / Pt
    # the section
    if R > 0.0:
        gR += gr23 * (2.0 / 3.0) * r23 / R
    gtot += gR / Pt
    gPt -= gR * R / Pt
    gP += gPt
    gPc += gPt
    gA += gtot
    gAc += gtot
    gbw += gA * h_in + gP
    gz += gA * h_in * h_in
    gh_in += gA * (bw + 2.0 * z * h_in) + gP * 2.0 * sz
    gsz += gP * 2.0 * h_in
    gtwcc += gAc * h_over
    gh_over += gAc * twcc
    if h_over > 0.0:  # above bankfull (h_over = h - bfd > 0 exactly where the floodplain is used)
        gtwcc += gPc
        gh_over += 2.0 * gPc
        gbfd += gh_in - gh_over
        gh += gh_over
    else:
        gh += gh_in
    return gh, gq, gqup, gquc, gqdp, gql, gdx, gn, gncc, gs0, gbw, gz, gtwcc, grs, gsz, gbfd


@inline
def _total(t0, t1, sF, sq, tw, dx, n, ncc, s0, bw, z, twcc, rs, sz, bfd, dt, ql, qup, quc,
           qdp):  # pragma: no cover - compiled
    """Reverse mode through a step's last interval (lower evaluation t0, upper t1 with X from t0's MC outflow)
    with cotangents sF of the outflow (the negative-outflow rule of :func:`rivergraph.physics.nwm._finish`) and
    sq of the residual f = Qmc - Q_Manning at t1: ``(g_h0 + g_h, then the cotangents of qup, quc, qdp, ql, dx, n,
    ncc, s0, bw, tw, twcc, z)``."""
    C1, C2, C3, routed, C4g = t1[_C1], t1[_C2], t1[_C3], t1[_ROUTED], t1[_C4G]
    # the weights of C1 qup, C2 quc, C3 qdp and C4 in sF F + sq f
    wu = wc = wd = w4 = sq
    if not routed + C4g < 0.0:
        wu += sF
        wc += sF
        wd += sF
        w4 += sF
    elif not (C4g < 0.0 and abs(C4g) > routed):  # max(C1 qup + C2 quc + C4, C1 qup + C3 qdp + C4)
        ra, rb = C1 * qup + C2 * quc + C4g, C1 * qup + C3 * qdp + C4g
        wa = sF if ra > rb else (0.5 * sF if ra == rb else 0.0)
        wu += sF
        w4 += sF
        wc += wa
        wd += sF - wa
    g1 = _tape_vjp(t1, wu * qup, wc * quc, wd * qdp, w4, -sq, dx, n, ncc, s0, bw, z, twcc, rs, sz, bfd, dt, ql, qup,
                   quc, qdp)
    gm = g1[1]  # of the lower point's MC outflow C1 qup + C2 quc + C3 qdp + C4 (the upper X's reference flow)
    g0 = _tape_vjp(t0, gm * qup, gm * quc, gm * qdp, gm, 0.0, dx, n, ncc, s0, bw, z, twcc, rs, sz, bfd, dt, ql,
                   qup, quc, qdp)
    gqup = g0[2] + g1[2] + wu * C1 + gm * t0[_C1]
    gquc = g0[3] + g1[3] + wc * C2 + gm * t0[_C2]
    gqdp = g0[4] + g1[4] + wd * C3 + gm * t0[_C3]
    gs0 = g0[9] + g1[9] + (g0[13] + g1[13]) * 0.5 / rs
    gbw = g0[10] + g1[10]
    gz = g0[11] + g1[11] + (g0[14] + g1[14]) * z / sz
    gbfd = g0[15] + g1[15]
    gtw = 0.0
    if bw > tw:  # bankfull depth bw / 1e-5
        gbw += gbfd / 1e-5
    elif bw == tw:  # bw / (2 z)
        gbw += gbfd / (2.0 * z)
        gz -= gbfd * bfd / z
    else:  # (tw - bw) / (2 z)
        gtw += gbfd / (2.0 * z)
        gbw -= gbfd / (2.0 * z)
        gz -= gbfd * bfd / z
    return (g0[0] + g1[0], gqup, gquc, gqdp, g0[5] + g1[5], g0[6] + g1[6], g0[7] + g1[7], g0[8] + g1[8], gs0, gbw,
            gtw, g0[12] + g1[12], gz)


@par
def finish_vjp_kernel(h0, h, q0, dx, n, ncc, s0, bw, tw, twcc, z, qup, quc, qdp, ql, dt, g_out,
                      out):  # pragma: no cover - compiled
    """The cotangents of :func:`~rivergraph.engine.compiled_nwm.finish_kernel`'s outflow (module docstring), per
    reach i: ``out`` [12, N] receives those of qup, quc, qdp, ql, dx, n, ncc, s0, bw, tw, twcc, z for the outflow's
    cotangent ``g_out``. Inputs as finish_kernel's (float64 [N]; h0, h, q0 the secant's last points)."""
    for i in prange(h.shape[0]):
        dxi, ni, ncci, s0i, bwi, twi, zi, twcci = dx[i], n[i], ncc[i], s0[i], bw[i], tw[i], z[i], twcc[i]
        qu, qc, qd, qli = qup[i], quc[i], qdp[i], ql[i]
        rs, sz, bfd = _reach_constants(s0i, zi, bwi, twi)
        t0 = _tape(h0[i], q0[i], 0.0, dxi, ni, ncci, s0i, bwi, zi, twcci, rs, sz, bfd, dt, qli, qu, qc, qd)
        qmc0 = t0[_ROUTED] + t0[_C4G]  # the lower point's MC outflow
        t1 = _tape(h[i], qmc0, 0.25, dxi, ni, ncci, s0i, bwi, zi, twcci, rs, sz, bfd, dt, qli, qu, qc, qd)
        ga = _total(t0, t1, g_out[i], 0.0, twi, dxi, ni, ncci, s0i, bwi, zi, twcci, rs, sz, bfd, dt, qli, qu, qc, qd)
        gf = _total(t0, t1, 0.0, 1.0, twi, dxi, ni, ncci, s0i, bwi, zi, twcci, rs, sz, bfd, dt, qli, qu, qc, qd)
        c = ga[0] / gf[0] if gf[0] != 0.0 else 0.0  # a / s: the points' shift per unit residual
        for k in range(_N_GRADS):
            out[k, i] = ga[k + 1] - c * gf[k + 1]


class _CompiledFinish(torch.autograd.Function):
    """:func:`~rivergraph.engine.compiled_nwm.finish_compiled` forward (the compiled secant's own end of step where
    it gave one), :func:`finish_vjp_kernel` backward; only the outflow is differentiable."""

    @staticmethod
    def forward(ctx, ch: NWMChannel, dt: float, sr: SecantResult, h0, h, q0, qup, quc, qdp, ql, *fields):
        flows = (qup, quc, qdp, ql)
        q, created, K, X = finish_compiled(sr, ch, dt, *flows)
        ctx.mark_non_differentiable(created, K, X)
        # the channel's tensors saved too: torch then refuses a backward after an in-place change of them; ctx.ch
        # keeps the channel's float64 copy (compiled_nwm._channel_f64), one for every step
        ctx.save_for_backward(h0, h, q0, *flows, *fields)
        ctx.ch, ctx.dt = ch, float(dt)
        return q, created, K, X

    @staticmethod
    def backward(ctx, g_q, *_):
        h0, h, q0, *flows = ctx.saved_tensors[:7]
        out = np.empty((_N_GRADS, h.shape[0]))
        kernel_threads()
        finish_vjp_kernel(*(_f64(v) for v in (h0, h, q0)), *_channel_f64(ctx.ch), *(_f64(v) for v in flows),
                          ctx.dt, _f64(g_q), out)
        inputs = (*flows, *ctx.ch.fields())
        grads = [torch.from_numpy(out[k]).to(x.dtype) if ctx.needs_input_grad[6 + k] else None
                 for k, x in enumerate(inputs)]
        return (None, None, None, None, None, None, *grads)


def finish_with_grad(sr: SecantResult, ch: NWMChannel, dt: float, qup, quc, qdp, ql):
    """The end of :func:`rivergraph.physics.nwm.mc_step` compiled, differentiable (module docstring):
    ``(outflow, created, K, X)`` of the active reaches in ``qdp``'s dtype, the outflow with gradients for the
    flows and ``ch``'s parameters."""
    return _CompiledFinish.apply(ch, dt, sr, sr.h0.detach(), sr.h.detach(), sr.qj0_prev.detach(), qup, quc, qdp,
                                 ql, *ch.fields())


def finish(sr: SecantResult, ch: NWMChannel, dt: float, qup, quc, qdp, ql, needs_grad: bool):
    """The compiled end of step for :func:`rivergraph.physics.nwm.mc_step`'s ``finish``: with gradients
    :func:`finish_with_grad`, else :func:`~rivergraph.engine.compiled_nwm.finish_compiled` (no graph)."""
    return (finish_with_grad if needs_grad else finish_compiled)(sr, ch, dt, qup, quc, qdp, ql)
