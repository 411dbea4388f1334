"""Surface-exchange formulations (rivergraph.physics.exchange): registry, PRMS-SNTemp balance invariants, the
model's guarantees with it, and its terms against pywatershed's PRMS-SNTemp flux file (issue 17)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.graph.network import NetworkError
from rivergraph.models.temperature import HeatForcing, StreamTemperature
from rivergraph.physics.exchange import (EXCHANGES, air_pressure_hpa, exchange_equilibrium, friction_heat,
                                         get_exchange)

torch.set_num_threads(1)
F64 = torch.float64
ST = "delaware_nhm_2yr/derived_streamtemp"


def _prms_inputs(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)  # noqa: E731
    sky = u(0.0, 1.0)
    return dict(t_ref=u(0.0, 30.0), shortwave=u(0.0, 400.0), rel_humidity=u(0.2, 1.0), cloud_cover=u(0.0, 1.0),
                shade=u(0.0, 0.5), sky_shade=sky, veg_shade=sky * u(0.0, 1.0), pet_m_s=u(0.0, 8.0) / 86.4e6,
                pressure_hpa=air_pressure_hpa(u(0.0, 1500.0)), friction=u(0.0, 50.0), t_ground=u(-5.0, 20.0))


def test_registry_and_unknown_name():
    assert {"chapra_edinger", "prms_sntemp", "prms_sntemp_as_coded"} <= set(EXCHANGES)
    with pytest.raises(ValueError, match="unknown surface exchange 'nope'.*chapra_edinger"):
        get_exchange("nope")
    net = build_network([1, 2], [2, 0], pd.DataFrame({"length_m": 1000.0, "slope": 0.001, "n": 0.04,
                                                      "bottom_width_m": 5.0, "side_slope": 1.0}, index=range(2)))
    with pytest.raises(ValueError, match="unknown surface exchange 'PRMS'"):
        StreamTemperature(net, surface_exchange="PRMS")


def test_prms_balance_root_slope_and_gradient():
    form = get_exchange("prms_sntemp")
    w = _prms_inputs()
    te, ke = exchange_equilibrium(form, w)
    h, dh = form.flux(te, **w)
    assert h.abs().max() < 1e-8 and (dh < 0).all() and (ke > 0).all()
    # analytic slope = finite difference of the summed terms
    eps = 1e-5
    fd = (form.flux(te + eps, **w)[0] - form.flux(te - eps, **w)[0]) / (2 * eps)
    assert torch.allclose(fd, dh, rtol=1e-6, atol=1e-6)
    # chord through the anchor (the inflow temperature) is exact there
    h_ref = form.flux(w["t_ref"], **w)[0]
    assert torch.allclose(ke * (te - w["t_ref"]), h_ref, atol=1e-6)
    # more sun warms; more evaporation cools where the water at T_e is warmer than the inflow (below it the
    # Bowen term referenced to the inflow temperature turns latent + sensible into a gain)
    te_dry, _ = exchange_equilibrium(form, {**w, "pet_m_s": w["pet_m_s"] * 2 + 1e-8})
    te_sun, _ = exchange_equilibrium(form, {**w, "shortwave": w["shortwave"] + 50.0})
    warm = te > w["t_ref"]
    assert warm.sum() > 5 and (te_dry[warm] < te[warm]).all() and (te_sun > te).all()
    # implicit-function gradient of T_e and K_e against finite differences of the whole solve
    w6 = {k: v[:5].clone().requires_grad_() for k, v in _prms_inputs(seed=3).items()}
    w6["pet_m_s"] = (w6["pet_m_s"].detach() * 86.4e6).requires_grad_()  # mm/day: finite differences of O(1e-6)
    names = list(w6)

    def f(*args):
        kw = dict(zip(names, args))
        return exchange_equilibrium(form, {**kw, "pet_m_s": kw["pet_m_s"] / 86.4e6})

    assert torch.autograd.gradcheck(f, [w6[k] for k in names], atol=1e-6, rtol=1e-4)


def _tiny(exchange="prms_sntemp", elevation=True):
    cols = {"length_m": 3000.0, "slope": 0.002, "n": 0.05, "bottom_width_m": 5.0, "side_slope": 1.0}
    if elevation:
        cols["elevation_m"] = 200.0
    net = build_network([1, 2, 3], [3, 3, 0], pd.DataFrame(cols, index=range(3)))
    T = 60
    m = StreamTemperature(net, dt=86400.0, surface_exchange=exchange)
    days = torch.arange(T, dtype=F64)[:, None]
    air = (12.0 + 10.0 * torch.sin(2 * torch.pi * days / 60)).expand(T, 3)
    f = HeatForcing(air, (150.0 + 100 * torch.sin(2 * torch.pi * days / 60)).expand(T, 3), 0.7, 2.0, 0.4,
                    pet=torch.full((T, 3), 3.0, dtype=F64), sky_shade=torch.tensor([0.2, 0.9, 0.5], dtype=F64),
                    veg_shade=torch.tensor([0.1, 0.3, 0.2], dtype=F64))
    q = torch.tensor([0.5, 0.2, 0.1], dtype=F64).expand(T, 3) * (1 + 0.5 * torch.sin(days / 3))
    return net, m, f, q


def test_prms_exchange_in_the_model_keeps_the_guarantees():
    net, m, f, q = _tiny()
    res = m(q, f, budget=True, shade=0.1, gw_offset=1.0)
    assert m.report["reference_iterations"] <= 10 and m.report["reference_gap_degC"] < 1e-3
    tw, te, tl = res.temperature, res.equilibrium, res.lateral_temp
    # convex combination: every reach-step within the range of its sources (equilibrium, lateral, upstream, start)
    down = net.downstream
    lo = torch.minimum(torch.minimum(te, tl), tl[0].expand_as(tl))
    hi = torch.maximum(torch.maximum(te, tl), tl[0].expand_as(tl))
    lo, hi = torch.cummin(lo, 0).values, torch.cummax(hi, 0).values
    for i in range(len(net)):
        for j in np.flatnonzero(down == i):
            lo[:, i], hi[:, i] = torch.minimum(lo[:, i], lo[:, j]), torch.maximum(hi[:, i], hi[:, j])
    assert ((tw >= lo - 1e-9) & (tw <= hi + 1e-9)).all()
    # the heat budget closes exactly and the exchange splits into the PRMS terms plus the linear-law residual
    b = res.budget
    lhs = b["storage_change_J"]
    rhs = b["advection_in_J"] + b["lateral_in_J"] - b["outflow_J"] + b["exchange_J"]
    assert ((lhs - rhs).abs() <= 1e-9 * (b["outflow_J"].abs() + 1.0)).all()
    parts = [k for k in b if k.endswith("_J") and k not in ("storage_change_J", "advection_in_J", "lateral_in_J",
                                                           "outflow_J", "exchange_J")]
    assert {"vegetation_longwave_J", "friction_J", "ground_conduction_J", "linearisation_residual_J"} <= set(parts)
    assert torch.allclose(sum(b[k] for k in parts), b["exchange_J"], rtol=0, atol=1e-3)
    # the as-coded mode only shrinks the exchange area: closer to the conservative tracer
    _, m2, _, _ = _tiny("prms_sntemp_as_coded")
    tr = StreamTemperature(net, dt=86400.0, exchange=False)(q, f).temperature
    t2 = m2(q, f, shade=0.1, gw_offset=1.0).temperature
    assert (t2 - tr).abs().max() < 0.2 * (tw - tr).abs().max()


def test_prms_exchange_bad_input():
    net, m, f, q = _tiny()
    with pytest.raises(ValueError, match="needs forcing.pet"):
        m(q, HeatForcing(f.air_temp, f.shortwave, 0.7, 2.0, 0.4, sky_shade=f.sky_shade, veg_shade=f.veg_shade))
    with pytest.raises(ValueError, match="forcing 'veg_shade' outside"):
        m(q, HeatForcing(f.air_temp, f.shortwave, 0.7, 2.0, 0.4, pet=f.pet, sky_shade=f.sky_shade,
                         veg_shade=f.veg_shade + 1.5))
    _, m3, _, _ = _tiny(elevation=False)
    with pytest.raises(NetworkError, match="elevation_m"):
        m3(q, f)


def test_prms_terms_match_the_pywatershed_flux_file(shared_data):
    """PRMS-SNTemp's heat terms (W, pywatershed 3.0.0 flux file, divided by its area seg_flow_width x seg_length)
    against rivergraph's prms_sntemp terms evaluated at PRMS's inflow temperature t_o (the flow-weighted upstream
    and lateral temperatures of its output) on 200 segment-days of 1980: sky and vegetation longwave, emission
    (PRMS reports it at t_o), friction, evaporation (PRMS reports E x 2.495e9, our term at 0 degC) and shortwave
    (PRMS converts 1 Ly/day = 11.63/24 W m-2, rivergraph 41,840/86,400: 0.07 % apart) within 0.5 %."""
    import xarray as xr

    with xr.open_dataset(shared_data / ST / "drb_pws3_streamtemp_drivers.nc") as ds:
        drv = {v: ds[v].values.astype(np.float64) for v in ("seg_tave_air", "seg_humid", "seg_ccov", "seg_shade",
               "seg_svi", "seginc_swrad", "seg_potet", "seg_flow_width", "seg_inflow", "seg_lateral_inflow")}
        length, slope, elev = (ds[v].values.astype(np.float64) for v in ("seg_length", "seg_slope", "seg_elev"))
        defect = ds["seginc_swrad_defect"].values.astype(bool)
    with xr.open_dataset(shared_data / ST / "drb_pws3_streamtemp.nc") as ds:
        up, lat, gw = (ds[v].values.astype(np.float64) for v in ("seg_tave_upstream", "seg_tave_lat", "seg_tave_gw"))
        ok = ds["seg_tave_water_status"].values == 0
    with xr.open_dataset(shared_data / ST / "drb_pws3_streamtemp_energy_fluxes.nc") as ds:
        fx = {v: ds[v].values.astype(np.float64) for v in ds.data_vars}
    rng = np.random.default_rng(0)
    cand = np.argwhere(ok & (drv["seg_inflow"] > 1.0) & ~defect[None, :] & (np.arange(731) >= 365)[:, None])
    t, i = cand[rng.choice(len(cand), 200, replace=False)].T
    q_up = drv["seg_inflow"][t, i] - drv["seg_lateral_inflow"][t, i]
    t_o = np.where(q_up > 0, (np.nan_to_num(up[t, i]) * q_up + lat[t, i] * drv["seg_lateral_inflow"][t, i])
                   / drv["seg_inflow"][t, i], lat[t, i])
    width = drv["seg_flow_width"][t, i]
    area = width * length[i]
    g = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float64))  # noqa: E731
    inp = dict(t_ref=g(t_o), shortwave=g(drv["seginc_swrad"][t, i] * 41840.0 / 86400.0 * (1 - drv["seg_shade"][t, i])),
               rel_humidity=g(drv["seg_humid"][t, i]), cloud_cover=g(drv["seg_ccov"][t, i]), shade=g(0.0),
               sky_shade=g(drv["seg_shade"][t, i]), veg_shade=g(drv["seg_svi"][t, i]),
               pet_m_s=g(drv["seg_potet"][t, i] * 0.0254 / 86400.0), pressure_hpa=air_pressure_hpa(g(elev[i])),
               friction=friction_heat(g(drv["seg_inflow"][t, i] * 0.028316846592), g(width), g(slope[i])),
               t_ground=g(gw[t, i]))
    form = get_exchange("prms_sntemp")
    at_to = {k: v.numpy() for k, v in form.terms(g(t_o), **inp).items()}
    at_0 = {k: v.numpy() for k, v in form.terms(g(np.zeros_like(t_o)), **inp).items()}
    pairs = {"longwave_in": (at_to["longwave_in"], fx["atmospheric_longwave"]),
             "vegetation_longwave": (at_to["vegetation_longwave"], fx["longwave_vegetation"]),
             "longwave_out": (-at_to["longwave_out"], fx["longwave_emission"]),
             "friction": (at_to["friction"], fx["friction_heat"]),
             "evaporation": (-at_0["evaporation"], fx["evaporative_cooling"]),
             "shortwave": (at_to["shortwave"], fx["solar_radiation"])}
    for name, (ours, prms) in pairs.items():
        ref = prms[t, i] / area
        scale = np.maximum(np.abs(ref), 1e-3 * np.abs(ref).max() + 1e-9)
        rel = np.abs(ours - ref) / scale
        assert np.percentile(rel, 95) < 5e-3 and rel.max() < 2e-2, (name, float(np.percentile(rel, 95)), rel.max())


def test_prms_exchange_gradient_through_the_fixed_point():
    """Gradients of the water temperature w.r.t. per-reach parameters follow the unrolled inflow-temperature
    sweeps (converged tightly here so the finite differences see the same fixed point)."""
    net, _, f, q = _tiny()
    m = StreamTemperature(net, dt=86400.0, surface_exchange="prms_sntemp", reference_tol=1e-11,
                          reference_max_iter=60)
    hyd = m.route(q)
    hyd = type(hyd)(*(x.detach() for x in (hyd.Q, hyd.I, hyd.q, hyd.W, hyd.width)))

    def g(shade, ke, off):
        return m.temperature(hyd, f, shade=shade, ke_scale=ke, gw_offset=off).temperature[-20:].mean(0)

    args = [torch.tensor([0.1, 0.3, 0.2], dtype=F64, requires_grad=True),
            torch.tensor([0.8, 1.2, 1.0], dtype=F64, requires_grad=True),
            torch.tensor([0.5, -1.0, 2.0], dtype=F64, requires_grad=True)]
    assert torch.autograd.gradcheck(g, args, atol=1e-6, rtol=1e-4)
