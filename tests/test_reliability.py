"""No silent wrong answers (issue 15): each case a new user hit, with a test that failed before the fix.

Reach id 0 and outlet codes, blank CSV ids, duplicated forcing ids, dangling links, one-line CLI errors
(folders, unwritable outputs, wrong-shape forcing, Ctrl-C), umask-honouring outputs, shared-data paths,
required config keys, ``output_ids=``, bound errors naming reaches, duplicate YAML keys, rounding below zero and
the hydrograph figure's gauge choice. See docs/reliability.md.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import MuskingumCunge, build_network
from rivergraph.cli import main
from rivergraph.graph.network import NetworkError
from rivergraph.io import atomic
from rivergraph.io.readers import (load_network_npz, read_network, read_rapid, read_route_link, read_table_network,
                                   save_network_npz)

REPO = Path(__file__).resolve().parents[1]


def _static(net, k=3600.0, x=0.2):
    net.attrs["musk_s"] = k
    net.attrs["musx"] = x
    return net


def _outlet_steady_flow(net) -> float:
    """Outlet discharge after routing 1 m3/s into every reach (hot start = steady state): N m3/s if all drain to it."""
    r = MuskingumCunge(_static(net), dt=3600.0, mode="static")
    Q = r(torch.ones(3, len(net), dtype=torch.float64))
    return float(Q[-1, net.outlets].sum())


# ------------------------------------------------------------------------------------- reach id 0
def test_reach_id_zero_is_a_real_reach_in_a_generic_table():
    # ids from a DataFrame index: 3 -> 1 -> 0 <- 2, reach 0 the outlet (to = -1)
    df = pd.DataFrame({"to": [-1, 0, 0, 1]})
    net = read_table_network(df.reset_index(), columns={"id": "index", "to": "to"})
    assert net.n_outlets == 1 and net.ids[net.outlets[0]] == 0
    assert _outlet_steady_flow(net) == pytest.approx(4.0)  # was 2.0: reaches 1 and 2 became outlets
    # the same with a blank downstream id at the outlet
    net = build_network([0, 1, 2, 3], [None, 0, 0, 1])
    assert net.n_outlets == 1 and _outlet_steady_flow(net) == pytest.approx(4.0)
    assert "where not a reach id" in net.report["outlet_codes"]


def test_generic_table_without_id_zero_keeps_zero_as_outlet():
    net = build_network([11, 22, 33], [22, 33, 0])
    assert net.n_outlets == 1 and net.ids[net.outlets[0]] == 33


def test_reach_id_zero_draining_to_zero_is_a_cycle_with_a_hint():
    with pytest.raises(NetworkError, match=r"drain into themselves: 0.*outlet_ids"):
        build_network([0, 1, 2], [0, 0, 1])


def test_explicit_outlet_codes():
    # a user table's own choice: -1 marks outlets, 0 is a reach
    net = build_network([0, 1, 2], [-1, 0, 0], outlet_ids=[-1])
    assert net.n_outlets == 1 and _outlet_steady_flow(net) == pytest.approx(3.0)
    # an explicit code that is also a reach id is ambiguous: an error naming it
    with pytest.raises(NetworkError, match=r"reach id\(s\) 0 equal this format's outlet code\(s\) 0"):
        build_network([0, 1, 2], [-1, 0, 0], outlet_ids=[0])
    # explicit codes are exact: a negative value that is not a code is a dangling link, not an outlet
    with pytest.raises(NetworkError, match=r"2 \(to -5\)"):
        build_network([1, 2], [0, -5], outlet_ids=[0])


def test_rapid_and_route_link_outlet_code_zero_rejects_reach_zero(tmp_path):
    (tmp_path / "rapid_connect_x.csv").write_text("10,30\n20,30\n30,0\n")
    assert read_rapid(tmp_path / "rapid_connect_x.csv").n_outlets == 1
    (tmp_path / "rapid_connect_y.csv").write_text("0,30\n20,30\n30,0\n")
    with pytest.raises(NetworkError, match=r"reach id\(s\) 0 equal this format's outlet code"):
        read_rapid(tmp_path / "rapid_connect_y.csv")
    import xarray as xr

    ds = xr.Dataset({"link": ("feature_id", np.array([0, 20, 30])), "to": ("feature_id", np.array([30, 30, 0])),
                     "Length": ("feature_id", np.array([1000.0, 1000.0, 1000.0]))})
    ds.to_netcdf(tmp_path / "RouteLink.nc")
    with pytest.raises(NetworkError, match=r"reach id\(s\) 0 equal"):
        read_route_link(tmp_path / "RouteLink.nc")


def test_npz_round_trip_with_reach_id_zero(tmp_path):
    net = build_network([0, 1, 2, 3], [-1, 0, 0, 1])
    save_network_npz(net, tmp_path / "n.npz")
    back = load_network_npz(tmp_path / "n.npz")  # was: reaches 1 and 2 became outlets
    assert back.ids.tolist() == [0, 1, 2, 3] and back.downstream.tolist() == net.downstream.tolist()
    snet = build_network(["", "a", "b"], [None, "", ""])  # the empty string as a real string id
    save_network_npz(snet, tmp_path / "s.npz")
    assert load_network_npz(tmp_path / "s.npz").downstream.tolist() == snet.downstream.tolist()


def test_nhm_outlet_code_is_explicit(tmp_path):
    import xarray as xr

    from rivergraph.io.nhm import read_nhm

    def seg(nhm_seg, tosegment):
        n = len(nhm_seg)
        xr.Dataset({"nhm_seg": ("nsegment", np.array(nhm_seg)), "tosegment": ("nsegment", np.array(tosegment)),
                    "seg_length": ("nsegment", np.full(n, 1000.0)), "seg_slope": ("nsegment", np.full(n, 1e-3))}
                   ).to_netcdf(tmp_path / "parameters_dis_seg.nc")
        return tmp_path / "parameters_dis_seg.nc"

    net = read_nhm(seg([1001, 1002, 1003], [3, 3, 0]))  # tosegment: 1-based positions, 0 = outlet
    assert net.downstream.tolist() == [2, 2, -1]
    with pytest.raises(NetworkError, match=r"reach id\(s\) 0 equal this format's outlet code"):
        read_nhm(seg([0, 1002, 1003], [3, 3, 0]))


# --------------------------------------------------------------------------------------- blank ids
def test_blank_csv_reach_id_is_an_error_naming_the_line(tmp_path):
    (tmp_path / "r.csv").write_text("reach,next\n11,22\n,33\n22,33\n33,\n")
    with pytest.raises(NetworkError, match=r"blank or missing reach id in column reach at line\(s\) 3\b"):
        read_table_network(tmp_path / "r.csv", columns={"id": "reach", "to": "next"})


def test_blank_downstream_id_is_an_outlet_even_when_reach_zero_exists(tmp_path):
    (tmp_path / "r.csv").write_text("reach,next\n0,\n1,0\n2,\n")
    net = read_table_network(tmp_path / "r.csv", columns={"id": "reach", "to": "next"})
    assert net.downstream.tolist() == [-1, 0, -1]  # was [-1, 0, 0]: the NaN became id 0


def test_huge_integer_ids_survive_a_csv_with_blanks(tmp_path):
    big = 2 ** 62 + 1  # not representable in float64: a NaN in the column used to round it
    (tmp_path / "r.csv").write_text(f"reach,next\n{big},{big + 2}\n{big + 2},\n")
    net = read_table_network(tmp_path / "r.csv", columns={"id": "reach", "to": "next"})
    assert net.ids.tolist() == [big, big + 2] and net.downstream.tolist() == [1, -1]


def test_rapid_blank_id_names_the_line(tmp_path):
    (tmp_path / "rapid_connect_z.csv").write_text("10,30\n,30\n30,0\n")
    with pytest.raises(NetworkError, match=r"line\(s\) 2\b"):
        read_rapid(tmp_path / "rapid_connect_z.csv")


# ------------------------------------------------------------------------------------ forcing npz
def _forcing(path, reach_ids, q, T=None):
    T = q.shape[0] if T is None else T
    np.savez(path, q_lateral=q, reach_ids=np.asarray(reach_ids),
             time=pd.date_range("2020-01-01", periods=T, freq="h").to_numpy())


def test_forcing_with_a_duplicated_reach_id_is_an_error(tmp_path):
    from rivergraph.io.readers import read_forcing_npz

    net = build_network([11, 22, 33], [22, 33, 0])
    _forcing(tmp_path / "f.npz", [11, 22, 22], np.ones((4, 3)))
    with pytest.raises(NetworkError, match=r"duplicated reach id\(s\) 22"):
        read_forcing_npz(tmp_path / "f.npz", net)
    _forcing(tmp_path / "g.npz", [11, 22], np.ones((4, 2)))
    with pytest.raises(NetworkError, match=r"no inflow for reaches 33"):
        read_forcing_npz(tmp_path / "g.npz", net)
    _forcing(tmp_path / "h.npz", [11, 22, 33], np.ones((4, 2)))
    with pytest.raises(NetworkError, match=r"q_lateral has shape \(4, 2\), expected \[time, 3\]"):
        read_forcing_npz(tmp_path / "h.npz", net)
    _forcing(tmp_path / "ok.npz", [33, 11, 22], np.arange(12.0).reshape(4, 3))
    q, times = read_forcing_npz(tmp_path / "ok.npz", net)
    assert q[0].tolist() == [1.0, 2.0, 0.0] and len(times) == 4


# ------------------------------------------------------------------------------------ dangling links
def test_nhdplus_hydroseq_pointing_outside_is_dangling():
    df = pd.DataFrame({"COMID": [11, 22, 33], "Hydroseq": [3, 2, 1], "DnHydroseq": [2, 1, 99],
                       "LENGTHKM": [1.0, 1.0, 1.0]})
    with pytest.raises(NetworkError, match=r"33 \(to DnHydroseq 99\)"):
        read_table_network(df, schema="nhdplus")
    with pytest.warns(UserWarning, match=r"1 reach\(es\) drain to ids not in the network"):
        net = read_table_network(df, schema="nhdplus", dangling="outlet")
    assert net.report["dangling_as_outlets"] == 1 and net.n_outlets == 1


def test_hydrofabric_nexus_missing_from_nexus_layer_is_dangling(tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    fp = gpd.GeoDataFrame({"id": ["wb-1", "wb-2", "wb-3"], "toid": ["nex-3", "nex-3", "nex-9"],
                           "lengthkm": [1.0, 1.0, 1.0]},
                          geometry=[LineString([(0, i), (1, i)]) for i in range(3)], crs="EPSG:5070")
    nexus = gpd.GeoDataFrame({"id": ["nex-3"], "toid": ["wb-3"]}, geometry=[Point(0, 0)], crs="EPSG:5070")
    path = tmp_path / "hf.gpkg"
    fp.to_file(path, layer="flowpaths", driver="GPKG")
    nexus.to_file(path, layer="nexus", driver="GPKG")
    with pytest.raises(NetworkError, match=r"wb-3 \(to nex-9 \(not in the nexus layer\)\)"):
        read_network(path)
    with pytest.warns(UserWarning, match="drain to ids not in the network"):
        net = read_network(path, dangling="outlet")
    assert net.report["dangling_as_outlets"] == 1 and net.n_outlets == 1


# ---------------------------------------------------------------------------------------------- CLI
def _one_line_error(capsys, rc, expected_rc=2) -> str:
    err = capsys.readouterr().err
    assert rc == expected_rc, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_folder_as_network_path(tmp_path, capsys):
    line = _one_line_error(capsys, main(["plot", "n-vs-area", "--network", str(tmp_path), "--out",
                                         str(tmp_path / "x.png")]))
    assert line.startswith("rivergraph: error: network path") and str(tmp_path) in line and "folder" in line


def test_cli_unwritable_output_names_the_users_path(tmp_path, capsys, monkeypatch):
    # the tests run as root, for whom chmod does not stop writes: make mkstemp fail as the OS does
    def denied(*a, dir=None, **k):
        raise PermissionError(13, "Permission denied", os.path.join(dir, ".x.png.abc123.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    out = tmp_path / "readonly" / "x.png"
    line = _one_line_error(capsys, main(["plot", "training", _history(tmp_path), "--out", str(out)]))
    assert f"cannot write {out}" in line and ".tmp" not in line
    # a folder in the way of the output's folder (real, also as root)
    (tmp_path / "afile").write_text("")
    monkeypatch.undo()
    line = _one_line_error(capsys, main(["plot", "training", _history(tmp_path), "--out",
                                         str(tmp_path / "afile" / "x.png")]))
    assert "afile" in line


def _history(tmp_path) -> str:
    p = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}).to_csv(p, index=False)
    return str(p)


def _config(tmp_path, text: str) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return str(p)


def test_cli_wrong_shape_and_duplicated_forcing(tmp_path, capsys, lc):
    net = lc[0]
    _forcing(tmp_path / "f.npz", net.ids, np.ones((5, 10)))
    cfg = _config(tmp_path, f"network: lower_colorado\nforcing: {{source: {tmp_path / 'f.npz'}}}\n"
                            f"observations: {{source: twin}}\noutput: {{dir: {tmp_path / 'run'}}}\n")
    line = _one_line_error(capsys, main(["train", cfg]))
    assert "q_lateral has shape (5, 10)" in line
    ids = net.ids.copy()
    ids[1] = ids[0]
    _forcing(tmp_path / "f.npz", ids, np.ones((5, len(net))))
    line = _one_line_error(capsys, main(["train", cfg]))
    assert f"duplicated reach id(s) {ids[0]}" in line


def test_cli_ctrl_c_during_training(tmp_path, capsys, monkeypatch):
    import rivergraph.runs.train as runs

    def interrupted(cfg, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "run_training", interrupted)
    cfg = _config(tmp_path, f"network: lower_colorado\nforcing: {{source: synthetic_storms}}\n"
                            f"observations: {{source: twin}}\noutput: {{dir: {tmp_path / 'run'}}}\n")
    line = _one_line_error(capsys, main(["train", cfg]), 130)
    assert line.startswith("rivergraph: interrupted; no epoch had finished")
    (tmp_path / "run").mkdir()
    torch.save({"model": {}, "param_net": {}, "epoch": 3}, tmp_path / "run" / "checkpoint.pt")
    line = _one_line_error(capsys, main(["train", cfg]), 130)
    assert "epoch 3 is saved in" in line and f"rerun 'rivergraph train {cfg}' to resume" in line


@pytest.fixture
def no_training(monkeypatch):
    """Make any training that a test's command would start fail at once (instead of running for minutes)."""
    import rivergraph.runs.train as runs

    def started(cfg, **kw):
        raise AssertionError(f"a training was started: network {cfg.network}, {cfg.training.epochs} epochs")

    monkeypatch.setattr(runs, "run_training", started)


