"""Readers: format detection, schema mapping, units and geometry on small schema-faithful vector files
written during the test (NHDPlusV2, NextGen hydrofabric, MERIT-Basins, plain CSV), the compact npz, and the
shipped offline datasets (network_data/)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rivergraph.io.readers import (SCHEMAS, detect_format, load_network_npz, read_network, read_table_network, save_network_npz)
from rivergraph.graph.network import NetworkError

import geopandas as gpd  # noqa: E402  (a dependency: missing fails)
from shapely.geometry import LineString  # noqa: E402

# The same 6-reach tree in every schema: 1 -> 3, 2 -> 3, 3 -> 5, 4 -> 5, 5 -> 6, 6 = outlet
IDS = [1, 2, 3, 4, 5, 6]
TO = [3, 3, 5, 5, 6, 0]
LENGTH_KM = [1.2, 0.8, 2.5, 3.1, 1.7, 4.0]
SLOPE = [0.01, 0.02, 0.004, 0.008, 0.002, 0.001]
AREA = [3.0, 2.0, 7.0, 4.0, 13.0, 20.0]          # total drainage area km2 (accumulates downstream)
LOCAL = [3.0, 2.0, 2.0, 4.0, 2.0, 7.0]
XY = {1: (0, 4), 2: (2, 4), 3: (1, 3), 4: (3, 3), 5: (2, 2), 6: (2, 1), 0: (2, 0)}


def lines(ids, to):
    """Each reach a line from its own node to its downstream reach's node (x, y in km)."""
    return [LineString([XY[i], XY[t]]) for i, t in zip(ids, to)]


def expected_links(net):
    return {str(i): (str(net.ids[d]) if d >= 0 else None) for i, d in zip(net.ids, net.downstream)}


def assert_tree(net, name=lambda i: i):
    """The network is the 6-reach tree, in metres, with geometry aligned to the reaches."""
    assert len(net) == 6 and net.n_outlets == 1 and net.depth == 4
    assert expected_links(net) == {str(name(i)): (str(name(t)) if t else None) for i, t in zip(IDS, TO)}
    order = [net.index_of[name(i)] for i in IDS]
    np.testing.assert_allclose(net.attr("length_m")[order], np.array(LENGTH_KM) * 1000.0)
    np.testing.assert_allclose(net.attr("slope")[order], SLOPE)
    np.testing.assert_allclose(net.attr("drainage_area_km2")[order], AREA)
    np.testing.assert_allclose(net.accumulate(net.attr("catchment_area_km2")), net.attr("drainage_area_km2"))


def assert_geometry(net, name=lambda i: i):
    assert net.geometry is not None and len(net.geometry) == len(net)
    assert (net.geometry.geom_type == "LineString").all()
    for i, t in zip(IDS, TO):
        assert net.geometry.iloc[net.index_of[name(i)]].coords[0] == XY[i]
        assert net.geometry.iloc[net.index_of[name(i)]].coords[-1] == XY[t]


# ------------------------------------------------------------------------------------- NHDPlusV2
def nhdplus_frame(hydroseq_only=False, shuffle=True):
    hydroseq = {i: 100 + 10 * i for i in IDS}   # NHDPlus Hydroseq: larger upstream, here arbitrary but unique
    df = pd.DataFrame({"COMID": [5_000_000 + i for i in IDS], "LENGTHKM": LENGTH_KM, "SLOPE": SLOPE,
                       "TotDASqKM": AREA, "AreaSqKM": LOCAL, "StreamOrde": [1, 1, 2, 1, 2, 2],
                       "MINELEVSMO": [12000, 11800, 11000, 10900, 10000, 9000]})   # cm
    if hydroseq_only:
        df["Hydroseq"] = [hydroseq[i] for i in IDS]
        df["DnHydroseq"] = [hydroseq[t] if t else 0 for t in TO]
    else:
        df["toCOMID"] = [5_000_000 + t if t else 0 for t in TO]
    g = gpd.GeoDataFrame(df, geometry=lines(IDS, TO), crs="EPSG:4269")
    return g.sample(frac=1.0, random_state=1) if shuffle else g


