"""The National Water Model's Muskingum-Cunge channel, as pure vectorised torch functions.

Every rule below is the NWM's, read from WRF-Hydro ``src/Routing/module_channel_routing.F90`` routine
``SUBMUSKINGCUNGE`` (NCAR/wrf_hydro_nwm_public; the code behind the NWM v3.0 retrospective, WRF-Hydro
v5.3) and cross-checked against t-route ``src/kernel/muskingum/MCsingleSegStime_f2py_NOLOOP.f90``
(NOAA-OWP/t-route; ``muskingcungenwm``, ``secant2_h``, ``hydraulic_geometry``, ``courant``), which
"exactly follows SUBMUSKINGCUNGE". Written here from those rules; no code copied.

Units: depths, widths, lengths m; flows m3/s; dt s; slopes m/m; Manning n s m^-1/3.

Channel (compound, NWM v2.1+): a trapezoid of bottom width ``bw``, side ``z`` = 1/ChSlp (horizontal per
vertical), bankfull depth ``bfd``; above bankfull a rectangular floodplain of width ``twcc`` (TopWdthCC)
and roughness ``ncc`` (nCC) carries the water above ``bfd``, while the trapezoid stays at its bankfull
area and wetted perimeter. Discharge is Manning's on the whole section with one hydraulic radius
R = (A + Ac)/(P + Pc) and a perimeter-weighted roughness (P n + Pc ncc)/(P + Pc).

The depth is found each step by the secant method on f(h) = Q_MC(h) - Q_Manning(h): the MC outflow with
coefficients evaluated at depth h minus the normal flow at h, to 1 % relative or 1 cm absolute change
(``rerror > 0.01 .and. aerror >= mindepth``), 100 iterations then up to 4 widened restarts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["NWMChannel", "bankfull_depth", "compound_section", "compound_flow", "nwm_celerity",
           "nwm_coefficients", "mc_residual", "secant_depth", "mc_step", "normal_depth", "safe_pow", "MIN_DEPTH",
           "DEPTH_RTOL"]

MIN_DEPTH = 0.01
"""m: the NWM's ``mindepth`` (SUBMUSKINGCUNGE): secant absolute tolerance, start offset and exit depth."""
DEPTH_RTOL = 0.01
"""The NWM's secant relative tolerance (``rerror > 0.01`` continues)."""
MAX_ITER, MAX_TRIES = 100, 4
"""SUBMUSKINGCUNGE: ``maxiter = 100``; on failure up to 4 restarts, each widening [h_0, h] by 0.67 / 1.33
and allowing 25 more iterations."""


@dataclass
class NWMChannel:
    """Per-reach NWM channel parameters, tensors [N] (Route_Link names in brackets).

    dx [Length] m, n [n], ncc [nCC], s0 [So], bw [BtmWdth] m, tw [TopWdth] m, twcc [TopWdthCC] m,
    z = 1/ChSlp (horizontal per vertical; :func:`rivergraph.io.readers.nwm_side_slope`).
    """

    dx: torch.Tensor
    n: torch.Tensor
    ncc: torch.Tensor
    s0: torch.Tensor
    bw: torch.Tensor
    tw: torch.Tensor
    twcc: torch.Tensor
    z: torch.Tensor

    def fields(self) -> tuple[torch.Tensor, ...]:
        """The parameter tensors, in the fields' order."""
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)

    def index(self, idx: torch.Tensor) -> "NWMChannel":
        return NWMChannel(*(x.index_select(0, idx) for x in self.fields()))

    @property
    def bfd(self) -> torch.Tensor:
        return bankfull_depth(self.bw, self.tw, self.z)

    def detach(self) -> "NWMChannel":
        return NWMChannel(*(x.detach() for x in self.fields()))


def bankfull_depth(bw, tw, z) -> torch.Tensor:
    """Bankfull depth (m) of the NWM trapezoid (SUBMUSKINGCUNGE, "locals"): ``(tw - bw) / (2 z)``; if
    ``bw == tw`` then ``bw / (2 z)``; if ``bw > tw`` "effectively infinite" ``bw / 1e-5``."""
    return torch.where(bw > tw, bw / 1e-5, torch.where(bw == tw, bw / (2.0 * z), (tw - bw) / (2.0 * z)))


