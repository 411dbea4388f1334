"""The synthetic twin experiment: stochastic storms as lateral inflow, a known Manning's n law, observations
routed with it, and the power-law fit of what training recovers (docs/training.md).

The truth n = 0.0915 A^-0.131 (A drainage area, km2) is dMC's (Bindas et al. 2024, Water Resour. Res. 60).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from ..graph.algorithms import local_area_km2
from ..graph.network import RiverNetwork
from .batches import make_batches, route_gauges

__all__ = ["storm_inflow", "twin_law", "twin_observations", "fit_power_law", "MM_PER_H_KM2_TO_M3S"]

MM_PER_H_KM2_TO_M3S = 1e-3 * 1e6 / 3600.0
"""1 mm/h of runoff over 1 km2 in m3/s (0.2778)."""


def storm_inflow(net: RiverNetwork, hours: int, *, base: np.ndarray | None = None, seed: int = 0,
                 storms_per_week: float = 2.0, mean_depth_mm: float = 15.0, mean_duration_h: float = 8.0,
                 radius_km: tuple[float, float] = (40.0, 150.0), response_h: float = 3.0, quiet_h: int = 48,
                 dt_s: float = 3600.0) -> torch.Tensor:
    """A stochastic storm sequence as lateral inflow [hours, N] (m3/s), float64.

    Storms arrive as a Poisson process (``storms_per_week``), none in the first ``quiet_h`` hours (spin-up);
    each has a centre uniform over the reaches' lat/lon box, a Gaussian footprint of radius uniform in
    ``radius_km``, a duration exponential with mean ``mean_duration_h`` and a runoff depth at its centre
    exponential with mean ``mean_depth_mm``. Runoff (mm/h) passes a linear-reservoir catchment response (time
    constant ``response_h``) and enters each reach over its local area (:func:`rivergraph.graph.local_area_km2`):
    q = runoff * area * 0.2778 m3/s per (mm/h km2). ``base`` ([N] m3/s, e.g. the NWM q_lateral time mean) is
    added every hour. Needs ``lat``/``lon`` columns.
    """
    if hours < 1:
        raise ValueError("hours must be >= 1")
    rng = np.random.default_rng(seed)
    lat, lon = net.attr("lat"), net.attr("lon")
    area = local_area_km2(net)
    km_lat, km_lon = 111.2, 111.2 * np.cos(np.deg2rad(lat.mean()))
    rain = np.zeros((hours, len(net)))
    t = float(quiet_h)
    while True:
        t += rng.exponential(168.0 / storms_per_week)
        if t >= hours:
            break
        c_lat, c_lon = rng.uniform(lat.min(), lat.max()), rng.uniform(lon.min(), lon.max())
        r = rng.uniform(*radius_km)
        dur = max(1, int(round(rng.exponential(mean_duration_h))))
        depth = rng.exponential(mean_depth_mm)
        d2 = ((lat - c_lat) * km_lat) ** 2 + ((lon - c_lon) * km_lon) ** 2
        foot = np.exp(-0.5 * d2 / r ** 2)
        t0 = int(t)
        rain[t0:t0 + dur] += (depth / dur) * foot
    # linear reservoir: dS/dt = rain - S/k, outflow S/k (exact discretisation for constant rain over an hour)
    a = math.exp(-dt_s / 3600.0 / response_h)
    runoff = np.empty_like(rain)
    out = np.zeros(len(net))
    for i in range(hours):
        out = a * out + (1.0 - a) * rain[i]
        runoff[i] = out
    q = runoff * (area * MM_PER_H_KM2_TO_M3S)
    if base is not None:
        base = np.asarray(base, dtype=np.float64)
        if base.shape != (len(net),) or not np.isfinite(base).all() or (base < 0).any():
            raise ValueError(f"base inflow must be [{len(net)}] finite and >= 0 (m3/s)")
        q += base
    return torch.from_numpy(q)


def twin_law(net: RiverNetwork, prefactor: float = 0.0915, exponent: float = -0.131) -> np.ndarray:
    """The 'true' Manning's n of the twin: n = prefactor * A^exponent, A = drainage area (km2), clipped to the
    router's bounds (Bindas et al. 2024 used 0.0915 A^-0.131)."""
    from ..physics.channels import parameter_spec

    return np.clip(prefactor * net.attr("drainage_area_km2") ** exponent, *parameter_spec("n").bounds)


@torch.no_grad()
def twin_observations(net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], n_true: np.ndarray, *,
                      fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law",
                      noise: float = 0.0, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Synthetic observations [T, G] (m3/s): discharge at ``gauges`` routed with ``n_true``, times lognormal
    noise exp(noise * N(0, 1)) when ``noise`` > 0."""
    from ..models.params import AttributeScaler

    class _Const(torch.nn.Module):
        def forward(self, feats):
            return {"n": feats[:, 0]}

    truth = net.attrs.assign(n_true=np.asarray(n_true, dtype=np.float64))
    sc = AttributeScaler(["n_true"], log_columns=[])
    sc.fitted = True  # identity scaling: the feature is n itself
    tnet = RiverNetwork(net.ids, net.downstream, truth)
    batches = make_batches(tnet, gauges, batch_size, sc, fixed=fixed, dt=dt_s, mode=mode)
    for b in batches:  # route with n in the dtype of the forcing
        b.features = b.features.to(q_lat.dtype)
    Q = route_gauges(_Const(), tnet, q_lat, gauges, batches=batches)
    if noise > 0:
        g = torch.Generator().manual_seed(seed)
        Q = Q * torch.exp(noise * torch.randn(Q.shape, generator=g, dtype=Q.dtype))
    return Q


def fit_power_law(area_km2: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log n = log a + b log A; returns (prefactor a, exponent b)."""
    A, n = np.asarray(area_km2, dtype=np.float64), np.asarray(n, dtype=np.float64)
    ok = (A > 0) & (n > 0) & np.isfinite(A) & np.isfinite(n)
    if ok.sum() < 2:
        raise ValueError("need at least two reaches with positive area and n to fit a power law")
    b, loga = np.polyfit(np.log(A[ok]), np.log(n[ok]), 1)
    return float(math.exp(loga)), float(b)
