"""Stream temperature on the real Delaware River Basin NHM network against PRMS-SNTemp (issue 17)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from rivergraph.io.nhm import read_nhm
from rivergraph.io.sntemp import LY_PER_DAY_TO_WM2, read_sntemp_drivers

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = "delaware_nhm_2yr/derived_streamtemp/drb_pws3_streamtemp_drivers.nc"


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sntemp_drivers_reader(shared_data):
    net = read_nhm(shared_data / "delaware_nhm_2yr" / "raw")
    drv = read_sntemp_drivers(shared_data / DRIVERS, net)
    f = drv.forcing
    assert f.air_temp.shape == (731, 456) and len(drv.time) == 731
    for v in (f.gw_share, f.ss_share, f.melt_share, f.cloud_cover):
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert float((f.gw_share + f.ss_share).max()) <= 1.0 + 1e-9
    raw = drv.raw
    i = int(np.argmax(raw["seginc_swrad"][180]))
    assert abs(float(f.shortwave[180, i]) - raw["seginc_swrad"][180, i] * LY_PER_DAY_TO_WM2
               * (1 - raw["seg_shade"][180, i])) < 1e-9
    # PRMS's melt rule: any melt on a dry day makes the surface and subsurface water snowmelt
    dry_melt = (raw["seg_melt"] > 0) & (raw["seg_rain"] == 0)
    assert dry_melt.any() and torch.all(f.melt_share[torch.from_numpy(dry_melt)] == 1.0)
    with pytest.raises(ValueError, match="no drivers for segments"):
        read_sntemp_drivers(shared_data / DRIVERS, _renamed(net))


def _renamed(net):
    """The network with one reach id that the drivers file does not have."""
    from rivergraph import build_network

    ids = np.asarray(net.ids).copy()
    down = net.downstream
    to = np.where(down >= 0, ids[np.maximum(down, 0)], 0)
    old = ids[0]
    ids[0] = 999999
    to = np.where(to == old, 999999, to)
    return build_network(ids, to, net.attrs.reset_index(drop=True), min_slope=1e-7)


@pytest.mark.slow
def test_delaware_1980_against_prms_sntemp(shared_data):
    """Median per-segment 1980 RMSE of rivergraph vs PRMS-SNTemp with PRMS's drivers and flows (measured 3.67
    degC, NSE 0.81; docs/temperature.md); fails if the physics or the drivers reading drift."""
    td = _example("temperature_delaware")
    out = td.main(["--data", str(shared_data)])
    a = out["flows_prms"]["all"]
    assert a["segments"] == 455
    assert 3.0 < a["median_rmse"] < 4.3 and a["median_nse"] > 0.7
    # PRMS-SNTemp here is close to a tracer of its lateral-inflow temperatures (measured 0.83 degC)
    assert out["flows_prms_exchange_off"]["all"]["median_rmse"] < 1.2
    b = out["flows_routed"]["all"]
    assert b["median_rmse"] < 4.6 and b["median_nse"] > 0.65
    # surface-exchange formulations (measured 1980 median RMSE: prms_sntemp 8.88, prms_sntemp_as_coded 0.83)
    f = out["formulations_flows_prms"]
    assert f["chapra_edinger"] == a
    assert f["prms_sntemp_as_coded"]["median_rmse"] < 1.0 and f["prms_sntemp_as_coded"]["median_nse"] > 0.97
    assert f["prms_sntemp"]["median_rmse"] > 5.0  # PRMS's balance over the whole surface: far colder than PRMS
    assert f["prms_sntemp_as_coded"]["reference_gap_degC"] < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("surface_exchange", ["chapra_edinger", "prms_sntemp"])
def test_cli_temperature_delaware(shared_data, tmp_path, monkeypatch, surface_exchange):
    """The general config path: an NHM network, its precomputed lateral inflow, PRMS-SNTemp drivers; CF output
    with NaN on non-flowing reaches; the surface exchange chosen by name in the config."""
    import xarray as xr

    from rivergraph.cli import main

    cfg = (ROOT / "examples" / "temperature_delaware.yaml").read_text()
    cfg = cfg.replace("../../shared/data", str(shared_data)).replace('end: "1980-12-31"', 'end: "1979-03-31"')
    cfg += f"\nsurface_exchange: {surface_exchange}\n"
    p = tmp_path / "t.yaml"
    p.write_text(cfg)
    monkeypatch.chdir(tmp_path)
    assert main(["temperature", str(p)]) == 0
    with xr.open_dataset(tmp_path / "temperature_delaware_out" / "temperature.nc") as ds:
        tw = ds["water_temperature"].values
        q = ds["streamflow"].values
        assert tw.shape == (90, 456)
        assert np.isnan(tw[q < 0.01]).all() and np.isfinite(tw[q >= 0.01]).all()
        assert np.nanmax(tw) < 25.0 and np.nanmin(tw) >= 0.0
    assert (tmp_path / "temperature_delaware_out" / "temperature.png").stat().st_size > 1000