@pytest.mark.parametrize("hydroseq_only", [False, True])
def test_nhdplus_gpkg(tmp_path, hydroseq_only):
    path = tmp_path / "nhdplus.gpkg"
    nhdplus_frame(hydroseq_only).to_file(path, layer="NHDFlowline_Network", driver="GPKG")
    assert detect_format(path) == "nhdplus"
    net = read_network(path)
    comid = lambda i: 5_000_000 + i  # noqa: E731
    assert_tree(net, comid)
    assert_geometry(net, comid)
    assert net.ids.dtype == np.int64
    np.testing.assert_allclose(net.attr("elevation_m")[net.index_of[comid(6)]], 90.0)   # cm -> m
    assert net.report["source"] == "nhdplus:nhdplus.gpkg"


def test_nhdplus_lowercase_columns_as_written_by_nhdplustools(tmp_path):
    path = tmp_path / "flowlines.gpkg"
    g = nhdplus_frame()
    g.columns = [c.lower() if c != "geometry" else c for c in g.columns]
    g.to_file(path, layer="flowlines", driver="GPKG")
    assert detect_format(path) == "nhdplus"
    assert_tree(read_network(path), lambda i: 5_000_000 + i)


def test_nhdplus_missing_columns(tmp_path):
    g = nhdplus_frame()
    with pytest.raises(NetworkError, match=r"missing column\(s\) \['COMID'\]"):
        read_table_network(g.drop(columns="COMID"), schema="nhdplus")
    with pytest.raises(NetworkError, match=r"^table: missing column\(s\) \['Hydroseq', 'DnHydroseq'\] for NHDPlus \(toCOMID or"):
        read_table_network(g.drop(columns="toCOMID"), schema="nhdplus")
    path = tmp_path / "no_links.gpkg"
    g.drop(columns="toCOMID").to_file(path, layer="NHDFlowline_Network", driver="GPKG")
    with pytest.raises(NetworkError, match="cannot tell the network format"):
        read_network(path)
    with pytest.raises(NetworkError, match="DnHydroseq"):
        read_network(path, format="nhdplus")


# ------------------------------------------------------------------------ NextGen hydrofabric
def hydrofabric_layers(with_terminal=True):
    wb = lambda i: f"wb-{i}"  # noqa: E731
    # each flowpath drains to the nexus at its outlet; the nexus drains to the next flowpath
    nex = {i: f"nex-{100 + i}" for i in IDS}
    if with_terminal:
        nex[6] = "tnx-1000000001"
    fp = gpd.GeoDataFrame({"id": [wb(i) for i in IDS], "toid": [nex[i] for i in IDS],
                           "lengthkm": LENGTH_KM, "slope": SLOPE, "tot_drainage_areasqkm": AREA,
                           "areasqkm": LOCAL, "order": [1, 1, 2, 1, 2, 2]},
                          geometry=lines(IDS, TO), crs="EPSG:5070")
    nexus = gpd.GeoDataFrame({"id": [nex[i] for i in IDS], "toid": [wb(t) if t else "wb-0" for t in TO]},
                             geometry=gpd.points_from_xy([XY[t][0] for t in TO], [XY[t][1] for t in TO]),
                             crs="EPSG:5070")
    return fp, nexus


@pytest.mark.parametrize("with_terminal", [True, False])
def test_hydrofabric_gpkg_resolves_nexus(tmp_path, with_terminal):
    path = tmp_path / "hydrofabric.gpkg"
    fp, nexus = hydrofabric_layers(with_terminal)
    fp.to_file(path, layer="flowpaths", driver="GPKG")
    nexus.to_file(path, layer="nexus", driver="GPKG")
    assert detect_format(path) == "hydrofabric"
    net = read_network(path)
    wb = lambda i: f"wb-{i}"  # noqa: E731
    assert_tree(net, wb)
    assert_geometry(net, wb)
    np.testing.assert_allclose(net.attr("order"), [1, 1, 2, 1, 2, 2])
    # string ids survive the compact npz
    save_network_npz(net, tmp_path / "hf.npz")
    back = load_network_npz(tmp_path / "hf.npz")
    assert back.ids.tolist() == net.ids.tolist() and back.downstream.tolist() == net.downstream.tolist()


