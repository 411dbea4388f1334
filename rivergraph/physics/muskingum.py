"""Muskingum routing of one reach and one step: coefficients, storage, the two update forms (pure functions).

Scheme (implicit in space, as RAPID and DDR): for every reach i and step t (dt seconds),

    Q_i(t) = c1 I_i(t) + c2 I_i(t-1) + c3 Q_i(t-1) + c4 q_i(t),   I_i(t) = sum_{j upstream} Q_j(t)

with lateral inflow q held constant over the step (c4 = c1 + c2), and

    D = 2K(1-X) + dt,  c1 = (dt - 2KX)/D,  c2 = (dt + 2KX)/D,  c3 = (2K(1-X) - dt)/D,  c4 = 2 dt / D

(Cunge 1969, "On the subject of a flood propagation computation method (Muskingum method)",
J. Hydraul. Res. 7(2); RAPID: David et al. 2011, J. Hydrometeorol. 12(5), eq. 4). The Muskingum storage
is S = K X I + K (1-X) Q (m3; :func:`muskingum_storage`, the only place it is written).

K (s) and X (-) come from a channel geometry of :mod:`rivergraph.physics.channels` (static per reach, or
Muskingum-Cunge from the flow).

Positivity (``positivity=True``, default): all four coefficients are made non-negative by lowering X
to ``X_eff = min(X, dt/(2K), 1 - dt/(2K))``. For K >= dt/2 this only adds numerical diffusion where
c1 would be negative; for K < dt/2 (short or fast reaches) X_eff < 0 makes c3 = 0 and the reach a
linear-interpolation delay of K seconds (travel time preserved). Negative weighting factors are a
valid Muskingum-Cunge choice (Szel & Gaspar 2000, J. Hydraul. Res. 38(4), "On the negative weighting
factors in the Muskingum-Cunge scheme"). With non-negative coefficients and non-negative inputs, the
implicit network solve is a sum of non-negative terms, so flows are non-negative by construction
and no clamp is ever applied to discharge. In floating point the conservative step subtracts
(S + dt/2 (I_old - Q_old)), so a flow whose exact value is 0 can come out a few ulps below it: at most
8 eps max|Q| (tested; docs/reliability.md), e.g. -3e-40 m3/s in float32 on the Lower Colorado.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["effective_x", "muskingum_coefficients", "storage_weights", "muskingum_storage", "mc_step",
           "water_volume_history", "CoeffFn"]

CoeffFn = Callable[..., tuple]
"""``coeff_fn(r, *theta) -> (c1, c2, c3, c4)``: coefficients at reference flow r (m3/s) for parameters theta."""


def effective_x(K: torch.Tensor, X: torch.Tensor, dt: float, positivity: bool = True) -> torch.Tensor:
    """X_eff = min(X, dt/(2K), 1 - dt/(2K)) with ``positivity`` (all coefficients >= 0), else X."""
    if not positivity:
        return X
    h = dt / (2.0 * K)
    return torch.minimum(torch.minimum(X, h), 1.0 - h)


def muskingum_coefficients(K: torch.Tensor, X: torch.Tensor, dt: float, positivity: bool = True):
    """Muskingum coefficients (c1, c2, c3, c4) for K (s), X (-) and step dt (s); see the module docstring."""
    X = effective_x(K, X, dt, positivity)
    two_k = 2.0 * K
    D = two_k * (1.0 - X) + dt
    c1 = (dt - two_k * X) / D
    c2 = (dt + two_k * X) / D
    c3 = (two_k * (1.0 - X) - dt) / D
    c4 = 2.0 * dt / D
    return c1, c2, c3, c4


def storage_weights(c1, c2, c3, c4, dt: float):
    """(K X, K (1-X)) in seconds recovered from the coefficients: D = 2 dt / c4, 2KX = (c2 - c1) D / 2,
    2K(1-X) = c3 D + dt (the effective X, as the step used it)."""
    D = 2.0 * dt / c4
    return (c2 - c1) * D / 4.0, (c3 * D + dt) / 2.0


def muskingum_storage(kx, k1x, I, Q):
    """Muskingum storage S = K X I + K (1-X) Q (m3) for weights ``kx = K X``, ``k1x = K (1-X)`` (s) and
    inflow I, outflow Q (m3/s)."""
    return kx * I + k1x * Q


def mc_step(coeff_fn: CoeffFn, conservative: bool, dt: float, I_new, I_old, Q_old, S_prev, q_lat, n_first: int,
            *theta):
    """One variable-parameter Muskingum-Cunge step for a slice of reaches; returns (Q(t), S(t), S(t-1) used).

    Coefficients come from ``coeff_fn(r, *theta)`` at the 3-point reference flow
    r = (I(t-1) + q + I(t) + q + Q(t-1)) / 3 (Ponce & Chaganti 1994, J. Hydrol. 162, "Variable-parameter
    Muskingum-Cunge method revisited"), with the storage weights of :func:`storage_weights`.

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
    r = (I_old + I_new + Q_old + 2.0 * q_lat) / 3.0
    c1, c2, c3, c4 = coeff_fn(r, *theta)
    kx, k1x = storage_weights(c1, c2, c3, c4, dt)
    if conservative:
        if n_first:
            m = S_prev.shape[0] - n_first
            S_prev = torch.cat([S_prev[:m], muskingum_storage(kx[m:], k1x[m:], I_old[m:], Q_old[m:])])
        Q_new = c1 * I_new + c4 * q_lat + (c4 / dt) * (S_prev + 0.5 * dt * (I_old - Q_old))
    else:
        S_prev = muskingum_storage(kx, k1x, I_old, Q_old)
        Q_new = c1 * I_new + c2 * I_old + c3 * Q_old + c4 * q_lat
    return Q_new, muskingum_storage(kx, k1x, I_new, Q_new), S_prev


def water_volume_history(Q: torch.Tensor, I: torch.Tensor, q_lat: torch.Tensor, S_end: torch.Tensor,
                         dt: float) -> torch.Tensor:
    """Reach water volume W [T + 1, N] (m3) consistent with the routing's continuity.

    W(t) = S(t) + dt/2 (I(t) - Q(t)) from the Muskingum storage at the last step satisfies
    W(t) = W(t-1) + dt [I(t) + q(t) - Q(t)] exactly (Todini 2007 conservative form); evaluated from the final
    storage backwards in float64 and clamped at 0 against rounding. Q, I, q_lat [T, N] m3/s, S_end [N] m3.
    """
    net_in = (dt * (I + q_lat - Q)).double()
    w_end = S_end.double() + 0.5 * dt * (I[-1] - Q[-1]).double()
    rev = torch.flip(torch.cumsum(torch.flip(net_in, [0]), 0), [0])  # W[t] = w_end - sum_{s >= t} net_in[s]
    W = torch.cat([w_end.unsqueeze(0) - rev, w_end.unsqueeze(0)], 0)
    return W.clamp_min(0.0).to(Q.dtype)
