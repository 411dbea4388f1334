"""NHM / PRMS readers on the real Delaware River Basin files (../shared/data/delaware_nhm_2yr)."""
from __future__ import annotations

import numpy as np
import pytest

from rivergraph.graph.network import NetworkError
from rivergraph.io import read_network
from rivergraph.io.nhm import (ACRE_TO_KM2, CFS_TO_M3S, hru_to_segment, prms_param, read_hru_params, read_nhm,
                               read_prms_gauges, read_segment_series)


@pytest.fixture(scope="module")
def drb(shared_data):
    return shared_data / "delaware_nhm_2yr"


@pytest.fixture(scope="module")
def net(drb):
    return read_network(drb / "raw" / "parameters_dis_seg.nc")


def test_network_topology_and_units(net, drb):
    import xarray as xr

    assert net.report["source"].startswith("nhm:")
    assert len(net) == 456 and net.n_outlets == 6
    ds = xr.open_dataset(drb / "raw" / "parameters_dis_seg.nc")
    ts = ds["tosegment"].values
    # 1-based positions: the downstream of row i is row tosegment[i] - 1; 0 = outlet
    assert np.array_equal(net.downstream, np.where(ts > 0, ts - 1, -1))
    assert np.array_equal(net.ids, ds["nhm_seg"].values)
    area = ds["seg_cum_area"].values * 0.0040468564224
    np.testing.assert_allclose(net.attr("drainage_area_km2"), np.maximum(area, 0.01))
    assert (area == 0).sum() == 1
    assert 0.018 <= net.attr("n").min() and net.attr("n").max() <= 0.15
    assert net.report["slopes_floored"] == 0                 # PRMS's floor 1e-7; DRB minimum is 2e-6
    assert net.attr("slope").min() == pytest.approx(2e-6)
    # the outlet of the Delaware (largest cumulative area) drains ~30,655 km2 (Delaware at the bay)
    assert net.attr("drainage_area_km2").max() == pytest.approx(30655.5, rel=1e-4)
    # HRU areas accumulated down the network equal seg_cum_area
    acc = net.accumulate(net.attr("catchment_area_km2"))
    A = net.attr("drainage_area_km2")
    np.testing.assert_allclose(acc[A > 0.01], A[A > 0.01], rtol=1e-6)
    assert net.report["zero_drainage_area"] == [3558]
    assert len(net.gauges()) == 168


def test_nwm_default_floor_applies_when_asked(drb):
    with pytest.warns(UserWarning):
        n2 = read_nhm(drb / "raw", min_slope=1e-5)
    assert n2.report["slopes_floored"] == 2


def test_gauges_matched_by_id_and_converted(net, drb):
    import xarray as xr

    g = read_prms_gauges(drb / "raw" / "drb_2yr_gage_poi_obs.nc", net)
    assert g.discharge_m3s.shape == (731, 168)
    assert g.complete.sum() == 101
    o = xr.open_dataset(drb / "raw" / "drb_2yr_gage_poi_obs.nc")
    i = list(g.ids).index("01463500")   # Delaware River at Trenton NJ
    np.testing.assert_allclose(g.discharge_m3s[:, i], o["discharge"].sel(poi_id="01463500").values * CFS_TO_M3S,
                               rtol=1e-6)
    # the gauge sits on the segment that poi_gage_segment names (the files order gauges differently)
    ds = xr.open_dataset(drb / "raw" / "parameters_dis_seg.nc")
    k = list(ds["poi_gage_id"].values).index("01463500")
    assert g.positions[i] == ds["poi_gage_segment"].values[k] - 1
    # the segment's cumulative area matches the USGS drainage area (Trenton: 6,780 mi2)
    assert net.attr("drainage_area_km2")[g.positions[i]] == pytest.approx(g.drainage_area_km2[i], rel=0.02)
    ratio = net.attr("drainage_area_km2")[g.positions[g.complete]] / g.drainage_area_km2[g.complete]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.02)


def test_segment_series_in_network_order(net, drb):
    t, q = read_segment_series(drb / "derived" / "seg_lateral_inflow.nc", net)
    assert q.shape == (731, 456) and (q >= 0).all()
    assert str(t[0])[:10] == "1979-01-01"
    import xarray as xr

    raw = xr.open_dataset(drb / "derived" / "seg_lateral_inflow.nc")["seg_lateral_inflow"]
    j = int(np.flatnonzero(net.ids == 2040)[0])
    np.testing.assert_allclose(q[:, j], raw.sel(nhm_seg=2040).values * CFS_TO_M3S, rtol=1e-6)
    _, out = read_segment_series(drb / "derived" / "seg_outflow.nc", net)
    # PRMS's channel conserves water: over two years, outlet outflow ~ lateral inflow (storage change small)
    outlets = net.outlets
    assert out[:, outlets].sum() == pytest.approx(q.sum(), rel=0.01)


def test_hru_params_units_and_mapping(net, drb):
    assert prms_param(drb / "raw" / "myparam.param", "elev_units")[0] == 1        # metres
    h = read_hru_params(drb / "raw" / "parameters_dis_hru.nc")
    assert h.attrs["elev_units"] == 1
    assert h["elev_m"].max() == pytest.approx(932.0)
    np.testing.assert_allclose(h["slope_m_per_km"], h["slope"] * 1000)
    assert (h["segment_pos"] == -1).sum() == 4
    loc = hru_to_segment(h["area_km2"].to_numpy()[None], h["segment_pos"].to_numpy(), len(net))[0]
    np.testing.assert_allclose(loc, net.attr("catchment_area_km2"))
    assert h["area_km2"].sum() == pytest.approx(
        (h["area_km2"] / ACRE_TO_KM2).sum() * ACRE_TO_KM2)


def test_bad_inputs_named(tmp_path, drb):
    import xarray as xr

    ds = xr.open_dataset(drb / "raw" / "parameters_dis_seg.nc").load()
    ds["tosegment"].values[3] = 999
    ds.to_netcdf(tmp_path / "parameters_dis_seg.nc")
    with pytest.raises(NetworkError, match="tosegment has positions outside"):
        read_nhm(tmp_path / "parameters_dis_seg.nc")
    lat = xr.open_dataset(drb / "derived" / "seg_lateral_inflow.nc").load()
    lat["seg_lateral_inflow"].attrs["units"] = "furlongs"
    lat.to_netcdf(tmp_path / "lat.nc")
    with pytest.raises(ValueError, match="unknown discharge units 'furlongs'"):
        read_segment_series(tmp_path / "lat.nc")
