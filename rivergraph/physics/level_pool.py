"""The NWM level-pool reservoir, as pure differentiable torch functions.

Rules from WRF-Hydro ``src/Routing/Reservoirs/Level_Pool/module_levelpool.F90``, subroutine
``LEVELPOOL_PHYSICS`` (NCAR/wrf_hydro_nwm_public; "from Chow, Maidment, Mays pg. 252"), called for the
lake outlet link by ``drive_CHANNEL_RSL`` in ``module_channel_routing.F90``; t-route's
``src/kernel/reservoir/Level_Pool/module_levelpool.F`` is the same. Written here from those rules.

A lake is vertically walled: storage S = LkArea (km2) * 1e6 * H (m3, H the water elevation, m above the
LAKEPARM datum). Outflow from the elevation H (g = 9.81 m/s2):

    orifice  Qo = OrificeC OrificeA sqrt(2 g (H - OrificeE))           for H > OrificeE
    weir     Qw = WeirC WeirL min(H - WeirE, LkMxE - WeirE)^(3/2)      for H > WeirE (with the orifice)
    overtop  Qt = WeirC (WeirL Dam_Length) (H0 - LkMxE)^(3/2)          for H0 > LkMxE (with both)

integrated over the routing step dt by the NWM's three-stage Runge-Kutta (Heun's third order):
dh1 = (I(0) - Q(H)) dt/S', dh2 = (I(1/3) - Q(H + dh1/3)) dt/S', dh3 = (I(2/3) - Q(H + 0.667 dh2)) dt/S',
H' = H + dh1/4 + 3 dh3/4, outflow Q(H'), with S' = LkArea * 1e6 and the inflow I(0) = qi0,
I(1/3) = qi0 + 0.33 (qi1 + ql - qi0), I(2/3) = qi0 + 0.67 (qi1 + ql - qi0). The stage elevations use the
orifice and weir at the stage elevation but the overtop test and head at the step's start H0, as the
NWM does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .nwm import safe_pow

__all__ = ["LevelPool", "level_pool_discharge", "level_pool_step", "level_from_outflow", "GRAVITY"]

GRAVITY = 9.81
"""m/s2, as LEVELPOOL_PHYSICS."""


@dataclass
class LevelPool:
    """Level-pool parameters of L lakes, tensors [L] (LAKEPARM names): area_km2 [LkArea], max_elev
    [LkMxE], weir_elev [WeirE], weir_c [WeirC], weir_l [WeirL] m, orifice_elev [OrificeE], orifice_c
    [OrificeC], orifice_a [OrificeA] m2, dam_l [Dam_Length] m. Elevations in m (common datum)."""

    area_km2: torch.Tensor
    max_elev: torch.Tensor
    weir_elev: torch.Tensor
    weir_c: torch.Tensor
    weir_l: torch.Tensor
    orifice_elev: torch.Tensor
    orifice_c: torch.Tensor
    orifice_a: torch.Tensor
    dam_l: torch.Tensor

    FIELDS = {"area_km2": "LkArea", "max_elev": "LkMxE", "weir_elev": "WeirE", "weir_c": "WeirC",
              "weir_l": "WeirL", "orifice_elev": "OrificeE", "orifice_c": "OrificeC", "orifice_a": "OrificeA",
              "dam_l": "Dam_Length"}

    @classmethod
    def from_lakeparm(cls, df, dtype=torch.float64, device=None) -> "LevelPool":
        """From a :func:`rivergraph.io.readers.read_lakeparm` DataFrame (rows = lakes, in order)."""
        return cls(**{f: torch.tensor(df[c].to_numpy(copy=True), dtype=dtype, device=device)
                      for f, c in cls.FIELDS.items()})

    @property
    def surface_m2(self) -> torch.Tensor:
        return self.area_km2 * 1.0e6

    def storage(self, H: torch.Tensor) -> torch.Tensor:
        """Lake volume above the datum (m3), S = LkArea 1e6 H (vertical walls)."""
        return self.surface_m2 * H


def level_pool_discharge(H: torch.Tensor, lp: LevelPool, H_overtop: torch.Tensor | None = None) -> torch.Tensor:
    """Outflow (m3/s) at water elevation H (LEVELPOOL_PHYSICS's elevation-discharge relation).

    Above the weir crest: orifice + weir (the weir head capped at LkMxE - WeirE); above LkMxE (tested on
    ``H_overtop``, default H) plus the overtop term WeirC WeirL Dam_Length (H_overtop - LkMxE)^1.5;
    between orifice and weir the orifice alone; below the orifice 0 (dead pool).
    """
    Ho = H if H_overtop is None else H_overtop
    orifice = lp.orifice_c * lp.orifice_a * safe_pow(2.0 * GRAVITY * (H - lp.orifice_elev), 0.5)
    head = torch.minimum(H - lp.weir_elev, lp.max_elev - lp.weir_elev)
    weir = lp.weir_c * lp.weir_l * safe_pow(head, 1.5)
    overtop = lp.weir_c * (lp.weir_l * lp.dam_l) * safe_pow(Ho - lp.max_elev, 1.5)
    return torch.where(Ho > lp.max_elev, orifice + weir + overtop,
                       torch.where(head > 0, orifice + weir,
                                   torch.where(H > lp.orifice_elev, orifice, torch.zeros_like(H))))


def level_pool_step(H: torch.Tensor, qi0: torch.Tensor, qi1: torch.Tensor, ql: torch.Tensor, lp: LevelPool,
                    dt: float):
    """One LEVELPOOL_PHYSICS step: ``(H_new, outflow, release_m3)``.

    ``release_m3`` is the volume the integration took out of the lake, dt (Q1/4 + 3 Q3/4); the NWM
    passes ``outflow`` = Q(H_new) downstream, so the difference is the NWM scheme's own lake imbalance
    (the mass balance reports it).
    """
    sap = lp.surface_m2
    i1 = qi0
    i2 = qi0 + (qi1 + ql - qi0) * 0.33
    i3 = qi0 + (qi1 + ql - qi0) * 0.67
    q1 = level_pool_discharge(H, lp)
    dh1 = (i1 - q1) / sap * dt
    q2 = level_pool_discharge(H + dh1 / 3.0, lp, H)
    dh2 = (i2 - q2) / sap * dt
    q3 = level_pool_discharge(H + 0.667 * dh2, lp, H)
    dh3 = (i3 - q3) / sap * dt
    H_new = H + 0.25 * dh1 + 0.75 * dh3
    return H_new, level_pool_discharge(H_new, lp), dt * (0.25 * q1 + 0.75 * q3)


def level_from_outflow(Q: torch.Tensor, lp: LevelPool, iters: int = 200) -> torch.Tensor:
    """The water elevation (m) whose level-pool outflow is Q (m3/s): bisection between OrificeE and
    above LkMxE (the discharge increases with H); Q <= 0 gives OrificeE (no outflow). Differentiable in
    Q and the lake parameters by the implicit-function rule (one value-preserving Newton correction)."""
    with torch.no_grad():
        Qd = Q.detach()
        lo = lp.orifice_elev.detach().clone()
        hi = torch.maximum(lp.max_elev.detach(), lo) + 1.0
        for _ in range(60):
            small = level_pool_discharge(hi, _detached(lp)) < Qd
            if not small.any():
                break
            hi = torch.where(small, hi + 2.0 * (hi - lo), hi)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = level_pool_discharge(mid, _detached(lp)) < Qd
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        H = 0.5 * (lo + hi)
        eps = 1e-6
        dQdH = (level_pool_discharge(H + eps, _detached(lp)) - level_pool_discharge(H - eps, _detached(lp))) / (2 * eps)
    pos = (Qd > 0) & (dQdH > 0)
    corr = (Q - level_pool_discharge(H, lp))
    corr = corr - corr.detach()
    H = H + torch.where(pos, corr / torch.where(pos, dQdH, torch.ones_like(dQdH)), torch.zeros_like(H))
    return torch.where(Qd > 0, H, lp.orifice_elev + 0.0 * H)


def _detached(lp: LevelPool) -> LevelPool:
    return LevelPool(**{f: getattr(lp, f).detach() for f in LevelPool.FIELDS})
