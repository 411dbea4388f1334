"""Stream temperature: engine vs a plain loop, analytic cases, heat conservation, bounds, gradients, I/O."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.datasets import load_lower_colorado
from rivergraph.physics.heat import CP_W, RHO_W, V_MIN, energy_balance_equilibrium, mohseni_equilibrium
from rivergraph.models.temperature import (HeatForcing, Hydraulics, StreamTemperature, joint_loss, synthetic_texas_forcing, temperature_parameter_net)

torch.set_num_threads(1)


def _net(ids, to, **cols):
    n = len(ids)
    attrs = pd.DataFrame({"length_m": 2000.0, "slope": 0.002, "n": 0.05, "bottom_width_m": 5.0,
                          "side_slope": 1.0, "top_width_m": 8.0, "lat": 30.3, "lon": -97.7,
                          "elevation_m": 200.0, "order": 1}, index=range(n))
    for k, v in cols.items():
        attrs[k] = v
    return build_network(ids, to, attrs)


# ------------------------------------------------------------------------------ analytic cases
def test_single_reach_relaxes_with_time_constant():
    """A still pool (no flow) relaxes to T_e as exp(-t / tau), tau = rho c_p V / (K_e A) (Newton cooling)."""
    net = _net([1], [0])
    m = StreamTemperature(net, dt=3600.0, equilibrium="mohseni")
    T, W, width = 48, 2.0e4, 10.0  # 2 m deep pool: V / A = 2e4 / (10 * 2000) = 1 m
    z = torch.zeros(T, 1, dtype=torch.float64)
    hyd = Hydraulics(z, z, z, torch.full((T + 1, 1), W, dtype=torch.float64), torch.full((T, 1), width,
                                                                                       dtype=torch.float64))
    air = torch.full((T, 1), 20.0, dtype=torch.float64)
    te = mohseni_equilibrium(air)[0, 0].item()
    r = m.temperature(hyd, HeatForcing(air), T0=torch.tensor([5.0], dtype=torch.float64), ke_scale=1.0)
    tau = RHO_W * CP_W * (W + V_MIN) / (30.0 * width * 2000.0)  # s
    t = 3600.0 * torch.arange(1, T + 1, dtype=torch.float64)
    expect = te + (5.0 - te) * torch.exp(-t / tau)
    assert (r.temperature[:, 0] - expect).abs().max() < 1e-10
    assert abs(tau / 3600.0 - 38.7) < 0.1  # ~39 h for 1 m of water at 30 W m-2 degC-1


def test_confluence_mixes_by_flow():
    """Two tributaries at 10 and 30 degC, flows 1 and 3 m3/s, meet: downstream = (1*10 + 3*30)/4 = 25."""
    net = _net([1, 2, 3], [3, 3, 0])
    m = StreamTemperature(net, dt=3600.0, exchange=False)
    T = 200
    q = torch.tensor([[1.0, 3.0, 0.0]], dtype=torch.float64).expand(T, 3)
    air = torch.tensor([[10.0, 30.0, 20.0]], dtype=torch.float64).expand(T, 3)
    r = m(q, HeatForcing(air, torch.zeros(T, 3, dtype=torch.float64)), gw_frac=0.0, ss_frac=0.0)
    assert r.temperature[-1, :2].tolist() == pytest.approx([10.0, 30.0], abs=1e-9)
    assert r.temperature[-1, 2].item() == pytest.approx(25.0, abs=1e-6)


@pytest.mark.parametrize("mode", ["trapezoid", "static"])
def test_heat_conserved_without_exchange_and_budget_closes(small, mode):
    N = len(small)
    T = 30
    g = torch.Generator().manual_seed(1)
    tt = torch.arange(T, dtype=torch.float64)[:, None]
    q = 0.05 + 2.0 * torch.rand(N, generator=g, dtype=torch.float64) * torch.exp(-0.5 * ((tt - 8) / 3.0) ** 2)
    time = pd.date_range("2021-08-23", periods=T, freq="h", tz="UTC")
    forcing = synthetic_texas_forcing(small, time)
    m = StreamTemperature(small, dt=3600.0, mode=mode, exchange=False)
    hyd = m.route(q)
    r = m.temperature(hyd, forcing, T0=torch.full((N,), 15.0, dtype=torch.float64), budget=True)
    # network heat: rho c_p sum (W + V_MIN) T changes by lateral heat in minus outlet heat out
    rc = RHO_W * CP_W
    inv = m.sched.sorted_pos
    W = (hyd.W + V_MIN).index_select(1, inv)
    Tw = r.temperature
    start = rc * (W[0] * 15.0).sum()
    end = rc * (W[-1] * Tw[-1]).sum()
    lat_in = rc * 3600.0 * (q * r.lateral_temp).sum()
    outlets = torch.as_tensor(small.outlets)
    out = rc * 3600.0 * (r.discharge[:, outlets] * Tw[:, outlets]).sum()
    assert abs((end - start) - (lat_in - out)) / lat_in < 1e-12
    # flow-weighted bounds: a tracer without exchange stays within its sources
    lo = min(15.0, r.lateral_temp.min().item())
    hi = max(15.0, r.lateral_temp.max().item())
    assert Tw.min() >= lo - 1e-9 and Tw.max() <= hi + 1e-9
    # the per-reach budget closes with exchange on too
    m2 = StreamTemperature(small, dt=3600.0, mode=mode)
    b = m2.temperature(hyd, forcing, budget=True).budget
    resid = b["storage_change_J"] - (b["advection_in_J"] + b["lateral_in_J"] - b["outflow_J"] + b["exchange_J"])
    assert resid.abs().max() / b["advection_in_J"].abs().max() < 1e-11
    assert b["exchange_J"].abs().sum() > 0


def test_bounded_and_stable_for_long_steps(small):
    """A daily step (many reach travel times) stays between the coldest and warmest source; no overshoot."""
    N, T = len(small), 20
    time = pd.date_range("2021-07-01", periods=T, freq="D", tz="UTC")
    g = torch.Generator().manual_seed(2)
    q = 0.5 * torch.rand(T, N, generator=g, dtype=torch.float64)
    air = 15.0 + 15.0 * torch.rand(T, N, generator=g, dtype=torch.float64)
    sw = 800.0 * torch.rand(T, N, generator=g, dtype=torch.float64)
    m = StreamTemperature(small, dt=86400.0)
    r = m(q, HeatForcing(air, sw), time=time, T0=torch.full((N,), 40.0, dtype=torch.float64))
    lo = min(r.equilibrium.min(), r.lateral_temp.min()).item()
    hi = max(r.equilibrium.max().item(), r.lateral_temp.max().item(), 40.0)
    assert torch.isfinite(r.temperature).all()
    assert r.temperature.min() >= lo - 1e-9 and r.temperature.max() <= hi + 1e-9


def test_energy_balance_magnitudes():
    """K_e in the published ~10-60 W m-2 degC-1 range; T_e above air at noon, below at night."""
    ta = torch.tensor([30.0, 30.0], dtype=torch.float64)
    te, ke = energy_balance_equilibrium(ta, torch.tensor([900.0, 0.0], dtype=torch.float64), 0.5, 2.0, 0.0)
    assert 20.0 < ke[0].item() < 45.0
    assert te[0] > 35.0 and te[1] < 28.0
    te_shade, _ = energy_balance_equilibrium(ta, torch.tensor([900.0, 0.0], dtype=torch.float64), 0.5, 2.0, 1.0)
    assert te_shade[1] == te[1] and te_shade[0] < te[0]


# ------------------------------------------------------------------------------ gradients
def test_gradcheck_full_path():
    """Temperature at the outlet, through routing (Manning's n) and heat (shade, ke_scale, gw_frac)."""
    net = _net([1, 2, 3, 4], [3, 3, 4, 0])
    N, T = 4, 6
    time = pd.date_range("2021-08-23 12:00", periods=T, freq="h", tz="UTC")
    g = torch.Generator().manual_seed(3)
    q = 0.2 + torch.rand(T, N, generator=g, dtype=torch.float64)
    m = StreamTemperature(net, dt=3600.0)
    forcing = synthetic_texas_forcing(net, time)

    def f(n, shade, ke, gw):
        r = m(q, forcing, routing_params={"n": n}, shade=shade, ke_scale=ke, gw_frac=gw)
        return r.temperature[:, 3]

    args = [torch.full((N,), v, dtype=torch.float64, requires_grad=True) for v in (0.05, 0.3, 1.2, 0.4)]
    assert torch.autograd.gradcheck(f, args, atol=1e-6)


def test_parameter_net_joint_loss_gradients(small):
    """Temperature parameters from attributes (ParameterNet) plus Manning's n, joint loss: all get gradient."""
    from rivergraph.models.params import ROUTING_OUTPUTS

    N, T = len(small), 12
    time = pd.date_range("2021-08-23", periods=T, freq="h", tz="UTC")
    pnet = temperature_parameter_net({"shade": (0.0, 1.0), "ke_scale": (0.5, 2.0, "log"),
                                      "n": ROUTING_OUTPUTS["n"]}).double()
    pnet.scaler.fit(small)
    p = pnet(pnet.scaler.transform(small, torch.float64))
    q = torch.full((T, N), 0.3, dtype=torch.float64)
    m = StreamTemperature(small, dt=3600.0)
    r = m(q, synthetic_texas_forcing(small, time), routing_params={"n": p["n"]}, shade=p["shade"],
          ke_scale=p["ke_scale"])
    t_obs = torch.full((T, N), float("nan"), dtype=torch.float64)
    t_obs[:, -1] = 28.0
    q_obs = r.discharge.detach() * 1.1
    loss = joint_loss(r.discharge, q_obs, r.temperature, t_obs, 0.5, 1.0)
    loss.backward()
    grads = [p_.grad for p_ in pnet.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(gr.abs().sum() for gr in grads) > 0


# ------------------------------------------------------------------------------ bad input
def test_bad_input_names_the_problem():
    net = _net([1, 2, 3], [3, 3, 0])
    m = StreamTemperature(net, dt=3600.0)
    q = torch.ones(4, 3, dtype=torch.float64)
    air = torch.full((4, 3), 25.0, dtype=torch.float64)
    air[2, 1] = float("nan")
    sw = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"air_temp.*\[2\]"):
        m(q, HeatForcing(air, sw))
    air[2, 1] = 25.0
    with pytest.raises(ValueError, match=r"shade.*\[0\.0, 1\.0\].*\[3\]"):
        m(q, HeatForcing(air, sw), shade=torch.tensor([0.1, 0.2, 1.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="unknown temperature parameter"):
        m(q, HeatForcing(air, sw), shadow=0.1)
    with pytest.raises(ValueError, match="air_temp.*shape"):
        m(q, HeatForcing(air[:, :2], sw))
    with pytest.raises(ValueError, match="rel_humidity"):
        m(q, HeatForcing(air, sw, rel_humidity=60.0))
    with pytest.raises(ValueError, match="shortwave is missing"):
        m(q, HeatForcing(air))
    with pytest.raises(ValueError, match="kelvin"):
        m(q, HeatForcing(air + 273.15, sw))


# ------------------------------------------------------------------------------ output
def test_netcdf_and_plot(tmp_path, small):
    import xarray as xr

    from rivergraph.io.cf import write_temperature
    from rivergraph.plots import plot_reach_map, save

    N, T = len(small), 4
    time = pd.date_range("2021-08-23", periods=T, freq="h", tz="UTC")
    m = StreamTemperature(small, dt=3600.0)
    r = m(torch.full((T, N), 0.2, dtype=torch.float64), synthetic_texas_forcing(small, time))
    path = tmp_path / "out" / "temp.nc"
    write_temperature(path, small, time, r)
    with xr.open_dataset(path) as ds:
        assert ds["water_temperature"].attrs["units"] == "degC"
        assert np.allclose(ds["water_temperature"].values, r.temperature.numpy(), atol=1e-4)
        assert list(ds["feature_id"].values) == list(small.ids)
        np.testing.assert_allclose(ds["streamflow"].values, r.discharge.numpy(), rtol=1e-6)
    save(plot_reach_map(small, r.temperature[-1].numpy(), series={"x": r.temperature[:, 0].numpy()}),
         tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ------------------------------------------------------------------------------ CLI
def test_cli_temperature(tmp_path, monkeypatch, capsys):
    from rivergraph.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "t.yaml"
    cfg.write_text("spinup_hours: 2\ndtype: float32\nplot_gauges: 2\noutput_dir: out\nparameters: {shade: 0.4}\n")
    assert main(["temperature", str(cfg)]) == 0
    assert (tmp_path / "out" / "temperature.nc").stat().st_size > 0
    assert (tmp_path / "out" / "temperature.png").stat().st_size > 0
    assert "water temperature on flowing reaches" in capsys.readouterr().out
    cfg.write_text("parameters: {shade: 1.5}\n")
    assert main(["temperature", str(cfg)]) == 2
    assert "shade" in capsys.readouterr().err
    assert main(["temperature", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    # user forcing from netCDF (here: the synthetic weather written out, a constant 2 degC warmer)
    import xarray as xr

    net, data = load_lower_colorado()
    time = pd.date_range(data["time"][0] - pd.Timedelta(hours=2), periods=30, freq="h")
    f = synthetic_texas_forcing(net, time)
    xr.Dataset({"air_temp": (("time", "reach"), f.air_temp.numpy() + 2.0),
                "shortwave": (("time", "reach"), f.shortwave.numpy()),
                "rel_humidity": (("time", "reach"), f.rel_humidity.numpy()),
                "wind": (("time", "reach"), np.full(f.shortwave.shape, 3.0))},
               coords={"time": time.tz_convert(None), "reach": net.ids}).to_netcdf(tmp_path / "wx.nc")
    cfg.write_text("spinup_hours: 2\noutput_dir: out2\nplot_gauges: 0\n"
                   "parameters: {shade: 0.4}\nforcing: {kind: netcdf, path: wx.nc}\n")
    assert main(["temperature", str(cfg)]) == 0
    with xr.open_dataset(tmp_path / "out" / "temperature.nc") as a:
        with xr.open_dataset(tmp_path / "out2" / "temperature.nc") as b:
            d = (b["equilibrium_temperature"] - a["equilibrium_temperature"]).values
    assert 1.5 < float(np.median(d)) < 2.5  # 2 degC warmer air -> ~2 degC warmer equilibrium
    cfg.write_text("spinup_hours: 5\noutput_dir: out3\nforcing: {kind: netcdf, path: wx.nc}\n")
    assert main(["temperature", str(cfg)]) == 2
    assert "no values at 3 times" in capsys.readouterr().err


# ------------------------------------------------------------------------------ PRMS-SNTemp reference
def test_prms_sntemp_segment_default_parameters(shared_data):
    """Default parameters on Delaware segment 2007 track PRMS-SNTemp's simulated water temperature
    (measured: RMSE 3.66 degC, r 0.92 over 2003-10..2005-09); pins the comparison of docs/temperature.md."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "prms_compare", Path(__file__).resolve().parents[1] / "examples" / "temperature_prms_compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--data", str(shared_data / "delaware_river_dl"), "--iters", "0", "--json-only"])
    s = out["default"]["vs_prms_train"]
    assert s["n"] == 731
    assert s["corr"] > 0.9 and s["rmse"] < 4.0