def safe_pow(x: torch.Tensor, p: float) -> torch.Tensor:
    """x**p for x > 0, 0 for x <= 0, with a finite gradient at 0 (the NWM's R^(2/3), heads^(3/2))."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)).pow(p), torch.zeros_like(x))


def compound_section(h, bw, z, bfd, twcc, ncc=None):
    """Flow areas, wetted perimeters and hydraulic radius of the NWM compound channel at depth h.

    Returns ``(A, Ac, P, Pc, R, h_in, h_over)``: trapezoid area A = (bw + z h_in) h_in and perimeter
    P = bw + 2 h_in sqrt(1 + z^2) with h_in = min(h, bfd); floodplain Ac = twcc h_over and
    Pc = twcc + 2 h_over with h_over = h - bfd (0 when not above bankfull); R = (A + Ac)/(P + Pc).
    The floodplain is used only when ``h > bfd and twcc > 0 and ncc > 0`` (SUBMUSKINGCUNGE; t-route
    ``hydraulic_geometry``: with ``twcc <= 0`` the trapezoid extends upward). This is also the hook for
    the physics-first trapezoid channel: call it with the network's ``top_width_floodplain_m`` /
    ``n_floodplain`` to add the NWM floodplain to any trapezoid.
    """
    over = (h > bfd) & (twcc > 0)
    if ncc is not None:
        over = over & (ncc > 0)
    h_in = torch.where(over, bfd, h)
    h_over = torch.where(over, h - bfd, torch.zeros_like(h))
    A = (bw + z * h_in) * h_in
    P = bw + 2.0 * h_in * torch.sqrt(1.0 + z * z)
    Ac = twcc * h_over
    Pc = torch.where(over, twcc + 2.0 * h_over, torch.zeros_like(h))
    R = (A + Ac) / (P + Pc)
    return A, Ac, P, Pc, R, h_in, h_over


def compound_flow(h, ch: NWMChannel, bfd=None) -> torch.Tensor:
    """Manning normal flow (m3/s) of the compound section at depth h (SUBMUSKINGCUNGE, the term
    subtracted in ``Qj``): (A + Ac) R^(2/3) sqrt(s0) / n_eff, n_eff = (P n + Pc ncc)/(P + Pc)."""
    bfd = ch.bfd if bfd is None else bfd
    A, Ac, P, Pc, R, _, _ = compound_section(h, ch.bw, ch.z, bfd, ch.twcc, ch.ncc)
    n_eff = (P * ch.n + Pc * ch.ncc) / (P + Pc)
    return (A + Ac) * safe_pow(R, 2.0 / 3.0) * torch.sqrt(ch.s0) / n_eff


def nwm_celerity(h, ch: NWMChannel, bfd=None):
    """Kinematic celerity Ck (m/s) at depth h, as SUBMUSKINGCUNGE (and t-route ``secant2_h``).

    In the channel: Ck = sqrt(s0)/n [5/3 R^(2/3) - 2/3 R^(5/3) 2 sqrt(1+z^2)/(bw + 2 h_in z)];
    above bankfull the area-weighted mean of that and the floodplain's sqrt(s0)/ncc 5/3 h_over^(2/3):
    Ck = (Ck_channel A + Ck_fp Ac)/(A + Ac); floored at 0. Returns ``(Ck, section)`` with section the
    :func:`compound_section` tuple.
    """
    bfd = ch.bfd if bfd is None else bfd
    sec = compound_section(h, ch.bw, ch.z, bfd, ch.twcc, ch.ncc)
    A, Ac, P, Pc, R, h_in, h_over = sec
    rs = torch.sqrt(ch.s0)
    r23 = safe_pow(R, 2.0 / 3.0)  # R^(5/3) as R R^(2/3): one power, not two (the compiled secant's too)
    k_ch = rs / ch.n * (5.0 / 3.0 * r23 - 2.0 / 3.0 * (R * r23)
                        * (2.0 * torch.sqrt(1.0 + ch.z * ch.z) / (ch.bw + 2.0 * h_in * ch.z)))
    # the floodplain term only where it carries water (h_over > 0 needs nCC > 0 and TwCC > 0, as the NWM): not
    # rs / 0 * 0 = NaN for nCC = 0, which read as Ck = 0 made every such reach a pass-through
    fp = h_over > 0
    k_fp = torch.where(fp, rs / torch.where(fp, ch.ncc, torch.ones_like(ch.ncc)) * (5.0 / 3.0)
                       * safe_pow(h_over, 2.0 / 3.0), torch.zeros_like(h))
    tot = A + Ac
    ck = torch.where(tot > 0, (k_ch * A + k_fp * Ac) / torch.where(tot > 0, tot, torch.ones_like(tot)),
                     torch.zeros_like(h))
    return torch.clamp(ck, min=0.0), sec


def nwm_coefficients(h, q_ref, x_floor: float, ch: NWMChannel, dt: float, ql, bfd=None):
    """Muskingum-Cunge K, X and C1..C4 at depth h (SUBMUSKINGCUNGE, one "interval").

    K = max(dt, dx/Ck) (dt where Ck = 0). X = 0.5 (1 - q_ref/(2 W s0 Ck dx)) clipped to
    [x_floor, 0.5], W = twcc above bankfull else the top width bw + 2 z h; X = 0.5 where Ck = 0. The NWM
    uses x_floor = 0 with q_ref = the previous lower-interval residual ``Qj_0`` at the lower secant
    point h_0, and x_floor = 0.25 with q_ref = the MC outflow of the h_0 coefficients at the upper point
    h. D = K(1-X) + dt/2; C1 = (KX + dt/2)/D, C2 = (dt/2 - KX)/D, C3 = (K(1-X) - dt/2)/D, C4 = ql dt/D
    (channel loss off, ``ChannK <= 0``, as in the NWM v3.0 retrospective).
    Returns ``(C1, C2, C3, C4, K, X, section)``.
    """
    bfd = ch.bfd if bfd is None else bfd
    ck, sec = nwm_celerity(h, ch, bfd)
    A, Ac, P, Pc, R, h_in, h_over = sec
    pos = ck > 0
    ck_safe = torch.where(pos, ck, torch.ones_like(ck))
    K = torch.where(pos, torch.clamp(ch.dx / ck_safe, min=dt), torch.full_like(ck, dt))
    width = torch.where(h_over > 0, ch.twcc, ch.bw + 2.0 * ch.z * h)
    x = 0.5 * (1.0 - q_ref / (2.0 * width * ch.s0 * ck_safe * ch.dx))
    X = torch.where(pos, torch.clamp(x, x_floor, 0.5), torch.full_like(ck, 0.5))
    D = K * (1.0 - X) + 0.5 * dt
    C1 = (K * X + 0.5 * dt) / D
    C2 = (0.5 * dt - K * X) / D
    C3 = (K * (1.0 - X) - 0.5 * dt) / D
    C4 = ql * dt / D
    return C1, C2, C3, C4, K, X, sec


def _clip_c4(C1, C2, C3, C4, qup, quc, qdp):
    """SUBMUSKINGCUNGE's guard: a negative C4 (a loss) may not remove more than the routed water
    ``C1 qup + C2 quc + C3 qdp``."""
    routed = C1 * qup + C2 * quc + C3 * qdp
    return torch.where((C4 < 0) & (C4.abs() > routed), -routed, C4)


def mc_residual(h, q_ref, x_floor, ch, dt, qup, quc, qdp, ql, bfd=None):
    """One secant evaluation (SUBMUSKINGCUNGE lower or upper "interval"; t-route ``secant2_h``):
    ``Qj = (C1 qup + C2 quc + C3 qdp + C4) - Q_Manning(h)`` with the coefficients at h.
    Returns ``(Qj, Qmc, C1, C2, C3, C4)`` where Qmc is the MC outflow term."""
    bfd = ch.bfd if bfd is None else bfd
    C1, C2, C3, C4, _, _, sec = nwm_coefficients(h, q_ref, x_floor, ch, dt, ql, bfd)
    C4 = _clip_c4(C1, C2, C3, C4, qup, quc, qdp)
    A, Ac, P, Pc, R, _, _ = sec
    n_eff = (P * ch.n + Pc * ch.ncc) / (P + Pc)
    qmc = C1 * qup + C2 * quc + C3 * qdp + C4
    return qmc - (A + Ac) * safe_pow(R, 2.0 / 3.0) * torch.sqrt(ch.s0) / n_eff, qmc, C1, C2, C3, C4


@dataclass
class SecantResult:
    """Where SUBMUSKINGCUNGE's secant loop stopped, per reach: the last lower/upper points ``h0``, ``h``
    at which the final coefficients were evaluated, the ``Qj_0`` that set the lower point's X, the
    returned depth ``h_new`` and the last secant slope df/dh (for implicit-function gradients); ``end``, where
    a solver computes it with the last interval, the step's ``(outflow, created, K, X)`` there (no gradients: the
    compiled solver's, read by its ``finish``)."""

    h0: torch.Tensor
    h: torch.Tensor
    qj0_prev: torch.Tensor
    h_new: torch.Tensor
    slope: torch.Tensor
    end: tuple | None = None


