"""Muskingum and Muskingum-Cunge routing on a river network.

Scheme (implicit in space, as RAPID and DDR): for every reach i and step t (dt seconds),

    Q_i(t) = c1 I_i(t) + c2 I_i(t-1) + c3 Q_i(t-1) + c4 q_i(t),   I_i(t) = sum_{j upstream} Q_j(t)

with lateral inflow q held constant over the step (c4 = c1 + c2), and

    D = 2K(1-X) + dt,  c1 = (dt - 2KX)/D,  c2 = (dt + 2KX)/D,  c3 = (2K(1-X) - dt)/D,  c4 = 2 dt / D

(Cunge 1969, "On the subject of a flood propagation computation method (Muskingum method)",
J. Hydraul. Res. 7(2); RAPID: David et al. 2011, J. Hydrometeorol. 12(5), eq. 4).

Modes:
    ``static``      K (s) and X (-) per reach, as RAPID (``musk_s``, ``musx`` columns).
    ``trapezoid``   Muskingum-Cunge: Manning's equation on a trapezoid (bottom width B, side slope z,
                    roughness n, bed slope S0) gives depth h for the reference flow Q; the exact
                    kinematic celerity c = dQ/dA = v [5/3 - 4/3 sqrt(1+z^2) A / (T P)]; K = dx/c;
                    Cunge's X = 0.5 (1 - Q / (T S0 c dx)) (Cunge 1969; Ponce & Yevjevich 1978,
                    J. Hydraul. Div. 104(12)).
    ``power_law``   as ``trapezoid`` with top width T = p d^q (DDR, Bindas et al. 2024, WRR): A = p d^(q+1)/(q+1),
                    hydraulic radius ~ A/T = d/(q+1), closed-form depth, c = (q + 5/3)/(q + 1) Q/A.

The reference flow is the 3-point average of the inflow at t-1 and t and the outflow at t-1
(Ponce & Chaganti 1994, J. Hydrol. 162, "Variable-parameter Muskingum-Cunge method revisited").

Positivity (``positivity=True``, default): all four coefficients are made non-negative by lowering X
to ``X_eff = min(X, dt/(2K), 1 - dt/(2K))``. For K >= dt/2 this only adds numerical diffusion where
c1 would be negative; for K < dt/2 (short or fast reaches) X_eff < 0 makes c3 = 0 and the reach a
linear-interpolation delay of K seconds (travel time preserved). Negative weighting factors are a
valid Muskingum-Cunge choice (Szel & Gaspar 2000, J. Hydraul. Res. 38(4), "On the negative weighting
factors in the Muskingum-Cunge scheme"). With non-negative coefficients and non-negative inputs, the
implicit network solve is a sum of non-negative terms, so flows are non-negative by construction
and no clamp is ever applied to discharge.
"""
from __future__ import annotations

from __future__ import annotations

from typing import Callable

import torch

from .channels import BOUNDS, MIN_REFERENCE_FLOW

__all__ = ["muskingum_coefficients", "cunge_K_X", "cunge_coefficient_fn", "mc_step"]

CoeffFn = Callable[..., tuple]


def muskingum_coefficients(K: torch.Tensor, X: torch.Tensor, dt: float, positivity: bool = True):
    """Muskingum coefficients (c1, c2, c3, c4) for routing step dt (s); see module docstring."""
    if positivity:
        h = dt / (2.0 * K)
        X = torch.minimum(torch.minimum(X, h), 1.0 - h)
    two_k = 2.0 * K
    D = two_k * (1.0 - X) + dt
    c1 = (dt - two_k * X) / D
    c2 = (dt + two_k * X) / D
    c3 = (two_k * (1.0 - X) - dt) / D
    c4 = 2.0 * dt / D
    return c1, c2, c3, c4