def test_hydrofabric_without_nexus_layer_names_the_nexus(tmp_path):
    path = tmp_path / "fp_only.gpkg"
    fp, _ = hydrofabric_layers()
    fp.to_file(path, layer="flowpaths", driver="GPKG")
    with pytest.raises(NetworkError, match="nex-101.*no 'nexus' layer"):
        read_network(path)


def test_hydrofabric_direct_flowpath_links_and_missing_columns():
    fp, _ = hydrofabric_layers()
    fp["toid"] = [f"wb-{t}" for t in TO]               # flowpath -> flowpath, 'wb-0' = outlet
    assert_tree(read_table_network(fp, schema="hydrofabric"), lambda i: f"wb-{i}")
    with pytest.raises(NetworkError, match=r"missing column\(s\) \['toid'\]"):
        read_table_network(fp.drop(columns="toid"), schema="hydrofabric")


# ---------------------------------------------------------------------------------- MERIT-Basins
def merit_frame():
    ids = [71_000_000 + i for i in IDS]
    return gpd.GeoDataFrame({"COMID": ids, "NextDownID": [71_000_000 + t if t else 0 for t in TO],
                             "lengthkm": LENGTH_KM, "slope": SLOPE, "uparea": AREA, "unitarea": LOCAL,
                             "order": [1, 1, 2, 1, 2, 2]}, geometry=lines(IDS, TO), crs="EPSG:4326")


@pytest.mark.parametrize("suffix", [".shp", ".gpkg"])
def test_merit(tmp_path, suffix):
    path = tmp_path / f"riv_pfaf_7_MERIT_Hydro_v07_Basins_v01{suffix}"
    merit_frame().to_file(path)
    assert detect_format(path) == "merit"
    net = read_network(path)
    assert_tree(net, lambda i: 71_000_000 + i)
    assert_geometry(net, lambda i: 71_000_000 + i)


def test_merit_missing_columns():
    with pytest.raises(NetworkError, match=r"missing column\(s\) \['NextDownID'\]"):
        read_table_network(merit_frame().drop(columns="NextDownID"), schema="merit")
    with pytest.raises(NetworkError, match=r"missing column\(s\) \['COMID'\]"):
        read_table_network(merit_frame().drop(columns="COMID"), schema="merit")


def test_schema_tables_as_csv(tmp_path):
    path = tmp_path / "merit.csv"
    pd.DataFrame(merit_frame().drop(columns="geometry")).to_csv(path, index=False)
    assert detect_format(path) == "merit"
    net = read_network(path)
    assert_tree(net, lambda i: 71_000_000 + i)
    assert net.geometry is None


# ------------------------------------------------------------------------- plain CSV with mapping
def test_plain_csv_with_column_mapping(tmp_path):
    path = tmp_path / "reaches.csv"
    pd.DataFrame({"reach": IDS, "next": TO, "len_km": LENGTH_KM, "s": SLOPE, "da": AREA, "local": LOCAL,
                  "station": ["", "", "08158000", "", "", "08159000"]}).to_csv(path, index=False)
    with pytest.raises(NetworkError, match="cannot tell the network format"):
        read_network(path)
    cols = {"id": "reach", "to": "next", "length_km": "len_km", "slope": "s", "drainage_area_km2": "da",
            "catchment_area_km2": "local", "gage": "station"}
    net = read_network(path, columns=cols)                    # a mapping implies format="table"
    assert_tree(net)
    assert "length_km" not in net.attrs                       # stored in metres as length_m
    assert net.report["source"] == "table:reaches.csv"
    assert net.gauges().tolist() == ["08158000", "08159000"]              # leading zeros kept
    with pytest.raises(NetworkError, match=r"missing column\(s\) \['slope_mm'\]"):
        read_network(path, columns={**cols, "slope": "slope_mm"})
    with pytest.raises(NetworkError, match="needs columns="):
        read_table_network(path, columns={"id": "reach"})


def test_rapid_csv_detected(tmp_path):
    path = tmp_path / "connect.csv"
    path.write_text("".join(f"{i},{t}\n" for i, t in zip(IDS, TO)))
    assert detect_format(path) == "rapid"
    assert read_network(path).depth == 4