@torch.no_grad()
def secant_depth(depth, ch: NWMChannel, dt, qup, quc, qdp, ql, rtol: float = DEPTH_RTOL,
                 atol: float = MIN_DEPTH) -> SecantResult:
    """SUBMUSKINGCUNGE's secant iteration, vectorised over reaches (each reach stops on its own).

    Start h = 1.33 depth + 0.01, h_0 = 0.67 depth; per iteration evaluate the lower point (X from the
    previous ``Qj_0``, floor 0), then the upper point (X from the lower point's MC outflow, floor
    0.25); h_1 = h - Qj (h_0 - h)/(Qj_0 - Qj) (h_1 = h if that is negative or Qj_0 = Qj); continue while
    |h_1 - h|/h > rtol and |h_1 - h| >= atol and iter <= maxiter, leave when h < 0.01 m; after maxiter
    iterations restart up to 4 times from h 1.33x, h_0 0.67x, Qj_0 = 0, with 25 more iterations.
    (``atol`` <= 0.01: the NWM's first loop test compares its initial ``aerror = 0.01`` with it.) Called only for reaches with water to route (the caller's mask). No autograd (see :func:`mc_step`).
    """
    dtype = depth.dtype
    N = depth.shape[0]
    h = depth.clamp(min=0) * 1.33 + MIN_DEPTH
    h0 = depth.clamp(min=0) * 0.67
    qj0 = torch.zeros_like(h)
    rerr = torch.ones_like(h)
    aerr = torch.full_like(h, MIN_DEPTH)
    it = torch.zeros(N, dtype=torch.long, device=h.device)
    maxit = torch.full_like(it, MAX_ITER)
    tries = torch.zeros_like(it)
    out_h0, out_h, out_q0, out_slope = h0.clone(), h.clone(), qj0.clone(), torch.zeros_like(h)
    bfd = ch.bfd
    run = torch.ones(N, dtype=torch.bool, device=h.device)
    while True:
        idx = run.nonzero().flatten()
        if idx.numel() == 0:
            break
        c = ch.index(idx)
        b = bfd.index_select(0, idx)
        a_up, a_uc, a_dp, a_ql = (v.index_select(0, idx) for v in (qup, quc, qdp, ql))
        hh0, hh, q0 = h0.index_select(0, idx), h.index_select(0, idx), qj0.index_select(0, idx)
        qj0_new, qmc0, *_ = mc_residual(hh0, q0, 0.0, c, dt, a_up, a_uc, a_dp, a_ql, b)
        qj, *_ = mc_residual(hh, qmc0, 0.25, c, dt, a_up, a_uc, a_dp, a_ql, b)
        den = qj0_new - qj
        ok = den != 0
        h1 = torch.where(ok, hh - qj * (hh0 - hh) / torch.where(ok, den, torch.ones_like(den)), hh)
        h1 = torch.where(h1 < 0, hh, h1)
        hpos = hh > 0
        re = torch.where(hpos, (h1 - hh).abs() / torch.where(hpos, hh, torch.ones_like(hh)), torch.zeros_like(hh))
        ae = torch.where(hpos, (h1 - hh).abs(), torch.full_like(hh, 0.9))
        dh = hh0 - hh
        slope = torch.where(dh != 0, den / torch.where(dh != 0, dh, torch.ones_like(dh)), torch.zeros_like(dh))
        out_h0[idx], out_h[idx], out_q0[idx], out_slope[idx] = hh0, hh, q0, slope
        rerr[idx], aerr[idx] = re, ae
        qj0[idx] = qj0_new
        h0[idx] = hh.clamp(min=0)
        h[idx] = h1.clamp(min=0)
        it[idx] += 1
        cont = (rerr > rtol) & (aerr >= atol) & (it <= maxit) & (h >= MIN_DEPTH) & run
        stopped = run & ~cont
        retry = stopped & (it >= maxit) & (tries < MAX_TRIES)
        if retry.any():
            tries[retry] += 1
            h[retry] *= 1.33
            h0[retry] *= 0.67
            maxit[retry] += 25
            qj0[retry] = 0.0
            it[retry] = 0
            cont = cont | (retry & (rerr > rtol) & (aerr >= atol))
        run = cont
    return SecantResult(out_h0.to(dtype), out_h.to(dtype), out_q0, h.to(dtype), out_slope)