def cunge_K_X(Q, c, T, S0, dx):
    """Muskingum-Cunge K = dx/c (s) and X = 0.5 (1 - Q/(T S0 c dx)) clipped to [0, 0.5] (Cunge 1969)."""
    lo, hi = BOUNDS["celerity"]
    c = c.clamp(lo, hi)
    X = (0.5 * (1.0 - Q / (T * S0 * c * dx))).clamp(0.0, 0.5)
    return dx / c, X


def cunge_coefficient_fn(celerity: Callable, dt: float, positivity: bool):
    """Muskingum-Cunge coefficients at reference flow r for a channel whose ``celerity(Q, n, S0, a, b)``
    returns (c, T): the trapezoid (a, b = bottom width, side slope) or the power law (a, b = p, q)."""
    def fn(r, n, S0, a, b, dx):
        Q = r.clamp_min(MIN_REFERENCE_FLOW)
        c, T = celerity(Q, n, S0, a, b)
        K, X = cunge_K_X(Q, c, T, S0, dx)
        return muskingum_coefficients(K, X, dt, positivity)
    return fn


def mc_step(coeff_fn: CoeffFn, conservative: bool, dt: float, I_new, I_old, Q_old, S_prev, q, n_first: int,
            *theta):
    """One variable-parameter Muskingum-Cunge step for a slice of reaches; returns (Q(t), S(t), S(t-1) used).

    Coefficients come from ``coeff_fn(r, *theta)`` at the 3-point reference flow
    r = (I(t-1) + q + I(t) + q + Q(t-1)) / 3 (Ponce & Chaganti 1994). With D = 2 dt / c4,
    2KX = (c2 - c1) D / 2 and 2K(1-X) = c3 D + dt, the Muskingum storage is S = K X I + K (1-X) Q.

    ``conservative=True`` carries S as a state: continuity
    K X I(t) + K (1-X) Q(t) = S(t-1) + dt [(I(t-1)+I(t))/2 + q - (Q(t-1)+Q(t))/2] gives
    Q(t) = c1 I(t) + c4 q + (c4/dt) [S(t-1) + dt/2 (I(t-1) - Q(t-1))]. With constant K, X and
    S(t-1) = K X I(t-1) + K (1-X) Q(t-1) this is exactly the standard step; with variable K, X it carries
    the storage across the change of parameters instead of re-deriving it from the flows, which creates
    or destroys water (Todini 2007, HESS 11, 1645-1659). Each term is non-negative when every step's
    coefficients are (c1, c2, c3 >= 0), so Q(t) >= 0 by construction. The last ``n_first`` reaches of the
    slice take their first step: their S(t-1) is the storage implied by the flows.

    ``conservative=False`` is the standard form used by the NWM / t-route and DDR,
    Q(t) = c1 I(t) + c2 I(t-1) + c3 Q(t-1) + c4 q, where S(t-1) is re-derived from the flows with the new
    K, X each step (S_prev is ignored; the mass-balance report shows the resulting drift).
    """
    r = (I_old + I_new + Q_old + 2.0 * q) / 3.0
    c1, c2, c3, c4 = coeff_fn(r, *theta)
    D = 2.0 * dt / c4
    two_kx, two_k1x = (c2 - c1) * D / 2.0, c3 * D + dt
    if conservative:
        if n_first:
            m = S_prev.shape[0] - n_first
            s_std = 0.5 * (two_kx[m:] * I_old[m:] + two_k1x[m:] * Q_old[m:])
            S_prev = torch.cat([S_prev[:m], s_std])
        Q_new = c1 * I_new + c4 * q + (c4 / dt) * (S_prev + 0.5 * dt * (I_old - Q_old))
    else:
        S_prev = 0.5 * (two_kx * I_old + two_k1x * Q_old)
        Q_new = c1 * I_new + c2 * I_old + c3 * Q_old + c4 * q
    S_new = 0.5 * (two_kx * I_new + two_k1x * Q_new)
    return Q_new, S_new, S_prev