# ------------------------------------------------------------------------------ format errors
def test_unknown_format_and_schema(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"a": [1], "b": [0]}).to_csv(path, index=False)
    with pytest.raises(NetworkError, match="unknown network format 'swat'"):
        read_network(path, format="swat")
    with pytest.raises(NetworkError, match=r"cannot tell the network format from columns \['a', 'b'\]"):
        read_network(path)
    with pytest.raises(NetworkError, match="unknown schema 'hydrosheds'"):
        read_table_network(path, schema="hydrosheds")
    with pytest.raises(FileNotFoundError, match="nope.gpkg"):
        read_network(tmp_path / "nope.gpkg")
    assert set(SCHEMAS) == {"route_link", "nhdplus", "hydrofabric", "merit"}


def test_route_link_missing_variables(tmp_path):
    import xarray as xr

    path = tmp_path / "rl.nc"
    xr.Dataset({"link": ("feature_id", np.array([1, 2])), "Length": ("feature_id", np.array([1.0, 2.0]))}).to_netcdf(path)
    assert detect_format(path) == "route_link"
    with pytest.raises(NetworkError, match="needs variables 'link' and 'to'"):
        read_network(path)


# ------------------------------------------------------------------------------------ npz
def test_npz_roundtrip_real_route_link(shared_data, tmp_path):
    net = read_network(shared_data / "lower_colorado_tx" / "domain" / "RouteLink.nc")
    save_network_npz(net, tmp_path / "net.npz")
    back = read_network(tmp_path / "net.npz")
    assert back.ids.tolist() == net.ids.tolist() and back.downstream.tolist() == net.downstream.tolist()
    pd.testing.assert_frame_equal(back.attrs.astype({"gage": object}), net.attrs.astype({"gage": object}),
                                  check_dtype=False)
    assert back.report["drainage_area"] == net.report["drainage_area"]
    assert back.report["saved_from"] == "route_link:RouteLink.nc"


# ------------------------------------------------------------------- shipped offline datasets
def test_network_data_is_found_and_small():
    from rivergraph.datasets import data_dir

    root = data_dir()
    assert (root / "README.md").is_file() and (root / "build.py").is_file()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 5 * 1024 * 1024, total


def test_load_lower_colorado():
    import torch

    from rivergraph.datasets import load_lower_colorado

    net, data = load_lower_colorado()
    assert len(net) == 11_248 and net.n_outlets == 1 and net.depth == 649
    assert net.report["drainage_area"].startswith("inverted from NWM TopWdth")
    assert list(net.attrs.columns) == ["length_m", "slope", "n", "n_floodplain", "bottom_width_m", "top_width_m",
                                       "top_width_floodplain_m", "side_slope", "musk_s", "musx", "order",
                                       "elevation_m", "lat", "lon", "gage", "waterbody", "drainage_area_km2"]
    assert len(data["time"]) == 28 and str(data["time"][0]) == "2021-08-23 13:00:00+00:00" and data["dt_s"] == 3600
    assert (data["time"][1:] - data["time"][:-1] == pd.Timedelta("1h")).all()
    for k in ("q_lateral", "q_lateral_packed", "streamflow"):
        assert data[k].dtype == torch.float32 and data[k].shape == (28, 11_248)
    assert torch.isfinite(data["q_lateral"]).all() and (data["q_lateral"] >= 0).all()
    # the packed CHRTOUT q_lateral is the exact inflow rounded to 0.1 m3/s; it loses half the network's inflow
    assert float((data["q_lateral_packed"] - data["q_lateral"]).abs().max()) <= 0.05 + 1e-5
    assert 38.0 < float(data["q_lateral"][0].sum()) < 39.0 and float(data["q_lateral_packed"][0].sum()) < 20.0
    lakes = data["lakeparm"]
    wb = net.attrs["waterbody"].to_numpy()
    assert sorted(lakes.index) == sorted(np.unique(wb[wb > 0])) and len(lakes) == 30 and (lakes["LkArea"] > 0).all()
    # ChSlp is read as the NWM reads it: z = 1 / ChSlp (horizontal per vertical)
    assert 0.5 < net.attr("side_slope").min() and net.attr("side_slope").max() < 7.2
    missing = torch.isnan(data["streamflow"]).any(0).numpy()
    assert missing.sum() == 341 and (net.attrs["waterbody"].to_numpy()[missing] > 0).all()
    obs = data["usgs_obs"]
    assert obs.shape == (6240, 4) and obs["gage"].nunique() == 65 and obs["gage"].str.len().eq(8).all()
    assert set(obs["gage"]) <= set(data["gauge_reach"].index)        # every observed gauge is on a reach
    assert (obs.loc[obs["quality"] == 0, "discharge_m3s"] == 0).all()
    # the NWM routed flow at the outlet exceeds the lateral inflow it receives locally (it routes the basin)
    out = int(net.outlets[0])
    assert (data["streamflow"][:, out] > data["q_lateral"][:, out]).all()