def mc_step(qup, quc, qdp, ql, depth, ch: NWMChannel, dt: float, rtol: float = DEPTH_RTOL,
            atol: float = MIN_DEPTH, depth_solver: Callable[..., SecantResult] | None = None,
            finish: Callable | None = None):
    """One NWM Muskingum-Cunge step for every reach (SUBMUSKINGCUNGE; t-route ``muskingcungenwm``).

    Args:
        qup, quc: upstream inflow at the previous and current step (m3/s); the NWM's
            ``drive_CHANNEL_RSL`` passes the upstream outflow of the previous 300 s sub-step for both.
        qdp: this reach's outflow at the previous step; ql: lateral inflow (m3/s); depth: previous depth
            (m), the secant's starting point.
        depth_solver: the secant iteration, called as :func:`secant_depth` (the default) is; the compiled CPU
            one is :func:`rivergraph.engine.compiled_nwm.secant_depth_compiled` (the same values to rounding).
        finish: the step's end after the secant (the final coefficients, the C4 guard and the negative-outflow
            rule, and its gradients where ``needs_grad``) by this callable instead of torch's, called as
            ``_finish`` is: the compiled :func:`rivergraph.engine.compiled_nwm_adjoint.finish` (the same values to
            rounding, its gradients by a hand-written adjoint of the same implicit-function rule).
    Returns:
        ``(qdc, depth_new, created, K, X)``: the outflow, the new depth (detached; it only seeds the next
        secant), the outflow the NWM's negative-outflow rule added (m3/s, >= 0) and the final K (s), X
        (the Muskingum storage, see :mod:`rivergraph.engine.lagged`); K = dt, X = 0.5 where nothing flows.

    Rules: nothing is solved where ``ql, qup, qdp`` are all <= 0 (qdc = 0, depth 0). The final outflow
    uses the coefficients of the last upper secant point: Qmc = C1 qup + C2 quc + C3 qdp + C4; if Qmc < 0
    the NWM returns max(C1 qup + C2 quc + C4, C1 qup + C3 qdp + C4) (0 if C4 is a loss larger than the
    routed water); that replacement creates water, returned as ``created``.
    Gradients: the depth iteration runs without autograd; the final coefficients are re-evaluated
    differentiably with the depth carried by the implicit-function rule dh/dtheta = -(df/dtheta)/(df/dh)
    at the secant's fixed point (df/dh by autograd along h = h_0), which leaves every value unchanged.
    """
    active = (ql > 0) | (qup > 0) | (qdp > 0)
    idx = active.nonzero().flatten()
    zero = torch.zeros_like(qdp)
    if idx.numel() == 0:
        return zero, zero.detach(), zero, torch.full_like(qdp, dt), torch.full_like(qdp, 0.5)
    every = idx.numel() == qdp.shape[0]  # every reach routes water: no gather, no scatter
    c = ch if every else ch.index(idx)
    a_up, a_uc, a_dp, a_ql = (v if every else v.index_select(0, idx) for v in (qup, quc, qdp, ql))
    solve = secant_depth if depth_solver is None else depth_solver
    sr = solve(depth.detach() if every else depth.detach().index_select(0, idx), c, dt, a_up.detach(),
               a_uc.detach(), a_dp.detach(), a_ql.detach(), rtol, atol)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (a_up, a_uc, a_dp, a_ql,
                                                                            *c.fields()))
    q_out, created, K, X = (_finish if finish is None else finish)(sr, c, dt, a_up, a_uc, a_dp, a_ql, needs_grad)
    if every:
        return q_out, sr.h_new.to(zero.dtype).detach(), created, K, X
    qdc = zero.index_put((idx,), q_out)
    depth_new = zero.detach().index_put((idx,), sr.h_new.to(zero.dtype))
    cr = zero.index_put((idx,), created)
    K_all = torch.full_like(qdp, dt).index_put((idx,), K)
    X_all = torch.full_like(qdp, 0.5).index_put((idx,), X)
    return qdc, depth_new, cr, K_all, X_all


