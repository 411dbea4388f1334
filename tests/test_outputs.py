"""Streaming CF netCDF / zarr outputs and gauge CSVs on a real Lower Colorado gauge subnetwork."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from rivergraph.io.writer import read_gauge_csv, route_to_file
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def basin(basin_08159000):
    """The 107-reach subnetwork draining to USGS 08159000 (nested gauges inside), with its NWM forcing."""
    sub, q, data = basin_08159000
    return sub, q, data["time"]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_chunked_stream_equals_one_call(basin, tmp_path, suffix):
    net, q, times = basin
    router = MuskingumCunge(net)
    expected = router(q).numpy()
    assert expected.max() > 1.0  # a basin with real, varying inflow
    out = tmp_path / f"flow{suffix}"
    s = route_to_file(router, q, out, times=times, chunk_size=5, dtype="float64", gauge_csv=tmp_path / "g.csv")
    assert s.chunks == 6 and s.steps == 28 and s.reaches == len(net)
    assert abs(s.balance.relative_error) < 1e-10
    ds = xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out)
    with ds:
        np.testing.assert_allclose(ds["streamflow"].values, expected, rtol=1e-12, atol=1e-12)
        assert ds["streamflow"].attrs["units"] == "m3 s-1"
        assert ds["streamflow"].attrs["standard_name"] == "water_volume_transport_in_river_channel"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["featureType"] == "timeSeries"
        assert ds["feature_id"].attrs["cf_role"] == "timeseries_id"
        np.testing.assert_array_equal(ds["feature_id"].values, net.ids)
        np.testing.assert_allclose(ds["lat"].values, net.attrs["lat"].to_numpy(np.float64))
        assert ds["lon"].attrs["units"] == "degrees_east"
        assert (pd.DatetimeIndex(ds["time"].values).tz_localize("UTC") == times).all()
    g = read_gauge_csv(tmp_path / "g.csv")
    gauges = net.gauges()
    assert len(g) == 28 * len(gauges) and set(g["gage"]) == set(gauges)
    for pos, gid in gauges.items():
        sim = g.loc[g["gage"] == gid, "discharge_m3s"].to_numpy()
        np.testing.assert_allclose(sim, expected[:, pos], rtol=1e-5)  # CSV keeps 6 significant digits
    assert _leftovers(tmp_path) == []


def test_callable_forcing_is_read_chunk_by_chunk_and_subset_reaches(basin, tmp_path):
    net, q, times = basin
    asked = []

    def forcing(t0, t1):
        asked.append((t0, t1))
        return q[t0:t1]

    router = MuskingumCunge(net)
    expected = router(q).numpy()
    cols = [0, 7, len(net) - 1]
    s = route_to_file(router, forcing, tmp_path / "sub.nc", start=times[0], n_steps=28, chunk_size=10,
                      reaches=cols, dtype="float64")
    assert asked == [(0, 10), (10, 20), (20, 28)]
    with xr.open_dataset(tmp_path / "sub.nc") as ds:
        np.testing.assert_allclose(ds["streamflow"].values, expected[:, cols], rtol=1e-12)
        assert (pd.DatetimeIndex(ds["time"].values).tz_localize("UTC") == times).all()
    # the returned state continues the run exactly
    again = router(q[:3], state=s.state)
    cont = MuskingumCunge(net)(torch.cat([q, q[:3]]))[-3:]
    torch.testing.assert_close(again, cont, rtol=1e-12, atol=1e-12)


def test_bad_input_is_a_clear_error_and_leaves_no_file(basin, tmp_path):
    net, q, times = basin
    router = MuskingumCunge(net)
    with pytest.raises(ValueError, match="unknown format '.txt'"):
        route_to_file(router, q, tmp_path / "flow.txt", times=times)
    with pytest.raises(ValueError, match="time axis"):
        route_to_file(router, q, tmp_path / "flow.nc")
    with pytest.raises(ValueError, match="times has 3 entries"):
        route_to_file(router, q, tmp_path / "flow.nc", times=times[:3])
    with pytest.raises(ValueError, match=r"forcing rows 10\.\.19: expected shape"):
        route_to_file(router, lambda a, b: q[a:b, :5] if a >= 10 else q[a:b], tmp_path / "flow.nc",
                      times=times, n_steps=28, chunk_size=10)
    assert not (tmp_path / "flow.nc").exists() and _leftovers(tmp_path) == []
    # an existing output survives a failed rewrite, for both formats
    for name in ("keep.nc", "keep.zarr"):
        route_to_file(router, q[:4], tmp_path / name, times=times[:4])
        bad = q[:4].clone()
        bad[2, 3] = float("nan")
        with pytest.raises(ValueError, match=f"reaches \\[{net.ids[3]}\\]"):
            route_to_file(router, bad, tmp_path / name, times=times[:4], chunk_size=2)
        opener = xr.open_zarr if name.endswith("zarr") else xr.open_dataset
        with opener(tmp_path / name) as ds:
            assert ds.sizes["time"] == 4
    assert _leftovers(tmp_path) == []


def test_zarr_overwrite_replaces_store(basin, tmp_path):
    net, q, times = basin
    router = MuskingumCunge(net)
    route_to_file(router, q[:4], tmp_path / "f.zarr", times=times[:4])
    route_to_file(router, q[:8], tmp_path / "f.zarr", times=times[:8], chunk_size=3)
    with xr.open_zarr(tmp_path / "f.zarr") as ds:
        assert ds.sizes["time"] == 8
    assert _leftovers(tmp_path) == []
