"""Channel geometries for Muskingum-Cunge: Manning normal depth, celerity and top width.

Trapezoid (bottom width B, side slope z horizontal:vertical) and power-law top width T = p d^q (DDR).
Units: discharge m3/s, lengths m, celerity m/s.
"""
from __future__ import annotations

import torch

__all__ = ["BOUNDS", "MIN_REFERENCE_FLOW", "trapezoid_depth", "trapezoid_celerity", "power_law_celerity",
           "bankfull_power_law_p"]

BOUNDS = {
    "n": (0.01, 0.3),  # Manning's n, s m^-1/3 (Chow 1959 tables: smooth channels to dense floodplains)
    "p": (1.0, 200.0),  # power-law width coefficient, m^(1-q)
    "q": (0.0, 3.0),  # power-law width exponent: 0 rectangle, 1 triangle-like
    "celerity": (0.01, 20.0),  # m/s; a bound on wave celerity, not on discharge
}
MIN_REFERENCE_FLOW = 1e-4  # m3/s: floor for the *reference flow* used to evaluate celerity only


def _manning_trapezoid(h, n, S0, B, z):
    A = (B + z * h) * h
    P = B + 2.0 * h * torch.sqrt(1.0 + z * z)
    Q = A * (A / P).pow(2.0 / 3.0) * torch.sqrt(S0) / n
    return Q, A, P


def trapezoid_depth(Q: torch.Tensor, n, S0, B, z, iters: int = 30) -> torch.Tensor:
    """Normal depth h (m) carrying Q (m3/s) in a trapezoid, by Newton's method on log(h).

    Solved without autograd; one differentiable Newton step at the root then gives exact
    implicit-function gradients dh/dQ = 1/(dQ/dh), dh/dtheta = -(dQ/dtheta)/(dQ/dh).
    """
    with torch.no_grad():
        Qd, nd, Sd, Bd, zd = (x.detach() if torch.is_tensor(x) else x for x in (Q, n, S0, B, z))
        # wide-rectangle and triangle initial guesses; take the smaller (always on the convex side)
        h_rect = (Qd * nd / (Bd * torch.sqrt(torch.as_tensor(Sd)))).pow(0.6)
        h = h_rect
        # quadratic convergence: once every step is below sqrt(eps), one more reaches rounding level
        tol = torch.finfo(h.dtype).eps ** 0.5
        converged = False
        for _ in range(iters):
            Qh, A, P = _manning_trapezoid(h, nd, Sd, Bd, zd)
            T = Bd + 2.0 * zd * h
            dQdh = Qh * (5.0 / 3.0 * T / A - 4.0 / 3.0 * torch.sqrt(1.0 + zd * zd) / P)
            # Newton on log Q(log h): robust for all magnitudes
            step = (torch.log(Qh) - torch.log(Qd)) * Qh / (dQdh * h)
            h = h * torch.exp(-step.clamp(-2.0, 2.0))
            if converged:
                break
            converged = bool(step.abs().max() < tol)
        Qh, A, P = _manning_trapezoid(h, nd, Sd, Bd, zd)
        T = Bd + 2.0 * zd * h
        dQdh = Qh * (5.0 / 3.0 * T / A - 4.0 / 3.0 * torch.sqrt(1.0 + zd * zd) / P)
    # one differentiable Newton step (value unchanged at the root; IFT gradients)
    Qh_g, _, _ = _manning_trapezoid(h, n, S0, B, z)
    return h - (Qh_g - Q) / dQdh


def trapezoid_celerity(Q, n, S0, B, z):
    """Kinematic celerity c = dQ/dA (m/s) and top width T (m) at normal depth for flow Q (m3/s).

    Manning: Q = A^(5/3) P^(-2/3) S0^(1/2) / n, A = (B + z h) h, P = B + 2 h sqrt(1 + z^2),
    T = B + 2 z h; c = (dQ/dh)/T = (Q/A) [5/3 - 4/3 sqrt(1+z^2) A/(T P)] (Chow, Maidment & Mays 1988, 9.4).
    """
    h = trapezoid_depth(Q, n, S0, B, z)
    _, A, P = _manning_trapezoid(h, n, S0, B, z)
    T = B + 2.0 * z * h
    c = (Q / A) * (5.0 / 3.0 - 4.0 / 3.0 * torch.sqrt(1.0 + z * z) * A / (T * P))
    return c, T


def power_law_celerity(Q, n, S0, p, q):
    """Celerity (m/s) and top width (m) for a power-law channel T = p d^q (DDR geometry).

    A = p d^(q+1)/(q+1), R ~ A/T = d/(q+1), Q = (1/n) A R^(2/3) S0^(1/2)
      => d = [Q n (q+1)^(5/3) / (p S0^(1/2))]^(1/(q + 5/3)),  c = dQ/dA = (q + 5/3)/(q + 1) Q/A.
    """
    e = q + 5.0 / 3.0
    d = (Q * n * (q + 1.0).pow(5.0 / 3.0) / (p * torch.sqrt(S0))).pow(1.0 / e)
    A = p * d.pow(q + 1.0) / (q + 1.0)
    c = e / (q + 1.0) * Q / A
    return c, p * d.pow(q)


def bankfull_power_law_p(top_width_m, bankfull_depth_m, q: float):
    """Power-law width coefficient p (m^(1-q)) of the channel T = p d^q through a reach's bankfull point
    (T = W_bf at d = d_bf): p = W_bf / d_bf^q. With q = 0 it is a rectangle of the bankfull width; the NHM gives
    W_bf (seg_width) and d_bf (seg_depth) per segment. Leopold and Maddock (1953, USGS Prof. Paper 252) give mean
    at-a-station exponents W ~ Q^0.26, d ~ Q^0.40, i.e. q = 0.26 / 0.40 = 0.65."""
    import numpy as np

    W, d = np.asarray(top_width_m, dtype=np.float64), np.asarray(bankfull_depth_m, dtype=np.float64)
    if not (np.isfinite(W).all() and np.isfinite(d).all() and (W > 0).all() and (d > 0).all()):
        raise ValueError("bankfull width and depth must be finite and positive")
    return W / d ** q