def test_empty_config_does_not_start_a_default_training(tmp_path, capsys, no_training):
    line = _one_line_error(capsys, main(["train", _config(tmp_path, "")]))
    assert "missing required key(s) network, forcing, observations" in line
    line = _one_line_error(capsys, main(["train", _config(tmp_path, "network: lower_colorado\n")]))
    assert "missing required key(s) forcing, observations" in line


def test_duplicate_yaml_key_is_an_error_naming_key_and_line(tmp_path, capsys, no_training):
    cfg = _config(tmp_path, "network: lower_colorado\nforcing:\n  source: synthetic_storms\n"
                            "observations: {source: twin}\nforcing: {source: lower_colorado}\n")
    line = _one_line_error(capsys, main(["train", cfg]))
    assert "duplicate key 'forcing' (line 2 and line 5)" in line


# ------------------------------------------------------------------------------------------- umask
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_outputs_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        net = build_network([1, 2], [2, 0])
        save_network_npz(net, tmp_path / "n.npz")
        assert (tmp_path / "n.npz").stat().st_mode & 0o777 == 0o666 & ~mask  # was 0o600
        with atomic.atomic_dir(tmp_path / "store.zarr") as tmp:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "chunk").write_bytes(b"x")
        for p, want in ((tmp_path / "store.zarr", 0o777), (tmp_path / "store.zarr" / "sub", 0o777),
                        (tmp_path / "store.zarr" / "sub" / "chunk", 0o666)):
            assert p.stat().st_mode & 0o777 == want & ~mask, p
    finally:
        os.umask(old)