def test_shipped_lower_colorado_matches_the_source(shared_data):
    import xarray as xr

    from rivergraph.datasets import load_lower_colorado

    net, data = load_lower_colorado()
    src = shared_data / "lower_colorado_tx"
    rl = read_network(src / "domain" / "RouteLink.nc")
    assert net.ids.tolist() == rl.ids.tolist() and net.downstream.tolist() == rl.downstream.tolist()
    for c in net.attrs.columns:
        if c == "gage":
            assert net.attrs[c].tolist() == rl.attrs[c].tolist()
        else:
            np.testing.assert_allclose(net.attr(c), rl.attr(c).astype(np.float32), rtol=1e-6, err_msg=c)
    for t in (0, 27):
        stamp = data["time"][t].strftime("%Y%m%d%H%M")
        with xr.open_dataset(src / "channel_forcing" / f"{stamp}.CHRTOUT_DOMAIN1") as ds:
            sel = ds.sel(feature_id=net.ids)
            np.testing.assert_array_equal(data["q_lateral_packed"][t].numpy(),
                                          sel["q_lateral"].values.astype(np.float32))
            exact = (sel["qSfcLatRunoff"].values + sel["qBucket"].values).astype(np.float32)
            np.testing.assert_array_equal(data["q_lateral"][t].numpy(), exact)
            np.testing.assert_allclose(np.round(sel["qSfcLatRunoff"].values + sel["qBucket"].values, 1),
                                       sel["q_lateral"].values, atol=1e-6)
            np.testing.assert_array_equal(data["streamflow"][t].numpy(), sel["streamflow"].values.astype(np.float32))
    with xr.open_dataset(src / "usgs_TimeSlice" / "2021-08-23_12-00-00.15min.usgsTimeSlice.ncdf") as ds:
        ref = pd.DataFrame({"gage": [s.decode().strip() for s in ds["stationId"].values],
                            "q": ds["discharge"].values, "quality": ds["discharge_quality"].values})
    obs = data["usgs_obs"]
    got = obs[obs["time"] == pd.Timestamp("2021-08-23 12:00", tz="UTC")].set_index("gage")
    ref = ref.set_index("gage").loc[got.index]
    np.testing.assert_array_equal(got["discharge_m3s"].to_numpy(np.float32), ref["q"].to_numpy())
    np.testing.assert_array_equal(got["quality"].to_numpy(), ref["quality"].to_numpy())


def test_load_rapid_sandbox():
    import torch

    from rivergraph.datasets import load_rapid_sandbox

    net, data = load_rapid_sandbox()
    assert net.ids.tolist() == [10, 20, 30, 40, 50]
    assert net.attr("musk_s").tolist() == [9000.0] * 5 and net.attr("musx").tolist() == [0.25] * 5
    assert data["dt_s"] == 10_800 and data["dt_routing_s"] == 900 and len(data["time"]) == 80
    assert str(data["time"][0]) == "1970-01-01 00:00:00+00:00"
    assert data["qext"].shape == data["qout_ref"].shape == (80, 5)
    assert data["qext"][0].tolist() == [11.0, 11.0, 11.0, 22.0, 22.0]
    assert data["qinit"].tolist() == [9.0, 9.0, 27.0, 18.0, 63.0]
    assert torch.isfinite(data["qout_ref"]).all() and data["qfinal_ref"].shape == (5,)
    # identical headwaters 10 and 20 get identical routed flow
    assert torch.equal(data["qout_ref"][:, 0], data["qout_ref"][:, 1])
