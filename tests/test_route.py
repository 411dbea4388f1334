"""``rivergraph route CONFIG.yaml`` end to end on a small generated network: chunked = unchunked, depth-rate units,
weight tables, state files, and the outputs opening in ``rivergraph plot``; ``rivergraph route RUN_DIR``."""
from __future__ import annotations

import json

import netCDF4
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rivergraph.cli import main
from rivergraph.io import open_output, read_gauge_csv, read_network
from rivergraph.models.router import MuskingumCunge

T = 60


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 31-reach binary tree (ids 1..31 shuffled), hourly mm/h runoff per catchment in netCDF and CSV."""
    d = tmp_path_factory.mktemp("route")
    rng = np.random.default_rng(3)
    n = 31
    ids = rng.permutation(np.arange(1, n + 1))
    to = np.array([0 if i == 0 else ids[(i - 1) // 2] for i in range(n)])   # heap order: i drains to (i-1)//2
    net = pd.DataFrame({"reach_id": ids, "downstream_id": to, "length_m": rng.uniform(1000, 3000, n),
                        "slope": rng.uniform(1e-4, 1e-2, n), "area": rng.uniform(1, 5, n),
                        "gauge": [""] * n})
    net.loc[0, "gauge"], net.loc[1, "gauge"] = "01000001", "01000002"
    net.to_csv(d / "net.csv", index=False)
    times = pd.date_range("2020-01-01", periods=T, freq="h")
    depth = rng.gamma(0.5, 1.0, (T, n)).astype(np.float32)          # mm/h
    with netCDF4.Dataset(d / "runoff.nc", "w") as ds:
        ds.createDimension("time", T)
        ds.createDimension("catchment", n)
        tv = ds.createVariable("time", "f8", ("time",))
        tv.units = "hours since 2020-01-01 00:00:00"
        tv[:] = np.arange(T)
        ds.createVariable("catchment", "i8", ("catchment",))[:] = ids
        ds.createVariable("runoff", "f4", ("time", "catchment"))[:] = depth
    wide = pd.DataFrame(depth, columns=[str(i) for i in ids])
    wide.insert(0, "time", times.strftime("%Y-%m-%dT%H:%M:%SZ"))
    wide.to_csv(d / "runoff.csv", index=False)
    cfg = {"network": {"source": "net.csv", "columns": {"id": "reach_id", "to": "downstream_id",
                                                        "length_m": "length_m", "slope": "slope",
                                                        "catchment_area_km2": "area", "gage": "gauge"}},
           "runoff": {"kind": "precomputed", "path": "runoff.nc", "units": "mm/h"},
           "routing": {"mode": "power_law", "params": {"n": 0.05, "width_coef": 21.0, "width_exp": 0.5}},
           "output": {"dir": "out", "progress": False, "dtype": "float64"}}
    return d, cfg, depth, ids


def _run(d, cfg, name, **over):
    c = json.loads(json.dumps(cfg))
    for k, v in over.items():
        c.setdefault(k, {}).update(v) if isinstance(v, dict) else c.__setitem__(k, v)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(c))
    assert main(["route", str(d / f"{name}.yaml")]) == 0
    return c


def _flow(path):
    with open_output(path) as ds:
        return ds["streamflow"].values.copy(), ds["feature_id"].values.copy()


def test_chunked_equals_unchunked_and_the_router(case):
    d, cfg, depth, ids = case
    _run(d, cfg, "a", output={"dir": "chunked", "chunk_size": 7})
    _run(d, cfg, "b", output={"dir": "whole", "chunk_size": T})
    qa, fa = _flow(d / "chunked" / "discharge.nc")
    qb, fb = _flow(d / "whole" / "discharge.nc")
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_allclose(qa, qb, rtol=1e-12, atol=1e-12)
    net = read_network(d / "net.csv", columns=cfg["network"]["columns"])
    area = net.attr("catchment_area_km2")[net.positions(ids.tolist())]
    q = torch.zeros(T, len(net), dtype=torch.float64)
    q[:, torch.from_numpy(net.positions(ids.tolist()))] = torch.from_numpy(depth.astype(np.float64) * area / 3.6)
    Q = MuskingumCunge(net, mode="power_law")(q, n=0.05, width_coef=21.0, width_exp=0.5).numpy()
    np.testing.assert_allclose(qa, Q[:, net.positions(fa.tolist())], rtol=1e-6)
    s = json.loads((d / "chunked" / "summary.json").read_text())
    assert s["chunks"] == 9 and s["steps"] == T and abs(s["mass_balance"]["relative_error"]) < 1e-9
    assert s["peak_rss_mb"] > 0 and s["reach_steps_per_s"] > 0


def test_csv_runoff_and_weight_table_match_netcdf(case):
    d, cfg, depth, ids = case
    _run(d, cfg, "csv", runoff={"path": "runoff.csv"}, output={"dir": "csv"})
    pd.DataFrame({"catchment_id": ids, "reach_id": ids, "weight": 1.0,
                  "area_km2": pd.read_csv(d / "net.csv")["area"]}).to_csv(d / "w.csv", index=False)
    _run(d, cfg, "tab", mapping={"kind": "table", "table": "w.csv"}, runoff={"area": "area_km2"},
         output={"dir": "tab"})
    _run(d, cfg, "nc", output={"dir": "nc"})
    q_nc, _ = _flow(d / "nc" / "discharge.nc")
    q_csv, _ = _flow(d / "csv" / "discharge.nc")
    q_tab, _ = _flow(d / "tab" / "discharge.nc")
    np.testing.assert_allclose(q_tab, q_nc, rtol=1e-12)
    np.testing.assert_allclose(q_csv, q_nc, rtol=1e-6)   # the CSV holds the float32 runoff as decimal text


def test_final_state_continues_exactly_and_period(case):
    d, cfg, depth, ids = case
    _run(d, cfg, "full", output={"dir": "full"})
    _run(d, cfg, "h1", period={"steps": 25}, state={"final": "s.npz"}, output={"dir": "h1"})
    _run(d, cfg, "h2", period={"start": "2020-01-02T01:00:00"}, state={"initial": "s.npz"}, output={"dir": "h2"})
    full, _ = _flow(d / "full" / "discharge.nc")
    h1, _ = _flow(d / "h1" / "discharge.nc")
    h2, _ = _flow(d / "h2" / "discharge.nc")
    np.testing.assert_allclose(np.concatenate([h1, h2]), full, rtol=1e-12, atol=1e-12)
    (d / "bad.yaml").write_text(yaml.safe_dump({**cfg, "period": {"start": "2020-01-01T00:00:00"},
                                                "state": {"initial": "s.npz"}}))
    assert main(["route", str(d / "bad.yaml")]) == 2    # the state is valid at 01:00 on day 2, not at the start


def test_route_outputs_open_in_plot_commands(case, capsys):
    d, cfg, depth, ids = case
    _run(d, cfg, "p", output={"dir": "p", "variables": ["streamflow", "q_lateral"]})
    g = read_gauge_csv(d / "p" / "gauges.csv")
    assert set(g["gage"]) == {"01000001", "01000002"} and len(g) == 2 * T
    net_cols = cfg["network"]["columns"]
    pd.read_csv(d / "net.csv").assign(lat=np.linspace(30, 31, 31), lon=np.linspace(-97, -96, 31)).to_csv(
        d / "netll.csv", index=False)
    net = read_network(d / "netll.csv", columns={**net_cols, "lat": "lat", "lon": "lon"})
    from rivergraph.io.readers import save_network_npz

    save_network_npz(net, d / "net.npz")
    assert main(["plot", "map", "--network", str(d / "net.npz"), "--flow", str(d / "p" / "discharge.nc"),
                 "--log", "--out", str(d / "m.png")]) == 0
    assert main(["plot", "map", "--network", str(d / "net.npz"), "--flow", str(d / "p" / "discharge.nc"),
                 "--variable", "q_lateral", "--out", str(d / "l.png")]) == 0
    assert main(["plot", "hydrograph", "--sim", str(d / "p" / "gauges.csv"), "--obs", str(d / "p" / "gauges.csv"),
                 "--out", str(d / "h.png")]) == 0
    for f in ("m.png", "l.png", "h.png"):
        assert (d / f).read_bytes()[:4] == b"\x89PNG"


def test_bad_runoff_is_a_clear_error(case, capsys):
    d, cfg, depth, ids = case
    (d / "bad1.yaml").write_text(yaml.safe_dump({**cfg, "runoff": {**cfg["runoff"], "area": "nope"}}))
    assert main(["route", str(d / "bad1.yaml")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    pd.read_csv(d / "runoff.csv").iloc[:, :-1].to_csv(d / "short.csv", index=False)   # one catchment missing
    (d / "bad2.yaml").write_text(yaml.safe_dump({**cfg, "runoff": {**cfg["runoff"], "path": "short.csv"},
                                                 "mapping": {"kind": "id"}}))
    assert main(["route", str(d / "bad2.yaml")]) == 0   # a reach without a catchment gets no lateral inflow


@pytest.mark.slow
def test_train_writes_a_run_directory_that_route_needs_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "network": "lower_colorado", "forcing": {"source": "synthetic_storms", "storms": {"hours": 48, "quiet_h": 0}},
        "observations": {"source": "twin"},
        "gauges": {"max_upstream_reaches": 12}, "training": {"epochs": 1, "warmup_hours": 6, "patience": 1},
        "output": {"dir": "run", "plots": False}}))
    assert main(["train", "t.yaml"]) == 0
    run = tmp_path / "run"
    for f in ("config.yml", "checkpoint.pt", "summary.json", "gauge_scores.csv"):
        assert (run / f).is_file(), f
    (tmp_path / "t.yaml").unlink()
    monkeypatch.chdir(tmp_path.parent)
    assert main(["route", str(run)]) == 0
    with open_output(run / "discharge.nc") as ds:
        assert ds.sizes["feature_id"] == 11248 and ds.sizes["time"] == 48
    g = read_gauge_csv(run / "gauges.csv")
    assert g["gage"].nunique() > 10
    # the run's learned parameters on another forcing: routing.run_dir, and its parameters.csv as a parameter file
    base = {"network": "lower_colorado", "runoff": {"kind": "dataset", "name": "lower_colorado"}}
    (run / "r1.yaml").write_text(yaml.safe_dump({**base, "routing": {"run_dir": "."},
                                                 "output": {"dir": "r1", "progress": False, "dtype": "float64"}}))
    (run / "r2.yaml").write_text(yaml.safe_dump({**base, "routing": {
        "mode": "power_law", "parameter_file": str(run / "parameters.csv"),
        "params": {"width_coef": 21.0, "width_exp": 0.5}},
        "output": {"dir": "r2", "progress": False, "dtype": "float64"}}))
    assert main(["route", str(run / "r1.yaml")]) == 0 and main(["route", str(run / "r2.yaml")]) == 0
    q1, _ = _flow(run / "r1" / "discharge.nc")
    q2, _ = _flow(run / "r2" / "discharge.nc")
    assert q1.shape == (28, 11248)
    np.testing.assert_allclose(q1, q2, rtol=1e-5)   # parameters.csv holds n to float64 text precision


def test_chunked_drift_diagnostic_matches_one_call(case):
    d, cfg, depth, ids = case
    net = read_network(d / "net.csv", columns=cfg["network"]["columns"])
    q = torch.rand(T, len(net), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kw = dict(n=0.05, width_coef=21.0, width_exp=0.5)
    r = MuskingumCunge(net, mode="power_law")
    r(q[:30], **kw)
    r(q[30:], state=r.state, **kw)
    assert r.balance.storage_start_m3 > 0 and abs(r.balance.scheme_relative_error) < 1e-9


def test_temperature_output_opens_in_plot_map(tmp_path):
    """``rivergraph temperature``'s file is the same CF layout: ``plot map --flow --variable water_temperature``."""
    from rivergraph.io.cf import write_temperature
    from rivergraph.io.readers import save_network_npz
    from rivergraph.models.temperature import TemperatureResult

    from rivergraph.graph.network import build_network

    net = build_network(np.array([1, 2, 3]), np.array([3, 3, 0]),
                        pd.DataFrame({"lat": [30.0, 30.1, 30.2], "lon": [-97.0, -97.1, -97.2]}))
    save_network_npz(net, tmp_path / "n.npz")
    times = pd.date_range("2021-08-23", periods=4, freq="h", tz="UTC")
    x = torch.arange(12, dtype=torch.float64).reshape(4, 3) + 20.0
    write_temperature(tmp_path / "t.nc", net, times, TemperatureResult(x, x / 10, x + 1, x - 1))
    assert main(["plot", "map", "--network", str(tmp_path / "n.npz"), "--flow", str(tmp_path / "t.nc"),
                 "--variable", "water_temperature", "--out", str(tmp_path / "t.png")]) == 0
    with open_output(tmp_path / "t.nc") as ds:
        np.testing.assert_allclose(ds["water_temperature"].values, x.numpy())
        assert ds["water_temperature"].attrs["units"] == "degC"
