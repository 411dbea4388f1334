"""The one CF writer, the one gauge CSV, state files and the reader registry."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph.graph.network import NetworkError, build_network
from rivergraph.io import (CFWriter, network_formats, open_output, read_gauge_csv, read_network, register_reader,
                           write_discharge, write_gauge_csv)
from rivergraph.io.registry import detect_format

TIMES = pd.date_range("2020-01-01", periods=5, freq="h", tz="UTC")


def _net(str_ids=False):
    ids = ["wb-1", "wb-2", "wb-3"] if str_ids else [10, 20, 30]
    to = ["wb-3", "wb-3", ""] if str_ids else [30, 30, 0]
    attrs = pd.DataFrame({"lat": [30.0, 30.1, 30.2], "lon": [-97.0, -97.1, -97.2], "gage": ["", "08158000", ""]})
    return build_network(np.array(ids), np.array(to), attrs, outlet_ids=("", 0))


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
@pytest.mark.parametrize("str_ids", [False, True])
def test_cf_writer_streams_chunks_and_reads_back(tmp_path, suffix, str_ids):
    net = _net(str_ids)
    Q = np.arange(15, dtype=np.float64).reshape(5, 3)
    path = tmp_path / f"f{suffix}"
    with CFWriter(path, net, ["streamflow", "q_lateral"], dtype="float64") as w:
        w.append(TIMES[:2], streamflow=Q[:2], q_lateral=Q[:2] / 2)
        w.append(TIMES[2:], streamflow=torch.from_numpy(Q[2:]), q_lateral=Q[2:] / 2)
    with open_output(path) as ds:
        np.testing.assert_array_equal(ds["streamflow"].values, Q)
        np.testing.assert_array_equal(ds["q_lateral"].values, Q / 2)
        assert list(ds["feature_id"].values) == list(net.ids)
        assert ds["feature_id"].attrs["cf_role"] == "timeseries_id"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["featureType"] == "timeSeries"
        assert ds["streamflow"].attrs["units"] == "m3 s-1"
        assert (pd.DatetimeIndex(ds["time"].values).tz_localize("UTC") == TIMES).all()
        np.testing.assert_allclose(ds["lat"].values, [30.0, 30.1, 30.2])


def test_writer_errors_leave_no_file(tmp_path):
    net = _net()
    with pytest.raises(ValueError, match="unknown output variable"):
        CFWriter(tmp_path / "a.nc", net, ["discharge"])
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
        with CFWriter(tmp_path / "a.nc", net) as w:
            w.append(TIMES[:2], streamflow=np.zeros((2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_write_discharge_subset_and_legacy_layouts_open(tmp_path):
    import xarray as xr

    net = _net()
    Q = np.ones((5, 2))
    write_discharge(Q, net, TIMES, tmp_path / "q.nc", reaches=[0, 2])
    with open_output(tmp_path / "q.nc") as ds:
        assert list(ds["feature_id"].values) == [10, 30] and ds["streamflow"].shape == (5, 2)
    # the layouts rivergraph wrote before the single writer: train's (reach dim + reach_id), temperature's (reach)
    xr.Dataset({"discharge": (("time", "reach"), np.ones((5, 3)))},
               coords={"time": TIMES.tz_convert(None), "reach_id": ("reach", net.ids)}).to_netcdf(tmp_path / "a.nc")
    xr.Dataset({"discharge": (("time", "reach"), np.ones((5, 3)))},
               coords={"time": TIMES.tz_convert(None), "reach": net.ids}).to_netcdf(tmp_path / "b.nc")
    for name in ("a.nc", "b.nc"):
        with open_output(tmp_path / name) as ds:
            assert list(ds["feature_id"].values) == list(net.ids) and ds["streamflow"].shape == (5, 3)
    xr.Dataset({"x": ("y", [1])}).to_netcdf(tmp_path / "c.nc")
    with pytest.raises(ValueError, match="not a rivergraph output"):
        open_output(tmp_path / "c.nc")


def test_gauge_csv_round_trip_keeps_leading_zeros(tmp_path):
    Q = np.array([[1.5], [2.25], [3.0]])
    write_gauge_csv(tmp_path / "g.csv", TIMES[:3], ["08158000"], [20], Q)
    g = read_gauge_csv(tmp_path / "g.csv")
    assert list(g.columns) == ["time", "gage", "reach_id", "discharge_m3s"]
    assert (g["gage"] == "08158000").all() and g["time"].dt.tz is not None
    np.testing.assert_allclose(g["discharge_m3s"], Q[:, 0])
    pd.DataFrame({"time": TIMES[:3], "x": 1}).to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(ValueError, match="not a rivergraph gauge CSV"):
        read_gauge_csv(tmp_path / "wide.csv")


def test_state_file_round_trip_and_errors(tmp_path):
    from rivergraph.io.state import load_state, save_state
    from rivergraph.models.router import RoutingState

    net = _net()
    st = RoutingState(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([0.0, 0.0, 3.0]))
    save_state(st, net, tmp_path / "s.npz", time=TIMES[-1], mode="static")
    back, t = load_state(tmp_path / "s.npz", net, "static")
    assert torch.equal(back.Q, st.Q) and back.S is None and t == TIMES[-1]
    with pytest.raises(ValueError, match="routing mode 'static'"):
        load_state(tmp_path / "s.npz", net, "trapezoid")
    sub = build_network(np.array([10, 20, 40]), np.array([40, 40, 0]), pd.DataFrame(index=range(3)))
    with pytest.raises(NetworkError, match=r"no state for reach\(es\) \[40\]"):
        load_state(tmp_path / "s.npz", sub)


def test_registering_a_format_is_one_line(tmp_path):
    path = tmp_path / "net.seg"
    path.write_text("10 30\n20 30\n30 0\n")

    def read_seg(p, **kw):
        a = np.loadtxt(p, dtype=np.int64)
        return build_network(a[:, 0], a[:, 1], pd.DataFrame(index=range(len(a))), **kw)

    register_reader("seg_test", read_seg, detect=lambda p: p.suffix == ".seg", description="test format")
    try:
        assert detect_format(path) == "seg_test" and "seg_test" in network_formats()
        assert len(read_network(path)) == 3
        with pytest.raises(ValueError, match="already registered"):
            register_reader("seg_test", read_seg)
    finally:
        from rivergraph.io import registry

        registry._FORMATS.pop("seg_test")
    with pytest.raises(NetworkError, match="cannot tell the network format"):
        read_network(path)
    assert {"rivergraph", "route_link", "nhm", "rapid", "hydrofabric", "table"} <= set(network_formats())


def test_bmi_output_file_is_the_cf_layout(tmp_path):
    import yaml

    from rivergraph.bmi import DISCHARGE, LATERAL_INFLOW, BmiRiverGraph
    from rivergraph.io.readers import save_network_npz

    net = build_network(np.array([10, 20, 30]), np.array([30, 30, 0]),
                        pd.DataFrame({"musk_s": [3600.0] * 3, "musx": [0.2] * 3}))
    save_network_npz(net, tmp_path / "net.npz")
    (tmp_path / "bmi.yaml").write_text(yaml.safe_dump({"network": "net.npz", "mode": "static",
                                                       "output_file": "out/q.nc"}))
    m = BmiRiverGraph()
    m.initialize(str(tmp_path / "bmi.yaml"))
    flows = []
    for k in range(3):
        m.set_value(LATERAL_INFLOW, np.array([1.0, 2.0, 0.5]) * (k + 1))
        m.update()
        flows.append(m.get_value(DISCHARGE, np.zeros(3)).copy())
    m.finalize()
    with open_output(tmp_path / "out" / "q.nc") as ds:
        assert list(ds["feature_id"].values) == [10, 20, 30] and ds.sizes["time"] == 3
        np.testing.assert_allclose(ds["streamflow"].values, np.array(flows), rtol=1e-6)
        assert (pd.DatetimeIndex(ds["time"].values) == pd.date_range("1970-01-01", periods=3, freq="h")).all()
