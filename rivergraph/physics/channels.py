"""Channel geometries of the Muskingum router, in one registry: each declares its parameters (network
column, units, bounds), how K and X follow from them, and its top width.

Registered (``CHANNELS``; the router's ``mode`` names one):

    ``static``      K (s) and X (-) per reach, as RAPID (``musk_s``, ``musx`` columns).
    ``trapezoid``   Muskingum-Cunge: Manning's equation on a trapezoid (bottom width B, side slope z,
                    roughness n, bed slope S0) gives depth h for the reference flow Q; the exact
                    kinematic celerity c = dQ/dA = v [5/3 - 4/3 sqrt(1+z^2) A / (T P)]; K = dx/c;
                    Cunge's X = 0.5 (1 - Q / (T S0 c dx)) (Cunge 1969; Ponce & Yevjevich 1978,
                    J. Hydraul. Div. 104(12)).
    ``power_law``   as ``trapezoid`` with top width T = p d^q (DDR, Bindas et al. 2024, WRR): A = p d^(q+1)/(q+1),
                    hydraulic radius ~ A/T = d/(q+1), closed-form depth, c = (q + 5/3)/(q + 1) Q/A. The router
                    names p ``width_coef`` and q ``width_exp`` (``p`` / ``q`` are deprecated aliases).

Adding a geometry is one class and one registration::

    @register_channel
    class Rectangle(CungeChannel):
        name = "rectangle"
        params = (N, SLOPE, ParamSpec("width", "width_m", "m", positive=True), LENGTH)

        def celerity(self, Q, n, slope, width, length):
            ...  # return (c, top width)

Units: discharge m3/s, lengths m, celerity m/s, K s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from .muskingum import muskingum_coefficients

__all__ = ["ParamSpec", "Channel", "CungeChannel", "CHANNELS", "register_channel", "get_channel",
           "parameter_spec", "learnable_parameters", "CELERITY_BOUNDS", "MIN_REFERENCE_FLOW", "cunge_K_X",
           "trapezoid_depth", "trapezoid_celerity", "power_law_celerity", "bankfull_power_law_p",
           "compound_celerity"]

CELERITY_BOUNDS = (0.01, 20.0)  # m/s; a bound on wave celerity, not on discharge
MIN_REFERENCE_FLOW = 1e-4  # m3/s: floor for the *reference flow* used to evaluate celerity only


@dataclass(frozen=True)
class ParamSpec:
    """One routing parameter: its name in the router's call, the network column it defaults to (None: it
    must be passed), units, inclusive physical bounds ``[lo, hi]`` (None: unbounded on that side),
    ``positive`` (strictly > 0), and ``scaling`` ('log' or 'sigmoid') when a ParameterNet may learn it
    within those bounds."""

    name: str
    column: str | None
    units: str
    lo: float | None = None
    hi: float | None = None
    positive: bool = False
    scaling: Literal["log", "sigmoid"] | None = None
    description: str = ""

    @property
    def bounds(self) -> tuple[float, float]:
        return (-math.inf if self.lo is None else self.lo, math.inf if self.hi is None else self.hi)

    def violations(self, v: torch.Tensor) -> tuple[torch.Tensor, str] | None:
        """Mask of the values outside the bounds and the rule they break, or None if all are inside."""
        lo, hi = self.bounds
        bad = (v < lo) | (v > hi)
        if bad.any():
            return bad, f"outside its physical bounds [{lo}, {hi}]"
        if self.positive and (v <= 0).any():
            return v <= 0, "must be positive"
        return None


N = ParamSpec("n", "n", "s m^-1/3", 0.01, 0.3, scaling="log",
              description="Manning's n (Chow 1959 tables: smooth channels to dense floodplains)")
SLOPE = ParamSpec("slope", "slope", "m/m", positive=True, description="bed slope S0")
LENGTH = ParamSpec("length", "length_m", "m", positive=True, description="reach length dx")
BOTTOM_WIDTH = ParamSpec("bottom_width", "bottom_width_m", "m", positive=True, description="trapezoid bottom width")
SIDE_SLOPE = ParamSpec("side_slope", "side_slope", "m/m (horizontal:vertical)", lo=0.0,
                       description="trapezoid side slope z (NWM: 1/ChSlp)")


class Channel:
    """A channel geometry: ``params`` (in the order ``K_X`` takes them), ``K_X(Q, *theta)`` giving the
    Muskingum K (s) and X (-) at reference flow Q (m3/s), and ``top_width`` (m, None if the geometry has
    none). ``flow_dependent = False`` means K and X do not depend on Q (computed once per call).
    ``aliases`` map deprecated parameter names to current ones."""

    name: ClassVar[str]
    params: ClassVar[tuple[ParamSpec, ...]]
    flow_dependent: ClassVar[bool] = True
    aliases: ClassVar[dict[str, str]] = {}

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def K_X(self, Q, *theta):
        raise NotImplementedError

    def top_width(self, Q, *theta):
        return None

    def coefficients(self, dt: float, positivity: bool):
        """``coeff_fn(r, *theta)``: Muskingum coefficients at reference flow r for this geometry."""
        def coeff_fn(r, *theta):
            return muskingum_coefficients(*self.K_X(r.clamp_min(MIN_REFERENCE_FLOW), *theta), dt, positivity)
        return coeff_fn


CHANNELS: dict[str, Channel] = {}
"""Registered channel geometries by name (the routing modes)."""


def register_channel(cls: type[Channel]) -> type[Channel]:
    """Class decorator: register a :class:`Channel` subclass under its ``name``."""
    if cls.name in CHANNELS:
        raise ValueError(f"channel '{cls.name}' is already registered")
    CHANNELS[cls.name] = cls()
    return cls


def get_channel(name: str) -> Channel:
    try:
        return CHANNELS[name]
    except KeyError:
        raise ValueError(f"unknown routing mode '{name}'; choose from {list(CHANNELS)}") from None


def parameter_spec(name: str) -> ParamSpec:
    """The spec of a parameter name used by any registered channel (one declaration per name)."""
    for ch in CHANNELS.values():
        for p in ch.params:
            if p.name == name or ch.aliases.get(name) == p.name:
                return p
    raise KeyError(f"no routing parameter '{name}'")


def learnable_parameters() -> dict[str, ParamSpec]:
    """Every routing parameter a ParameterNet may learn (those with a ``scaling``), by name."""
    return {p.name: p for ch in CHANNELS.values() for p in ch.params if p.scaling is not None}


def cunge_K_X(Q, c, T, S0, dx):
    """Muskingum-Cunge K = dx/c (s) and X = 0.5 (1 - Q/(T S0 c dx)) clipped to [0, 0.5] (Cunge 1969), for
    flow Q (m3/s), celerity c (m/s, bounded to ``CELERITY_BOUNDS``), top width T (m), slope S0, length dx (m)."""
    c = c.clamp(*CELERITY_BOUNDS)
    X = (0.5 * (1.0 - Q / (T * S0 * c * dx))).clamp(0.0, 0.5)
    return dx / c, X


class CungeChannel(Channel):
    """Muskingum-Cunge geometry: subclasses give ``celerity(Q, *theta) -> (c, T)``; ``params`` must include
    ``slope`` and ``length``."""

    def __init__(self):
        names = self.param_names
        self._i_slope, self._i_length = names.index("slope"), names.index("length")

    def celerity(self, Q, *theta):
        raise NotImplementedError

    def K_X(self, Q, *theta):
        c, T = self.celerity(Q, *theta)
        return cunge_K_X(Q, c, T, theta[self._i_slope], theta[self._i_length])

    def top_width(self, Q, *theta):
        return self.celerity(Q.clamp_min(MIN_REFERENCE_FLOW), *theta)[1]


@register_channel
class Static(Channel):
    name = "static"
    params = (ParamSpec("k", "musk_s", "s", positive=True, description="Muskingum K"),
              ParamSpec("x", "musx", "-", description="Muskingum X"))
    flow_dependent = False

    def K_X(self, Q, k, x):
        return k, x


@register_channel
class Trapezoid(CungeChannel):
    name = "trapezoid"
    params = (N, SLOPE, BOTTOM_WIDTH, SIDE_SLOPE, LENGTH)

    def celerity(self, Q, n, slope, bottom_width, side_slope, length):
        return trapezoid_celerity(Q, n, slope, bottom_width, side_slope)


@register_channel
class PowerLaw(CungeChannel):
    name = "power_law"
    params = (N, SLOPE,
              ParamSpec("width_coef", None, "m^(1-width_exp)", 1.0, 200.0, scaling="log",
                        description="power-law top width T = width_coef d^width_exp: coefficient (DDR's p)"),
              ParamSpec("width_exp", None, "-", 0.0, 3.0, scaling="sigmoid",
                        description="power-law width exponent (DDR's q): 0 rectangle, 1 triangle-like"),
              LENGTH)
    aliases = {"p": "width_coef", "q": "width_exp"}

    def celerity(self, Q, n, slope, width_coef, width_exp, length):
        return power_law_celerity(Q, n, slope, width_coef, width_exp)



@register_channel
class CompoundTrapezoid(CungeChannel):
    """The trapezoid with the NWM's floodplain above bankfull (:func:`compound_celerity`); with no floodplain
    (``top_width_floodplain = 0`` or ``n_floodplain = 0``) it is the ``trapezoid`` channel to rounding."""

    name = "compound_trapezoid"
    params = (N, ParamSpec("n_floodplain", "n_floodplain", "s m^-1/3", lo=0.0, hi=1.0,
                           description="Manning's n of the floodplain above bankfull (NWM nCC; 0: none)"),
              SLOPE, BOTTOM_WIDTH, SIDE_SLOPE,
              ParamSpec("top_width", "top_width_m", "m", positive=True,
                        description="bankfull top width (NWM TopWdth); bankfull depth = (T - B)/(2 z)"),
              ParamSpec("top_width_floodplain", "top_width_floodplain_m", "m", lo=0.0,
                        description="floodplain width above bankfull (NWM TopWdthCC; 0: none)"),
              LENGTH)

    def celerity(self, Q, n, n_floodplain, slope, bottom_width, side_slope, top_width, top_width_floodplain,
                 length):
        return compound_celerity(Q, n, n_floodplain, slope, bottom_width, side_slope, top_width,
                                 top_width_floodplain)

# ------------------------------------------------------------------------------------------ geometry
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
        # wide-rectangle initial guess (always on the convex side)
        h = (Qd * nd / (Bd * torch.sqrt(torch.as_tensor(Sd)))).pow(0.6)
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


def compound_celerity(Q, n, ncc, S0, B, z, tw, twcc):
    """Celerity (m/s) and top width (m) at normal depth for flow Q (m3/s) in the NWM compound channel: a
    trapezoid (bottom width B, side slope z, roughness n) up to the bankfull depth (tw - B)/(2 z), a
    rectangular floodplain of width twcc and roughness ncc above it (WRF-Hydro ``module_channel_routing.F90``
    SUBMUSKINGCUNGE; :mod:`rivergraph.physics.nwm`). Depth: Newton on the trapezoid, then bisection on the
    compound Manning flow where that depth is above bankfull, with one differentiable Newton step at the root
    (implicit-function gradients). Celerity: the NWM's area-weighted kinematic celerity
    (:func:`rivergraph.physics.nwm.nwm_celerity`), which in the channel is the exact dQ/dA of the trapezoid;
    top width B + 2 z h in the channel, twcc above bankfull."""
    from .nwm import NWMChannel, compound_flow, nwm_celerity, normal_depth

    ones = torch.ones_like(Q)
    # no floodplain where either its width or its roughness is 0 (the trapezoid then extends upward); its
    # roughness is set finite there so that the zero floodplain term stays 0 (not 0 x 1/0)
    flood = (ncc > 0) & (twcc > 0)
    ncc = torch.where(flood, ncc * ones, ones)
    twcc = torch.where(flood, twcc * ones, torch.zeros_like(ones))
    ch = NWMChannel(ones, n * ones, ncc, S0 * ones, B * ones, tw * ones, twcc, z * ones)
    bfd = ch.bfd
    with torch.no_grad():
        h = trapezoid_depth(Q.detach(), *(x.detach() for x in (ch.n, ch.s0, ch.bw, ch.z)))
        over = (h > bfd) & (ch.twcc > 0)
        if bool(over.any()):
            idx = over.nonzero().flatten()
            sub = ch.detach().index(idx)
            h = h.index_put((idx,), normal_depth(Q.detach().index_select(0, idx), sub))
        with torch.enable_grad():
            hh = h.detach().requires_grad_(True)
            det = ch.detach()
            dQdh, = torch.autograd.grad(compound_flow(hh, det, bfd.detach()).sum(), hh)
        dQdh = torch.where(dQdh > 0, dQdh, torch.ones_like(dQdh))
    h = h - (compound_flow(h, ch, bfd) - Q) / dQdh    # value unchanged at the root; IFT gradients
    above = (h > bfd) & (ch.twcc > 0)
    c, _ = nwm_celerity(h, ch, bfd)
    T = torch.where(above, ch.twcc, ch.bw + 2.0 * ch.z * h)   # the trapezoid extends up where no floodplain
    return c, T
