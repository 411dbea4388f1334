"""The NextGen pipeline on real data (../shared/data/ngen_gauge_01073000): hydrofabric layers and id conventions,
ngen forcing readers, and the AORC -> LSTM -> lateral inflow -> Muskingum-Cunge example on a short window."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import runoff as R
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
RUN_DIR = SHARED_DATA / "pretrained_lstm_nwm_aorc_hourly"
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
    """``rivergraph route`` on the shipped config, 4 days (cold start, chunks of 30 h), through the example: files,
    units and the water balance. Lateral inflow = LSTM runoff (mm/h) x divide area / 3.6; the routed volume =
    lateral inflow volume minus the storage change; chunked LSTM + routing = one unchunked call."""
    from rivergraph.models.router import MuskingumCunge

    ex = _example()
    res = ex.run(CONFIG, tmp_path / "out", overrides={
        "runoff": {"spinup_cycles": 0}, "output": {"chunk_size": 30},
        "period": {"start": "2015-12-01T00:00", "end": "2015-12-04T23:00"}})
    s = res.summary
    assert len(res.times) == 96 and s["steps"] == 96 and s["chunks"] == 4 and s["reaches"] == 5
    assert [p.name for p in res.pngs] == ["hydrograph.png", "map.png"]
    assert all(p.stat().st_size > 20_000 for p in res.pngs)
    # the LSTM inputs: statics of CAMELS 01073000, precipitation converted mm/s -> mm/h, areas of the divides
    hf = res.hydrofabric
    cats = list(res.runoff_mm_h.columns)
    forcing = read_ngen_forcing(NGEN / "forcing", cats)
    attrs = pd.DataFrame({"elev_mean": 37.67, "slope_mean": 4.75043}, index=cats)
    frames = {c: f.assign(APCP_surface=f["precip_rate"] * 3600.0).iloc[:96] for c, f in forcing.items()}
    model = R.NeuralHydrologyLSTM.from_run_dir(RUN_DIR)
    prov = R.LSTMRunoff(model, frames, attrs, hf.catchment_area_km2, trainable="none",
                        mapping=R.CatchmentReachMap.from_table(hf.catchment_table(), cats, FLOWPATHS))
    with torch.no_grad():
        r = prov.runoff(prov.times).numpy()
        lat = prov.lateral_inflow(prov.times, FLOWPATHS).double()
    np.testing.assert_allclose(res.runoff_mm_h.to_numpy(), r, rtol=1e-5, atol=1e-7)  # the route run's LSTM
    assert (r >= 0).all() and np.isfinite(r).all()
    area = hf.catchment_area_km2.reindex(cats).to_numpy()
    np.testing.assert_allclose(res.lateral_total.to_numpy(), (r * area / 3.6).sum(1), rtol=1e-5)
    # water balance of the routed run (summary.json) against the lateral inflow volume
    b = s["mass_balance"]
    assert b["inflow_m3"] == pytest.approx(3600.0 * lat.sum().item(), rel=1e-5)
    assert abs(b["relative_error"]) < 1e-9
    import xarray as xr

    with xr.open_dataset(s["discharge"]) as ds:
        ids = ds["feature_id"].values.astype(str)
        assert ids.tolist() == FLOWPATHS
        q_nc = ds["streamflow"].values[:, FLOWPATHS.index("wb-11224")]
    np.testing.assert_allclose(res.gauge.to_numpy(), q_nc, rtol=1e-5)  # the CSV holds 6 digits
    assert (res.gauge > 0).all() and res.gauge.max() < 50  # m3/s on a 31.7 km2 basin
    # chunked (4 x 30 h, LSTM state and routing state carried) == one unchunked call
    with torch.no_grad():
        Q = MuskingumCunge(hf.network, dt=3600.0, mode="trapezoid")(lat)
    np.testing.assert_allclose(res.gauge.to_numpy(), Q[:, 4].numpy(), rtol=1e-5)


def test_lstm_runoff_section_validation():
    """The ``lstm`` provider of ``rivergraph route``: registered, strict, and its static attributes need one
    source."""
    from rivergraph.config.route import RouteConfig
    from rivergraph.config.runoff import RUNOFF_PROVIDERS, LSTMRunoffSection

    assert RUNOFF_PROVIDERS["lstm"] == (LSTMRunoffSection, "rivergraph.runs.route:lstm_runoff_source")
    base = {"network": {"source": str(GPKG)}, "runoff": {"kind": "lstm", "run_dir": "r", "forcing": "f"}}
    cfg = RouteConfig.model_validate(base)
    assert cfg.runoff.inputs == "aorc_ngen" and cfg.runoff.mode == "stateful" and cfg.runoff.spinup_cycles == 0
    with pytest.raises(ValueError, match="give table, or camels_dir and basin"):
        RouteConfig.model_validate({**base, "runoff": {**base["runoff"], "static_attributes": {"camels_dir": "x"}}})
    with pytest.raises(ValueError, match="spinup"):
        RouteConfig.model_validate({**base, "runoff": {**base["runoff"], "spinup": 2}})
    with pytest.raises(ValueError, match="spinup_cycles"):
        RouteConfig.model_validate({**base, "runoff": {**base["runoff"], "spinup_cycles": -1}})


def test_lstm_runoff_source_reads_chunks_with_a_static_table(tmp_path):
    """The route builder: static attributes from a per-catchment table; rows read chunk after chunk equal one
    read of the whole period (the LSTM state carries); depth rates in mm/h, no areas needed."""
    from rivergraph.config.runoff import LSTMRunoffSection
    from rivergraph.runs.route import lstm_runoff_source

    cats = ["cat-11223", "cat-11224", "cat-11371", "cat-11410", "cat-11509"]
    pd.DataFrame({"elev_mean": 37.67, "slope_mean": 4.75043}, index=pd.Index(cats, name="id")).to_csv(
        tmp_path / "statics.csv")
    sec = LSTMRunoffSection(run_dir=str(RUN_DIR), forcing=str(NGEN / "forcing.nc"),
                            static_attributes={"table": "statics.csv"})
    src = lstm_runoff_source(sec, None, tmp_path)
    assert sorted(src.catchment_ids) == cats and src.units == "mm/h" and len(src.times) == 720
    parts = np.concatenate([src.read(slice(a, a + 16)) for a in range(0, 48, 16)])
    whole = lstm_runoff_source(sec, None, tmp_path).read(slice(0, 48))
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-7)
    assert parts.shape == (48, 5) and (parts >= 0).all()
    pd.DataFrame({"elev_mean": [1.0], "slope_mean": [1.0]}, index=["cat-1"]).to_csv(tmp_path / "statics.csv")
    with pytest.raises(ValueError, match="no row for catchment"):
        lstm_runoff_source(sec, None, tmp_path)