def test_route_to_zarr_honours_the_umask(tmp_path):
    from rivergraph.io import route_to_file

    old = os.umask(0o022)
    try:
        net = _static(build_network([1, 2], [2, 0]))
        route_to_file(MuskingumCunge(net, mode="static"), torch.ones(4, 2, dtype=torch.float64),
                      tmp_path / "q.zarr", start="2020-01-01")
        modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "q.zarr").rglob("*")}
        assert modes <= {0o644, 0o755} and (tmp_path / "q.zarr").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)


# --------------------------------------------------------------------------------- paths and data
def test_no_absolute_machine_paths_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    needle = "/" + "work" + "/"  # written in pieces so that this file does not match itself
    hits = []
    for f in tracked:
        p = REPO / f
        if p.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg") and p.is_file():
            for i, line in enumerate(p.read_text(errors="ignore").splitlines(), 1):
                if needle in line:
                    hits.append(f"{f}:{i}")
    assert not hits, f"absolute machine paths: {hits}"


def test_missing_shared_data_fails_not_skips(tmp_path):
    import importlib.util

    # the top-level tests/conftest.py by path: ``import conftest`` may find a sub-folder's conftest first
    spec = importlib.util.spec_from_file_location("rivergraph_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    require_shared = mod.require_shared

    with pytest.raises(pytest.fail.Exception, match="not found at .*nope.*fail rather than skip"):
        require_shared(tmp_path / "nope")


# ---------------------------------------------------------------------------------- router outputs
def test_output_ids_and_positions():
    net = _static(build_network([50, 10, 30], [0, 30, 50]))
    r = MuskingumCunge(net, mode="static")
    q = torch.rand(5, 3, dtype=torch.float64)
    full = r(q)
    torch.testing.assert_close(r(q, output_ids=[10, 50]), full[:, [1, 0]])
    torch.testing.assert_close(r(q, output_positions=[1, 0]), full[:, [1, 0]])
    with pytest.warns(DeprecationWarning, match="output_positions="):
        torch.testing.assert_close(r(q, outputs=[2]), full[:, [2]])
    with pytest.raises(IndexError, match=r"got \[50, 10\]; they are reach ids: pass output_ids="):
        r(q, output_positions=[50, 10])
    with pytest.raises(NetworkError, match=r"output_ids not in the network: \[1\]; these look like reach positions"):
        r(q, output_ids=[1])
    with pytest.raises(TypeError, match="only one of output_ids, output_positions"):
        r(q, output_ids=[10], output_positions=[1])


def test_bound_errors_name_the_reaches():
    net = build_network([11, 22, 33], [22, 33, 0])
    net.attrs = net.attrs.assign(n=0.04, slope=1e-3, length_m=1000.0)
    r = MuskingumCunge(net, mode="power_law")
    kw = {"width_coef": 21.0, "width_exp": 0.5}
    with pytest.raises(ValueError, match=r"'n' outside its physical bounds .* at reaches \[22\]$"):
        r(torch.ones(3, 3), n=torch.tensor([0.04, 0.5, 0.04]), **kw)
    with pytest.raises(ValueError, match=r"'length' must be positive .* at reaches \[33\]"):
        r(torch.ones(3, 3), length=torch.tensor([10.0, 10.0, -1.0]), **kw)
    with pytest.raises(ValueError, match=r"'slope' has non-finite values at reaches \[11\]"):
        r(torch.ones(3, 3), slope=torch.tensor([np.nan, 1e-3, 1e-3]), **kw)


# ----------------------------------------------------------------------------- rounding below zero
def test_flows_below_zero_only_within_rounding(lc):
    """The conservative step Q = c1 I + c4 q + (c4/dt) (S + dt/2 (I_old - Q_old)) subtracts: where its exact value
    is 0 the computed one may be a few ulps of the terms either side (docs/reliability.md); never more."""
    net, data = lc
    mask = net.upstream_mask([int(data["gauge_reach"]["08159000"])])
    sub = net.subset(mask)
    for dtype in (torch.float32, torch.float64):
        q = data["q_lateral"][:, mask].to(dtype)
        q = q * (torch.rand(q.shape, generator=torch.Generator().manual_seed(0), dtype=dtype) < 0.5)  # zeros
        for mode in ("trapezoid", "power_law"):
            r = MuskingumCunge(sub, dt=300.0, forcing_dt=3600.0, mode=mode, output="end")
            kw = {"width_coef": 21.0, "width_exp": 0.5} if mode == "power_law" else {}
            Q = r(q, hot_start=False, **kw)
            bound = rounding_bound(Q, q)
            assert float(Q.min()) >= -bound, (dtype, mode, float(Q.min()), bound)


def rounding_bound(Q: torch.Tensor, q_lat: torch.Tensor) -> float:
    """How far below zero rounding may take a routed flow: 8 ulps of the largest flow in the network."""
    scale = max(float(Q.abs().max()), float(q_lat.sum(1).max()))
    return 8.0 * torch.finfo(Q.dtype).eps * scale


# ---------------------------------------------------------------------------------- hydrograph plot
def test_plot_hydrograph_picks_gauges_with_observations_and_says_when_none():
    from rivergraph.plots import plot_hydrographs

    t = pd.date_range("2021-01-01", periods=6, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    sim = pd.concat([pd.DataFrame({"time": t, "gage": g, "discharge_m3s": m + rng.random(6)})
                     for g, m in (("tiny", 0.01), ("big", 500.0), ("noobs", 900.0), ("mid", 50.0))])
    obs = pd.concat([pd.DataFrame({"time": t, "gage": g, "discharge_m3s": m + rng.random(6) * 1e-6})
                     for g, m in (("tiny", 0.01), ("big", 510.0), ("mid", 45.0))])
    fig = plot_hydrographs(sim, obs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("USGS big") and titles[1].startswith("USGS mid")  # was: table order
    from rivergraph.plots import informative_gauges

    assert informative_gauges(sim, obs) == ["big", "mid", "tiny", "noobs"]
    assert informative_gauges(sim, obs, k=2) == ["big", "mid"]
    assert informative_gauges(sim) == ["noobs", "big", "mid", "tiny"]
    assert titles[3] == "USGS noobs  (no observations)"
    assert titles[2] == "USGS tiny  NSE < -10 (n=6)"  # near-constant observations: no absurd number
    import matplotlib.pyplot as plt

    plt.close(fig)
