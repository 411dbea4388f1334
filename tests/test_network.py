"""RiverNetwork: real networks in, validated graph out (issue #2).

Real data: the NWM v2.1 Lower Colorado (TX) Route_Link and the RAPID Sandbox (see ../shared/data/README.md).
Bad input: small hand-made tables; every error must name the offending reach (or column).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph.graph.pyg import to_pyg
from rivergraph.io.readers import drainage_area_from_nwm_top_width, read_network, read_rapid, read_table_network
from rivergraph.graph.network import DEFAULT_MIN_SLOPE, NetworkError, RiverNetwork, build_network

# ------------------------------------------------------------------------------------------ fixtures
# A 7-reach hand-checked tree (ids chosen so no id is a substring of another):
#   101 -> 303, 202 -> 303, 303 -> 505, 404 -> 505, 505 -> 707, 606 -> 707, 707 = outlet
TREE_IDS = [101, 202, 303, 404, 505, 606, 707]
TREE_TO = [303, 303, 505, 505, 707, 707, 0]


@pytest.fixture(scope="module")
def tree() -> RiverNetwork:
    attrs = pd.DataFrame({"length_m": [1000.0, 2000, 1500, 800, 3000, 500, 2500],
                          "slope": [0.01, 0.02, 0.005, 0.03, 0.002, 0.04, 0.001]})
    return build_network(TREE_IDS, TREE_TO, attrs)


@pytest.fixture(scope="module")
def colorado(shared_data) -> RiverNetwork:
    return read_network(shared_data / "lower_colorado_tx" / "domain" / "RouteLink.nc")


def table(ids, to, **cols) -> pd.DataFrame:
    return pd.DataFrame({"reach": ids, "next": to, **cols})


def read_table(df, **kw) -> RiverNetwork:
    cols = {"id": "reach", "to": "next", **{c: c for c in df.columns if c not in ("reach", "next")}}
    return read_table_network(df, columns=cols, **kw)


def assert_topological(net: RiverNetwork) -> None:
    rank = np.empty(len(net), dtype=np.int64)
    rank[net.topological_order] = np.arange(len(net))
    assert sorted(net.topological_order.tolist()) == list(range(len(net)))
    src = np.flatnonzero(net.downstream >= 0)
    assert (rank[src] < rank[net.downstream[src]]).all(), "a reach comes before one of its upstream reaches"


# ------------------------------------------------------------------------------- hand-checked tree
def test_tree_structure(tree):
    assert len(tree) == 7 and tree.n_outlets == 1 and tree.depth == 4
    pos = tree.index_of
    assert tree.downstream[pos[101]] == pos[303] and tree.downstream[pos[707]] == -1
    # distance to outlet: hops downstream; level from headwaters: longest path from a headwater
    assert dict(zip(TREE_IDS, tree.distance_to_outlet.tolist())) == {101: 3, 202: 3, 303: 2, 404: 2, 505: 1,
                                                                      606: 1, 707: 0}
    assert dict(zip(TREE_IDS, tree.level_from_headwaters.tolist())) == {101: 0, 202: 0, 303: 1, 404: 0, 505: 2,
                                                                        606: 0, 707: 3}
    assert dict(zip(TREE_IDS, tree.strahler_order.tolist())) == {101: 1, 202: 1, 303: 2, 404: 1, 505: 2,
                                                                  606: 1, 707: 2}
    assert_topological(tree)
    assert tree.edge_index.shape == (2, 6) and tree.edge_index.dtype == torch.long
    g = to_pyg(tree)
    assert g.num_nodes == 7 and torch.equal(g.edge_index, tree.edge_index)
    assert tree.to_networkx().number_of_edges() == 6


def test_tree_accumulate_and_upstream(tree):
    acc = tree.accumulate(np.ones(7))
    assert dict(zip(TREE_IDS, acc.tolist())) == {101: 1, 202: 1, 303: 3, 404: 1, 505: 5, 606: 1, 707: 7}
    length = tree.accumulate(tree.attr("length_m"))
    assert length[tree.index_of[505]] == 1000 + 2000 + 1500 + 800 + 3000
    with pytest.raises(NetworkError, match="expects 7 values"):
        tree.accumulate(np.ones(3))
    sub = tree.upstream_subnetwork([303])
    assert sorted(sub.ids.tolist()) == [101, 202, 303] and sub.n_outlets == 1
    assert sub.ids[sub.outlets[0]] == 303
    with pytest.raises(NetworkError, match="999"):
        tree.upstream_subnetwork([999])


def test_tree_subset(tree):
    mask = np.isin(tree.ids, [101, 303, 404, 606])
    sub = tree.subset(mask)
    assert sub.ids.tolist() == [101, 303, 404, 606]
    # 101 -> 303 is kept; 303, 404, 606 lost their downstream reach and become outlets
    assert sub.downstream.tolist() == [1, -1, -1, -1]
    assert sub.attrs["length_m"].tolist() == [1000.0, 1500.0, 800.0, 500.0]
    assert sub.report["subset_of"] == 7
    assert_topological(sub)


# -------------------------------------------------------------------------------- Lower Colorado
def test_colorado_is_valid_forest(colorado):
    net = colorado
    assert len(net) == 11_248
    assert len(np.unique(net.ids)) == len(net)
    assert net.n_outlets == 1                      # measured: the Colorado at its Route_Link outlet
    assert net.depth == 649                        # measured: longest headwater-to-outlet path (reaches)
    # every reach reaches an outlet: walk downstream from everywhere
    node = np.arange(len(net))
    for _ in range(net.depth):
        node = np.where(net.downstream[node] >= 0, net.downstream[node], node)
    assert (net.downstream[node] == -1).all()
    assert net.upstream_mask(net.outlets).all()
    assert net.report["slopes_floored"] == 0       # NWM slopes are already floored at 1e-5
    assert net.attr("slope").min() >= DEFAULT_MIN_SLOPE * (1 - 1e-6)
    assert {"length_m", "slope", "n", "bottom_width_m", "top_width_m", "side_slope", "musk_s", "musx", "order",
            "gage", "lat", "lon", "drainage_area_km2"} <= set(net.attrs.columns)
    assert net.edge_index.shape == (2, len(net) - 1)


def test_colorado_levels_and_topological_order(colorado):
    net = colorado
    d, lev = net.distance_to_outlet, net.level_from_headwaters
    src = np.flatnonzero(net.downstream >= 0)
    dst = net.downstream[src]
    # distance to outlet: exactly one more than the downstream reach's
    assert (d[net.outlets] == 0).all() and (d[src] == d[dst] + 1).all()
    # level from headwaters: 0 at headwaters, 1 + max over upstream reaches elsewhere
    up_max = np.full(len(net), -1)
    np.maximum.at(up_max, dst, lev[src])
    assert (lev == up_max + 1).all()
    assert d.max() == lev.max() == net.depth - 1 == 648
    assert_topological(net)


def test_colorado_strahler_vs_route_link_order(colorado):
    ours = colorado.strahler_order
    theirs = colorado.attr("order").astype(int)
    agree = (ours == theirs).mean()
    # measured: 11,204 of 11,248 agree (99.61 %); the 44 others are one (43) or two (1) orders HIGHER in the
    # topology-only computation -- NHDPlus StreamOrde also weighs minor divergent paths (not in the Route_Link)
    assert agree > 0.995, agree
    assert (ours >= theirs).all() and (ours - theirs).max() <= 2
    assert ours.max() == theirs.max() == 6


def test_colorado_accumulate_and_gauges(colorado):
    net = colorado
    n_up = net.accumulate(np.ones(len(net)))
    assert n_up[net.outlets[0]] == len(net)
    gauges = net.gauges()
    assert len(gauges) == 76                                    # NHD gage events on the Route_Link
    for pos in gauges.index[:5]:
        sub = net.upstream_subnetwork([net.ids[pos]])
        assert len(sub) == n_up[pos]
        assert sub.n_outlets == 1 and sub.ids[sub.outlets[0]] == net.ids[pos]
        assert_topological(sub)
        assert sub.report["subset_of"] == len(net)
    # all gauges at once: the union of their upstream areas, outlets = gauges with no gauge downstream
    sub = net.upstream_subnetwork(net.ids[gauges.index])
    assert set(net.ids[gauges.index]) >= set(sub.ids[sub.outlets])
    assert len(sub) == int(net.upstream_mask(gauges.index.to_numpy()).sum())


def test_colorado_drainage_area_inverted_from_top_width(colorado):
    net = colorado
    assert net.report["drainage_area"] == "inverted from NWM TopWdth = 2.44 DA^0.34"
    tw, bw = net.attr("top_width_m"), net.attr("bottom_width_m")
    np.testing.assert_allclose(tw / bw, 5 / 3, rtol=1e-6)      # channel geometry is one function of DA
    da = net.attr("drainage_area_km2")
    np.testing.assert_allclose(2.44 * da ** 0.34, tw, rtol=1e-6)
    outlet_da = da[net.outlets[0]]
    assert 95_000 < outlet_da < 110_000                        # measured 98,747 km2 (USGS Wharton ~108,000)
    src = np.flatnonzero(net.downstream >= 0)
    dst = net.downstream[src]
    decreasing = da[dst] < da[src]
    # measured: 21 of 11,247 links (0.19 %) decrease downstream
    assert decreasing.mean() < 0.005, decreasing.mean()
    # ... every one of them leaves a reach with TopWdth exactly 2.44 m, i.e. DA = 1.000 km2 (52 reaches; this
    # looks like a default for flowlines without an NHDPlus drainage area), into a smaller reach
    default_da = np.isclose(da, 1.0, rtol=1e-6)
    assert default_da[src[decreasing]].all() and 40 < default_da.sum() < 60
    local = da - np.bincount(dst, weights=da[src], minlength=len(net))
    assert (local > 0).mean() > 0.98                           # measured 98.7 % (11,103 of 11,248)
    negative = local < -1e-5 * da                              # beyond float rounding: 22 reaches (0.20 %)
    assert negative.mean() < 0.005
    fed_by_default = np.zeros(len(net), dtype=bool)
    np.logical_or.at(fed_by_default, dst, default_da[src])
    assert fed_by_default[negative].all()                      # ... all of them fed by a DA = 1 km2 reach


def test_drainage_area_function():
    np.testing.assert_allclose(drainage_area_from_nwm_top_width(2.44), 1.0)
    np.testing.assert_allclose(drainage_area_from_nwm_top_width(2.44 * 100 ** 0.34), 100.0)
    out = drainage_area_from_nwm_top_width([121.8, 0.0, -1.0, np.nan])
    assert 98_000 < out[0] < 100_000 and np.isnan(out[1:]).all()


def test_colorado_largest_area_divergence_uses_inverted_area(shared_data):
    # add a second downstream link from a main-stem reach to a small headwater: the table now diverges
    import xarray as xr

    with xr.open_dataset(shared_data / "lower_colorado_tx" / "domain" / "RouteLink.nc") as ds:
        df = pd.DataFrame({"reach": ds["link"].values.astype(np.int64), "next": ds["to"].values.astype(np.int64),
                           "drainage_area_km2": drainage_area_from_nwm_top_width(ds["TopWdth"].values)})
    area = df.set_index("reach")["drainage_area_km2"]
    row = df[df["next"] > 0].sort_values("drainage_area_km2").iloc[-1]     # largest reach with a downstream
    reach, main_to = int(row["reach"]), int(row["next"])
    headwater = int(df.loc[~df["reach"].isin(df["next"]), "reach"].iloc[0])
    assert area[headwater] < area[main_to]
    extra = pd.DataFrame({"reach": [reach], "next": [headwater], "drainage_area_km2": [row["drainage_area_km2"]]})
    for bad in (pd.concat([df, extra], ignore_index=True), pd.concat([extra, df], ignore_index=True)):
        with pytest.raises(NetworkError, match=rf"divergences\): {reach}\b"):
            read_table(bad)
        with pytest.warns(UserWarning, match="largest_area"):
            net = read_table(bad, divergence="largest_area")
        assert net.ids[net.downstream[net.index_of[reach]]] == main_to
        assert net.report["divergences_resolved"] == 1 and len(net) == len(df) and net.n_outlets == 1


# ---------------------------------------------------------------------------------- RAPID sandbox
def test_rapid_sandbox(shared_data, tmp_path):
    net = read_network(shared_data / "rapid_sandbox" / "input" / "rapid_connect_Sandbox.csv")
    assert net.ids.tolist() == [10, 20, 30, 40, 50]
    to = {int(i): (int(net.ids[d]) if d >= 0 else 0) for i, d in zip(net.ids, net.downstream)}
    assert to == {10: 30, 20: 30, 30: 50, 40: 50, 50: 0}
    assert net.attr("musk_s").tolist() == [9000.0] * 5 and net.attr("musx").tolist() == [0.25] * 5
    assert net.depth == 3 and net.n_outlets == 1
    assert net.strahler_order.tolist() == [1, 1, 2, 1, 2]
    assert_topological(net)
    # explicit k/x of the wrong length are rejected
    k3 = tmp_path / "k.csv"
    k3.write_text("9000\n9000\n9000\n")
    with pytest.raises(NetworkError, match="3 rows but rapid_connect has 5"):
        read_rapid(shared_data / "rapid_sandbox" / "input" / "rapid_connect_Sandbox.csv", k_csv=k3)


# -------------------------------------------------------------------------------------- bad input
def test_cycle_is_rejected_naming_reaches():
    df = table([11, 22, 33, 44], [22, 33, 22, 0])          # 22 -> 33 -> 22
    with pytest.raises(NetworkError, match="cycle") as e:
        read_table(df)
    assert "22" in str(e.value) and "33" in str(e.value)


def test_long_cycle_beside_valid_tree_is_rejected():
    ids = list(range(1000, 1010)) + [5001, 5002, 5003]
    to = list(range(1001, 1010)) + [0] + [5002, 5003, 5001]  # a valid chain plus a 3-cycle
    with pytest.raises(NetworkError, match="cycle") as e:
        build_network(ids, to)
    assert all(str(i) in str(e.value) for i in (5001, 5002, 5003))


def test_self_loop_is_rejected():
    with pytest.raises(NetworkError, match=r"drain into themselves: 77\b"):
        read_table(table([11, 77], [0, 77]))


def test_divergence_rejected_and_both_resolutions():
    # 11 drains to both 22 (small) and 33 (large); 22, 33 -> 44
    df = table([11, 11, 22, 33, 44], [22, 33, 44, 44, 0], drainage_area_km2=[5.0, 5.0, 6.0, 50.0, 60.0])
    with pytest.raises(NetworkError, match=r"divergences\): 11\b"):
        read_table(df)
    with pytest.warns(UserWarning, match=r"resolved by 'first' \(reaches 11\)"):
        first = read_table(df, divergence="first")
    assert first.ids[first.downstream[first.index_of[11]]] == 22
    assert first.report["divergences_resolved"] == 1 and len(first) == 4
    with pytest.warns(UserWarning, match="largest_area"):
        largest = read_table(df, divergence="largest_area")
    assert largest.ids[largest.downstream[largest.index_of[11]]] == 33
    # listed the other way round, largest_area still picks the larger downstream reach
    with pytest.warns(UserWarning):
        swapped = read_table(df.iloc[[1, 0, 2, 3, 4]], divergence="largest_area")
    assert swapped.ids[swapped.downstream[swapped.index_of[11]]] == 33
    with pytest.raises(NetworkError, match="needs a 'drainage_area_km2'"):
        read_table(df.drop(columns="drainage_area_km2"), divergence="largest_area")
    with pytest.raises(NetworkError, match="unknown divergence resolution 'biggest'"):
        read_table(df, divergence="biggest")


def test_dangling_downstream_id():
    df = table([11, 22, 33], [22, 0, 99])                   # 33 drains to 99, which is not in the table
    with pytest.raises(NetworkError, match=r"33 \(to 99\)"):
        read_table(df)
    with pytest.warns(UserWarning, match=r"33 \(to 99\)"):
        net = read_table(df, dangling="outlet")
    assert net.report["dangling_as_outlets"] == 1
    assert net.n_outlets == 2 and net.downstream[net.index_of[33]] == -1
    with pytest.raises(NetworkError, match="unknown dangling resolution 'drop'"):
        read_table(df, dangling="drop")


def test_duplicate_ids():
    with pytest.raises(NetworkError, match=r"duplicate reach ids: 22\b"):
        read_table(table([11, 22, 22, 33], [22, 33, 33, 0]))


def test_missing_reach_id():
    with pytest.raises(NetworkError, match="missing"):
        build_network(np.array([1.0, np.nan]), np.array([0, 0]))


@pytest.mark.parametrize("bad_length", [0.0, -5.0, np.nan])
def test_bad_lengths(bad_length):
    df = table([11, 22, 33], [22, 33, 0], length_m=[100.0, bad_length, 300.0])
    with pytest.raises(NetworkError, match="length") as e:
        read_table(df)
    assert re.search(rf"\b22 \({bad_length}\)", str(e.value)), str(e.value)
    assert "11 (" not in str(e.value)


def test_nan_slope():
    df = table([11, 22, 33], [22, 33, 0], slope=[0.01, 0.02, np.nan])
    with pytest.raises(NetworkError, match=r"NaN slope .* 33\b"):
        read_table(df)


def test_slopes_floored_with_warning_and_report():
    df = table([11, 22, 33, 44], [22, 33, 44, 0], slope=[0.01, 0.0, -0.002, 1e-7])
    with pytest.warns(UserWarning, match=r"3 reach slope\(s\) below the floor \(2 of them <= 0\).*22, 33, 44"):
        net = read_table(df)
    assert net.report["slopes_floored"] == 3
    np.testing.assert_allclose(net.attr("slope"), [0.01, DEFAULT_MIN_SLOPE, DEFAULT_MIN_SLOPE, DEFAULT_MIN_SLOPE])
    with pytest.warns(UserWarning, match="raised to 0.001"):
        net = read_table(df, min_slope=1e-3)
    np.testing.assert_allclose(net.attr("slope"), [0.01, 1e-3, 1e-3, 1e-3])


def test_unknown_ids_and_attributes():
    net = build_network([1, 2], [2, 0])
    with pytest.raises(NetworkError, match="reach ids not in the network: 3"):
        net.positions([3])
    with pytest.raises(NetworkError, match="no attribute column 'slope'"):
        net.attr("slope")
    with pytest.raises(NetworkError, match="no reaches"):
        build_network([], [])
    with pytest.raises(NetworkError, match="differ in length"):
        build_network([1, 2], [0])
