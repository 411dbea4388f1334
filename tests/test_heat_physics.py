"""Equilibrium temperature of the surface energy balance: root, implicit-function gradient, bounds."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.models.temperature import HeatForcing, StreamTemperature
from rivergraph.physics.heat import (energy_balance_equilibrium, lateral_temperature, linearised_equilibrium,
                                     net_surface_flux, surface_flux_terms)

torch.set_num_threads(1)
F64 = torch.float64


def _weather(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)  # noqa: E731
    return dict(air_temp=u(-20.0, 40.0), shortwave=u(0.0, 1000.0), rel_humidity=u(0.1, 1.0), wind=u(0.0, 8.0),
                shade=u(0.0, 1.0), cloud_cover=u(0.0, 1.0))


def test_root_solves_energy_balance_and_bounds():
    w = _weather()
    te, ke = energy_balance_equilibrium(**w)
    h, dh = net_surface_flux(te, **w)
    assert h.abs().max() < 1e-8  # W m-2: H(T_e) = 0
    assert (dh < 0).all()
    # concave H: the air-temperature linearisation (one Newton step) is an upper bound of the root
    tl, kl = linearised_equilibrium(**w)
    assert (tl >= te - 1e-9).all() and (tl - te).max() > 0.5
    # the chord slope lies between the tangents at Ta and at T_e and is exact at the air temperature
    k_root = -net_surface_flux(te, **w)[1]
    lo, hi = torch.minimum(kl, k_root), torch.maximum(kl, k_root)
    assert ((ke >= lo - 1e-9) & (ke <= hi + 1e-9)).all() and (ke > 0).all()
    h_air, _ = net_surface_flux(w["air_temp"], **w)
    assert torch.allclose(ke * (te - w["air_temp"]), h_air, atol=1e-6)
    # more sun -> warmer, more shade -> cooler
    te_sun, _ = energy_balance_equilibrium(**{**w, "shortwave": w["shortwave"] + 100.0})
    te_shade, _ = energy_balance_equilibrium(**{**w, "shade": torch.ones_like(w["shade"])})
    assert (te_sun > te).all() and (te_shade <= te + 1e-12).all()
    # the terms sum to H
    terms = surface_flux_terms(te, **w)
    assert set(terms) == {"shortwave", "longwave_in", "longwave_out", "evaporation", "sensible"}
    assert sum(terms.values()).abs().max() < 1e-8


def test_implicit_gradient_matches_finite_differences():
    w = _weather(n=6, seed=1)

    def f(ta, sw, rh, wind, shade, cc):
        te, ke = energy_balance_equilibrium(ta, sw, rh, wind, shade, cc)
        return te, ke

    args = [w[k].clone().requires_grad_() for k in ("air_temp", "shortwave", "rel_humidity", "wind", "shade",
                                                     "cloud_cover")]
    assert torch.autograd.gradcheck(f, args, atol=1e-6, rtol=1e-5)


def test_float32_converges():
    w = {k: v.float() for k, v in _weather(seed=2).items()}
    te, _ = energy_balance_equilibrium(**w)
    te64, _ = energy_balance_equilibrium(**{k: v.double() for k, v in w.items()})
    assert (te.double() - te64).abs().max() < 1e-2


def test_melt_share_and_budget_split_closes():
    ta = torch.tensor([10.0, 10.0], dtype=F64)
    t = lateral_temperature(ta, ta, ta, 0.5, 0.0, torch.tensor([0.0, 1.0], dtype=F64))
    assert t[0] == 10.0 and abs(t[1] - 1.5) < 1e-12
    net = build_network([1, 2, 3], [3, 3, 0], pd.DataFrame({
        "length_m": 3000.0, "slope": 0.002, "n": 0.05, "bottom_width_m": 5.0, "side_slope": 1.0,
        "top_width_m": 8.0}, index=range(3)))
    T = 24
    m = StreamTemperature(net, dt=3600.0)
    q = torch.full((T, 3), 0.5, dtype=F64)
    hours = torch.arange(T, dtype=F64)[:, None]
    sw = (800.0 * torch.sin(torch.pi * (hours - 6) / 12)).clamp_min(0.0).expand(T, 3)
    forcing = HeatForcing(20.0 + 5.0 * torch.sin(2 * torch.pi * hours / 24).expand(T, 3), sw, 0.6, 2.0, 0.3)
    res = m(q, forcing, budget=True, shade=0.3)
    b = res.budget
    parts = ("shortwave_J", "longwave_in_J", "longwave_out_J", "evaporation_J", "sensible_J",
             "linearisation_residual_J")
    assert torch.allclose(sum(b[k] for k in parts), b["exchange_J"], rtol=0, atol=1e-3)
    assert (b["shortwave_J"] >= 0).all() and (b["longwave_out_J"] < 0).all()
    # the linear law stays close to the nonlinear balance over the day (<10% of the gross exchange)
    gross = sum(b[k].abs() for k in parts[:-1]).sum()
    assert b["linearisation_residual_J"].abs().sum() < 0.1 * gross


@pytest.mark.slow
def test_lower_colorado_water_never_above_its_sources(lc):
    """Issue 17: on the Lower Colorado example (synthetic Texas summer) every reach-step's water temperature is
    at most the warmest source it has seen: its equilibrium temperature, its lateral inflow, its upstream water
    and its start (the convex-combination guarantee), and the hottest flowing reach is a shallow sheet near T_e."""
    import numpy as np

    from rivergraph.models.temperature import synthetic_texas_forcing

    net, data = lc
    spin = 48
    q = data["q_lateral"].double()
    q = torch.cat([q[:1].expand(spin, -1), q], 0)
    time = pd.date_range(data["time"][0] - pd.Timedelta(hours=spin), periods=q.shape[0], freq="h", tz="UTC")
    m = StreamTemperature(net, dt=3600.0)
    with torch.no_grad():
        hyd = m.route(q)
        res = m.temperature(hyd, synthetic_texas_forcing(net, time), time=time)
    tw, te, tl = (x.numpy() for x in (res.temperature, res.equilibrium, res.lateral_temp))
    down = net.downstream
    bound = np.maximum(tl[0], tw[0])  # T0 defaults to the first lateral temperature
    worst = -np.inf
    for t in range(tw.shape[0]):
        up = np.full(len(net), -np.inf)
        np.maximum.at(up, down[down >= 0], tw[t][down >= 0])
        bound = np.maximum.reduce([bound, te[t], tl[t], up])
        worst = max(worst, float((tw[t] - bound).max()))
    assert worst < 1e-9
    wet = (res.discharge[spin:].min(0).values > 0.01).numpy()
    twf = tw[spin:][:, wet]
    t, i = np.unravel_index(np.argmax(twf), twf.shape)
    assert twf[t, i] <= te[spin:][:, wet][t, i] + 0.5 and twf.max() < 42.0