def _finish(sr: SecantResult, c: NWMChannel, dt: float, a_up, a_uc, a_dp, a_ql, needs_grad: bool):
    """:func:`mc_step` after the secant, in torch: ``(outflow, created, K, X)`` of the active reaches; with
    ``needs_grad`` differentiable by the implicit-function rule (:func:`mc_step`'s docstring)."""
    b = c.bfd
    h0, h = sr.h0, sr.h
    if needs_grad:
        # implicit-function gradients of the fixed point f(h, h0 = h) = 0 the secant converges to:
        # shift both points by -(f - f.detach()) / (df/dh), df/dh the total derivative along h = h0
        dfdh = _fixed_point_slope(h0, h, sr.qj0_prev, c, dt, a_up, a_uc, a_dp, a_ql)
        _, qmc0, *_ = mc_residual(h0, sr.qj0_prev, 0.0, c, dt, a_up, a_uc, a_dp, a_ql, b)
        qj, *_ = mc_residual(h, qmc0, 0.25, c, dt, a_up, a_uc, a_dp, a_ql, b)
        good = dfdh != 0
        shift = torch.where(good, -(qj - qj.detach()) / torch.where(good, dfdh, torch.ones_like(dfdh)),
                            torch.zeros_like(qj))
        h0, h = h0 + shift, h + shift
    _, qmc0, *_ = mc_residual(h0, sr.qj0_prev, 0.0, c, dt, a_up, a_uc, a_dp, a_ql, b)
    C1, C2, C3, C4, K, X, _ = nwm_coefficients(h, qmc0, 0.25, c, dt, a_ql, b)
    C4 = _clip_c4(C1, C2, C3, C4, a_up, a_uc, a_dp)
    routed = C1 * a_up + C2 * a_uc + C3 * a_dp
    qmc = routed + C4
    loss_exceeds = (C4 < 0) & (C4.abs() > routed)
    repl = torch.where(loss_exceeds, torch.zeros_like(qmc),
                       torch.maximum(C1 * a_up + C2 * a_uc + C4, C1 * a_up + C3 * a_dp + C4))
    neg = qmc < 0
    q_out = torch.where(neg, repl, qmc)
    created = torch.where(neg, q_out - qmc, torch.zeros_like(qmc))
    return q_out, created, K, X


