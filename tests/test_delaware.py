"""The real-gauge training pipeline on the Delaware River Basin (NHM): splits, held daily forcing, split report.

A reduced case of examples/configs/delaware_real.yaml: the first 40 days, a few small gauge trees, 2 epochs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from rivergraph.graph.network import NetworkError
from rivergraph.io.nhm import read_nhm, read_prms_gauges
from rivergraph.physics.channels import bankfull_power_law_p
from rivergraph.training.gauge_splits import daily_means, gauge_trees, holdout_by_tree, split_scores

# Brandywine Creek at Wilmington (tree of 9 gauges) and three single-gauge trees
BRANDYWINE = "01481500"
SMALL = ["01477000", "01480000", "01478000"]


@pytest.fixture(scope="module")
def drb(shared_data):
    return shared_data / "delaware_nhm_2yr"


@pytest.fixture(scope="module")
def net(drb):
    return read_nhm(drb / "raw")


@pytest.fixture(scope="module")
def gauges(net, drb):
    g = read_prms_gauges(drb / "raw" / "drb_2yr_gage_poi_obs.nc", net)
    return g.select(g.complete)


def test_gauge_trees_and_holdout(net, gauges):
    root = gauge_trees(net, gauges.positions)
    ids = gauges.ids
    assert len(set(root)) == 26                                   # 26 independent trees among the 101 gauges
    trenton = int(np.flatnonzero(ids == "01463500")[0])
    assert (root == trenton).sum() == 51                          # the Delaware at Trenton holds 51 nested gauges
    held = holdout_by_tree(net, gauges.positions, ids, [BRANDYWINE])
    assert held.sum() == 9
    # held-out reaches never drain to a training gauge
    assert not (net.upstream_mask(gauges.positions[held]) & net.upstream_mask(gauges.positions[~held])).any()
    nested = ids[(root == trenton) & (np.arange(len(ids)) != trenton)][0]
    with pytest.raises(NetworkError, match="nested in another gauge's tree"):
        holdout_by_tree(net, gauges.positions, ids, [nested])
    with pytest.raises(NetworkError, match="not among the selected gauges"):
        holdout_by_tree(net, gauges.positions, ids, ["00000000"])


def test_bankfull_power_law_and_scores():
    p = bankfull_power_law_p(np.array([20.0, 10.0]), np.array([1.0, 0.5]), 0.65)
    np.testing.assert_allclose(p * np.array([1.0, 0.5]) ** 0.65, [20.0, 10.0])     # T(d_bf) = W_bf
    with pytest.raises(ValueError):
        bankfull_power_law_p(np.array([20.0]), np.array([0.0]), 0.5)
    x = np.arange(48.0)[:, None]
    np.testing.assert_allclose(daily_means(x, 24)[:, 0], [11.5, 35.5])
    obs = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 4.0]])
    tab = split_scores({"m": obs.copy()}, obs, ["a", "b"], np.array([False, True]), {"all": slice(0, 3)})
    assert tab["nse"].tolist() == [1.0, 1.0] and tab["gauges"].tolist() == ["train", "holdout"]
    assert tab["volume_ratio"].tolist() == [1.0, 1.0]


def _trim(src, dst, days):
    import xarray as xr

    ds = xr.open_dataset(src).isel(time=slice(0, days)).load()
    ds.to_netcdf(dst)
    return str(dst)


@pytest.mark.slow
def test_reduced_delaware_config(tmp_path, drb, monkeypatch):
    """Train / temporal / spatial split end to end through the config: the report's numbers exist and are scored on
    the right gauges; the trainer never sees the test rows or the held-out gauges."""
    from rivergraph.config.train import TrainConfig as Config
    from rivergraph.runs.train import run_training

    days = 40
    cfg = yaml.safe_load(open("examples/configs/delaware_real.yaml"))
    cfg["forcing"]["source"] = _trim(drb / "derived" / "seg_lateral_inflow.nc", tmp_path / "lat.nc", days)
    cfg["observations"]["source"] = _trim(drb / "raw" / "drb_2yr_gage_poi_obs.nc", tmp_path / "obs.nc", days)
    cfg["evaluation"]["reference"] = _trim(drb / "derived" / "seg_outflow.nc", tmp_path / "out.nc", days)
    net = read_nhm(drb / "raw")
    g = read_prms_gauges(drb / "raw" / "drb_2yr_gage_poi_obs.nc", net)
    pos = g.positions[np.isin(g.ids, [BRANDYWINE] + SMALL)]
    want = [i for i, p in zip(g.ids, g.positions) if net.upstream_mask(pos)[p]]
    cfg["gauges"] = {"ids": want, "complete_only": True, "holdout_roots": [BRANDYWINE]}
    cfg["training"].update(epochs=2, train_end="1979-01-31", warmup_hours=120, patience=2)
    cfg["output"].update(dir=str(tmp_path / "run"), plots=True, sensitivity_probes=1)
    seen = {}
    import rivergraph.runs.train as runs

    real_train = runs.train

    def spy(pnet, net_, q, obs, gauges_, **kw):
        seen.update(T=q.shape[0], G=len(gauges_), gauges=gauges_)
        return real_train(pnet, net_, q, obs, gauges_, **kw)

    monkeypatch.setattr(runs, "train", spy)
    assert run_training(Config.model_validate(cfg), progress=False) == 0
    assert seen["T"] == 30 * 24                                   # only January 1979 (hourly steps) is trained on
    tab = pd.read_csv(tmp_path / "run" / "split_scores.csv", dtype={"gage": str})
    held = set(tab.loc[tab.gauges == "holdout", "gage"])
    assert len(held) == 9 and BRANDYWINE in held
    assert seen["G"] == tab.loc[tab.gauges == "train", "gage"].nunique() == 3
    assert set(tab["model"]) == {"learned", "network_n", "reference"}
    assert set(tab["period"]) == {"train", "test"}
    assert np.isfinite(tab["nse"]).all()
    s = json.loads((tmp_path / "run" / "split_summary.json").read_text())
    assert s["counts"] == {"train_gauges": 3, "holdout_gauges": 9, "train_days": 25, "test_days": 10}
    z = np.load(tmp_path / "run" / "daily_discharge.npz")
    assert z["sim_learned"].shape == (days, 12) and z["observed"].shape == (days, 12)
    # PRMS's routed flow is carried over unchanged (daily m3/s)
    from rivergraph.io.nhm import read_segment_series

    _, ref = read_segment_series(tmp_path / "out.nc", net)
    gpos = np.array([int(np.flatnonzero(g.ids == x)[0]) for x in z["gage"]])
    np.testing.assert_allclose(z["sim_reference"], ref[:, g.positions[gpos]])
    for f in ("hydrographs_holdout.png", "n_vs_latitude.png", "n_vs_area.png"):
        assert (tmp_path / "run" / f).is_file()
