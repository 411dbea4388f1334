"""The NextGen pipeline on real data (../shared/data/ngen_gauge_01073000): hydrofabric layers and id conventions,
ngen forcing readers, and the AORC -> LSTM -> lateral inflow -> Muskingum-Cunge example on a short window."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph.graph.network import NetworkError
from rivergraph.io import read_network
from rivergraph.io.forcing import ForcingError, read_ngen_forcing
from rivergraph.io.hydrofabric import read_hydrofabric

from conftest import SHARED_DATA, load_example

NGEN = SHARED_DATA / "ngen_gauge_01073000" / "raw"
GPKG = NGEN / "gauge_01073000.gpkg"
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ngen_01073000.py"
CONFIG = ROOT / "examples" / "configs" / "ngen_01073000.yaml"
FLOWPATHS = ["wb-11223", "wb-11371", "wb-11509", "wb-11410", "wb-11224"]

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def hf():
    assert GPKG.is_file(), f"shared data missing: {GPKG}"
    return read_hydrofabric(GPKG)


def test_hydrofabric_layers_and_id_conventions(hf):
    net = hf.network
    assert net.ids.tolist() == FLOWPATHS
    # wb-11410 -> nex-11223 -> wb-11223; wb-11223, wb-11371, wb-11509 -> nex-11224 -> wb-11224 (the gauge)
    down = {net.ids[i]: (net.ids[d] if d >= 0 else None) for i, d in enumerate(net.downstream)}
    assert down == {"wb-11410": "wb-11223", "wb-11223": "wb-11224", "wb-11371": "wb-11224",
                    "wb-11509": "wb-11224", "wb-11224": None}
    # the subset ends at the gauge's nexus, whose downstream flowpath is outside the file: reported, not hidden
    assert net.report["subset_outlets"] == {"wb-11224": "nex-11225 -> wb-11225"}
    # flowpath_attributes joined: NWM channel fields in rivergraph's names and units
    a = net.attrs.set_index(net.ids)
    assert a.loc["wb-11223", "length_m"] == pytest.approx(8851.541215)  # length_m (m), not lengthkm
    assert a.loc["wb-11224", "slope"] == pytest.approx(1e-5)             # So
    assert a.loc["wb-11223", "n"] == pytest.approx(0.058085, rel=1e-5)
    assert a.loc["wb-11224", "bottom_width_m"] == pytest.approx(4.758707, rel=1e-6)
    assert (a["musk_s"] == 3600.0).all() and (a["musx"] == 0.2).all()
    assert "side_slope" in a and (a["side_slope"] > 0).all()            # from ChSlp (convention: io.readers)
    assert net.gauges().to_dict() == {4: "01073000"}                     # rl_gages, leading zero kept
    assert hf.gauges == {"01073000": "wb-11224"}                         # hydrolocation at nex-11225
    # divides: cat-N drains into wb-N, areas in km2
    t = hf.catchment_table()
    assert dict(zip(t.catchment_id, t.reach_id)) == {f"cat-{f[3:]}": f for f in FLOWPATHS}
    assert (t.weight == 1.0).all()
    assert hf.catchment_area_km2.sum() == pytest.approx(31.656146, rel=1e-6)  # = tot_drainage_areasqkm at the gauge
    assert a.loc["wb-11224", "drainage_area_km2"] == pytest.approx(hf.catchment_area_km2.sum(), rel=1e-6)


def test_hydrofabric_errors_name_the_ids(tmp_path, hf):
    import geopandas as gpd
    import pyogrio

    bad = tmp_path / "bad.gpkg"
    for layer in ("flowpaths", "divides", "nexus"):
        gpd.read_file(GPKG, layer=layer).to_file(bad, layer=layer, driver="GPKG")
    fa = pyogrio.read_dataframe(GPKG, layer="flowpath_attributes", read_geometry=False)
    pyogrio.write_dataframe(fa[fa["id"] != "wb-11371"], bad, layer="flowpath_attributes")
    with pytest.raises(NetworkError, match="wb-11371 have no row in flowpath_attributes"):
        read_network(bad)
    pyogrio.write_dataframe(fa, bad, layer="flowpath_attributes")
    dv = gpd.read_file(GPKG, layer="divides")
    dv.loc[dv["divide_id"] == "cat-11509", "id"] = "wb-99999"
    dv.to_file(bad, layer="divides", driver="GPKG")
    with pytest.raises(NetworkError, match="cat-11509 drain into flowpaths not in the network"):
        read_hydrofabric(bad)
    dv = gpd.read_file(GPKG, layer="divides")
    dv.loc[dv["divide_id"] == "cat-11223", "areasqkm"] = 0.0
    dv.to_file(bad, layer="divides", driver="GPKG")
    with pytest.raises(NetworkError, match="cat-11223 have no positive 'areasqkm'"):
        read_hydrofabric(bad)


def test_ngen_forcing_csv_and_netcdf_agree():
    csv = read_ngen_forcing(NGEN / "forcing")
    nc = read_ngen_forcing(NGEN / "forcing.nc", ["cat-11224", "cat-11410"])
    assert sorted(csv) == ["cat-11223", "cat-11224", "cat-11371", "cat-11410", "cat-11509"]
    assert list(nc) == ["cat-11224", "cat-11410"]
    for cid in nc:
        a, b = csv[cid], nc[cid]
        assert len(a) == 720 and str(a.index.tz) == "UTC"
        assert a.index[0] == pd.Timestamp("2015-12-01 00:00", tz="UTC")
        assert a.index[-1] == pd.Timestamp("2015-12-30 23:00", tz="UTC")
        assert a.index.equals(b.index)
        for col in ("precip_rate", "TMP_2maboveground"):
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-6, atol=1e-9)
    p = csv["cat-11223"]["precip_rate"]
    assert (p >= 0).all() and 50 < p.sum() * 3600 < 200  # mm/s; a wet December (about 100 mm)
    assert 250 < csv["cat-11223"]["TMP_2maboveground"].mean() < 290  # K
    with pytest.raises(ForcingError, match="cat-1"):
        read_ngen_forcing(NGEN / "forcing", ["cat-1"])
    with pytest.raises(ForcingError, match="cat-2"):
        read_ngen_forcing(NGEN / "forcing.nc", ["cat-2"])


def _example():
    return load_example(EXAMPLE, "ngen_example")


def test_ngen_pipeline_short_window(tmp_path):
    """The shipped config on 4 days (cold start, chunks of 30 h): files, units and the water balance.
    Lateral inflow = LSTM runoff (mm/h) x divide area / 3.6; the routed volume at the gauge = lateral inflow
    volume minus the storage change; chunked routing = one call."""
    ex = _example()
    res = ex.run(CONFIG, tmp_path / "out", overrides={
        "runoff": {"spinup_cycles": 0}, "output": {"chunk": 30},
        "period": {"start": "2015-12-01 00:00", "end": "2015-12-04 23:00"}})
    assert len(res.times) == 96
    assert [p.name for p in res.pngs] == ["hydrograph.png", "map.png"]
    assert all(p.stat().st_size > 20_000 for p in res.pngs)
    assert res.summary.chunks == 4 and res.summary.steps == 96 and res.summary.reaches == 5
    # the LSTM inputs: statics of CAMELS 01073000, precipitation converted mm/s -> mm/h
    prov = res.provider
    assert prov.x_stat[0].tolist() == pytest.approx([37.67, 4.75043])
    f = read_ngen_forcing(NGEN / "forcing", ["cat-11223"])["cat-11223"]
    np.testing.assert_allclose(prov.x_dyn[prov.catchment_ids.index("cat-11223"), :, 0].numpy(),
                               f["precip_rate"].to_numpy()[:96] * 3600.0, rtol=1e-6)
    # lateral inflow (m3/s) = runoff (mm/h) x area (km2) / 3.6, summed over the divides
    with torch.no_grad():
        r = prov.runoff(res.times).numpy()
    area = res.hydrofabric.catchment_area_km2.reindex(prov.catchment_ids).to_numpy()
    np.testing.assert_allclose(res.lateral_total.to_numpy(), (r * area / 3.6).sum(1), rtol=1e-5)
    assert (r >= 0).all() and np.isfinite(r).all()
    # water balance of the routed run (volumes from the written files)
    b = res.summary.balance
    assert b.inflow_m3 == pytest.approx(3600.0 * res.lateral_total.sum(), rel=1e-6)
    assert abs(b.relative_error) < 1e-9
    import xarray as xr

    with xr.open_dataset(res.summary.path) as ds:
        assert ds["feature_id"].values.astype(str).tolist() == FLOWPATHS
        q_nc = ds["streamflow"].values[:, FLOWPATHS.index("wb-11224")]
    np.testing.assert_allclose(res.gauge.to_numpy(), q_nc, rtol=1e-5)  # the CSV holds 6 digits
    assert (res.gauge > 0).all() and res.gauge.max() < 50  # m3/s on a 31.7 km2 basin
    # chunked LSTM + routing == one unchunked call
    from rivergraph.models.router import MuskingumCunge

    prov.reset()
    with torch.no_grad():
        lat = prov.lateral_inflow(res.times, FLOWPATHS).double()
        Q = MuskingumCunge(res.hydrofabric.network, dt=3600.0, mode="trapezoid")(lat)
    np.testing.assert_allclose(res.gauge.to_numpy(), Q[:, 4].numpy(), rtol=1e-5)