def _fixed_point_slope(h0, h, qj0_prev, c: NWMChannel, dt: float, *flows) -> torch.Tensor:
    """df/dh of the secant's fixed point f(h, h0 = h) (:func:`mc_step`), the total derivative along h = h0,
    by autograd on detached inputs: a graph of its own, freed at once, its saved tensors kept by identity hooks
    (inside a segment of :func:`torch.utils.checkpoint.checkpoint`, the checkpoint's hooks would make this
    backward recompute the whole segment, and keep what it recomputed)."""
    det = c.detach()
    flows = [x.detach() for x in flows]
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x):
        s = torch.zeros_like(h, requires_grad=True)
        _, qmc0, *_ = mc_residual(h0.detach() + s, qj0_prev, 0.0, det, dt, *flows, det.bfd)
        qj, *_ = mc_residual(h.detach() + s, qmc0, 0.25, det, dt, *flows, det.bfd)
        return torch.autograd.grad(qj.sum(), s)[0]


@torch.no_grad()
def normal_depth(Q, ch: NWMChannel, iters: int = 200) -> torch.Tensor:
    """Depth (m) at which the compound channel's Manning flow equals Q (bisection to float precision;
    Q <= 0 gives 0; the in-channel depth where two depths carry Q). Used to start the NWM's depth state from a given flow (the NWM starts from its
    restart file's depth)."""
    bfd = ch.bfd
    wet = Q > 0
    if not bool(wet.any()):
        return torch.zeros_like(Q)
    # the NWM's compound flow drops just above bankfull (the floodplain's wetted perimeter): flows between
    # Q(bfd+) and Q(bfd-) have two depths; take the in-channel one
    in_channel = Q <= compound_flow(bfd, ch, bfd)
    lo = torch.where(in_channel, torch.zeros_like(Q), bfd)
    hi = torch.where(in_channel, bfd, torch.maximum(2.0 * bfd, torch.ones_like(Q)))
    for _ in range(60):   # bracket: double hi until it carries Q
        small = compound_flow(hi, ch, bfd) < Q
        if not small.any():
            break
        hi = torch.where(small, hi * 2.0, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = compound_flow(mid, ch, bfd) < Q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        # reaches with Q <= 0 (depth 0) do not hold the loop: their bracket only halves
        if bool((((hi - lo) <= 1e-12 * hi.clamp(min=1e-12)) | ~wet).all()):
            break
    return torch.where(wet, 0.5 * (lo + hi), torch.zeros_like(Q))
