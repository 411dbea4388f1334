"""Figures and the ``rivergraph plot`` commands on a real Lower Colorado gauge subnetwork."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph.cli import main
from rivergraph.io.readers import save_network_npz
from rivergraph.io.writer import route_to_file
from rivergraph.plots import network_lines, plot_hydrographs, plot_n_vs_area, plot_training
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, basin_08159000):
    """USGS 08159000's subnetwork (npz), routed NWM inflow to .nc + gauge CSV."""
    sub, q, data = basin_08159000
    d = tmp_path_factory.mktemp("plots")
    save_network_npz(sub, d / "net.npz")
    route_to_file(MuskingumCunge(sub), q, d / "q.nc", times=data["time"],
                  gauge_csv=d / "g.csv")
    return sub, data, d


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_write_figures(run, capsys):
    net, data, d = run
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.5, 0.3, 0.2], "val_loss": [0.6, 0.4, 0.35]}).to_csv(
        d / "hist.csv", index=False)
    pd.DataFrame({"reach_id": net.ids, "n": np.linspace(0.02, 0.1, len(net))}).to_csv(d / "n.csv", index=False)
    cmds = {"h.png": ["hydrograph", "--sim", str(d / "g.csv"), "--obs", "lower_colorado"],
            "a.png": ["n-vs-area", "--network", str(d / "net.npz"), "--values", str(d / "n.csv")],
            "m.png": ["map", "--network", str(d / "net.npz"), "--flow", str(d / "q.nc"), "--log"],
            "p.png": ["map", "--network", str(d / "net.npz"), "--column", "slope"],
            "t.png": ["training", str(d / "hist.csv")]}
    for out, cmd in cmds.items():
        assert main(["plot", *cmd, "--out", str(d / out)]) == 0, cmd
        assert _is_png(d / out)
    assert "-> " in capsys.readouterr().out


def test_bad_input_is_one_line_and_nonzero(run, capsys):
    net, data, d = run
    assert main(["plot", "map", "--network", str(d / "net.npz"), "--column", "nope", "--out", str(d / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rivergraph: error:") and "'nope'" in err and err.count("\n") == 1
    assert main(["plot", "training", str(d / "missing.csv"), "--out", str(d / "x.png")]) == 2
    assert main(["plot", "hydrograph", "--sim", str(d / "g.csv"), "--gages", "123", "--out", str(d / "x.png")]) == 2
    assert "gauge(s) ['123']" in capsys.readouterr().err
    assert main(["plot", "n-vs-area", "--network", str(d / "net.npz"), "--out", str(d / "x.gif")]) == 2
    assert not (d / "x.png").exists() and not (d / "x.gif").exists()
    with pytest.raises(SystemExit):
        main(["plot", "map", "--help"])


def test_figure_contents(run):
    net, data, d = run
    lines = network_lines(net)
    assert len(lines) == len(net) and (lines.geom_type == "LineString").sum() == len(net) - net.n_outlets
    first = lines.geometry.iloc[0].coords
    assert first[0] == pytest.approx((net.attr("lon")[0], net.attr("lat")[0]))
    fig = plot_n_vs_area(net)
    assert "n = " in fig.axes[0].get_legend().get_texts()[1].get_text()
    sim = pd.DataFrame({"time": data["time"][:5], "gage": "1", "discharge_m3s": [1.0, 2, 3, 4, 5]})
    obs = sim.assign(discharge_m3s=[1.0, 2, 3, 4, 6])
    fig = plot_hydrographs(sim, obs)
    assert "NSE 0.93" in fig.axes[0].get_title()  # 1 - 1/14.8
    fig = plot_training([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    assert fig.axes[0].get_yscale() == "log"
