"""rivergraph.runoff.providers and .lstm_provider: precomputed and LSTM lateral inflow."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import runoff as R

from runoff_fixtures import ATTRS, RAPID_QEXT, RUN_DIR, _frame, _require, needs_model
from runoff_fixtures import _model_data, model  # noqa: F401  (pytest fixtures)


# ============================================================================ providers
def test_precomputed_runoff_netcdf_csv(tmp_path):
    _require(RAPID_QEXT)
    import xarray as xr

    p = R.PrecomputedRunoff.from_file(RAPID_QEXT)
    assert isinstance(p, R.RunoffProvider)
    ds = xr.open_dataset(RAPID_QEXT)
    times = pd.DatetimeIndex(ds.time.values[3:9])
    lat = p.lateral_inflow(times, [50, 10])
    assert lat.shape == (6, 2) and lat.dtype == torch.float32
    np.testing.assert_allclose(lat.numpy(), ds.Qext.sel(rivid=[50, 10]).values[3:9])
    with pytest.raises(R.RunoffError, match="reach id\\(s\\) 60"):
        p.lateral_inflow(times, [10, 60])
    with pytest.raises(R.RunoffError, match="1 requested time\\(s\\) are not on the time axis.*1970-01-01 01:00"):
        p.lateral_inflow(pd.DatetimeIndex(["1970-01-01 00:00", "1970-01-01 01:00"]), [10])
    # CSV round trip (wide: time column, reach-id columns)
    csv = tmp_path / "qlat.csv"
    p.data.rename_axis("time").to_csv(csv)
    c = R.PrecomputedRunoff.from_csv(csv)
    assert c.reach_ids == [10, 20, 30, 40, 50]
    torch.testing.assert_close(c.lateral_inflow(times, [50, 10]), lat)
    with pytest.raises(R.RunoffError, match="no time column 'date'"):
        R.PrecomputedRunoff.from_csv(csv, time_col="date")
    with pytest.raises(R.RunoffError, match="unknown runoff file type"):
        R.PrecomputedRunoff.from_file(tmp_path / "q.xlsx")
    nan = p.data.copy()
    nan.iloc[4, 1] = np.nan
    with pytest.raises(R.RunoffError, match="NaN.*20"):
        R.PrecomputedRunoff(nan).lateral_inflow(times, [10, 20])


def test_precomputed_runoff_parquet(tmp_path):
    pd.io.parquet.get_engine("auto")  # pyarrow is a dependency: a missing parquet engine fails here
    df = pd.DataFrame({"time": pd.date_range("2001-01-01", periods=3, freq="h"), "7": [1.0, 2.0, 3.0]})
    df.to_parquet(tmp_path / "q.parquet")
    p = R.PrecomputedRunoff.from_file(tmp_path / "q.parquet")
    assert p.lateral_inflow(p.times[1:], [7]).tolist() == [[2.0], [3.0]]


@needs_model
def test_lstm_runoff_gradients_and_mapping():
    model = R.NeuralHydrologyLSTM.from_run_dir(RUN_DIR)  # its requires_grad flags get changed here
    T = 72
    forcing = {"a": _frame(T, APCP_surface=np.r_[np.zeros(20), np.full(10, 2.0), np.zeros(T - 30)]),
               "b": _frame(T)}
    area = pd.Series({"a": 100.0, "b": 36.0})
    table = pd.DataFrame({"catchment_id": ["a", "a", "b"], "reach_id": [1, 2, 2], "weight": [0.5, 0.5, 1.0]})
    mapping = R.CatchmentReachMap.from_table(table, ["b", "a"], [1, 2, 3])
    prov = R.LSTMRunoff(model, forcing, ATTRS, area, mapping=mapping, trainable="head")
    assert isinstance(prov, R.RunoffProvider)
    times = forcing["a"].index[24:48]
    lat = prov.lateral_inflow(times, [3, 2, 1])
    assert lat.shape == (24, 3) and (lat[:, 0] == 0).all()
    q = prov.discharge(times).detach()  # [T, C] m3/s
    r = prov.runoff(times).detach()  # mm/h
    torch.testing.assert_close(q, r * torch.tensor([100.0, 36.0]) / 3.6)
    torch.testing.assert_close(lat[:, 2].detach(), 0.5 * q[:, 0])
    torch.testing.assert_close(lat[:, 1].detach(), 0.5 * q[:, 0] + q[:, 1])
    lat.sum().backward()
    assert model.head.net[0].weight.grad is not None and model.head.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.lstm.parameters())
    model.zero_grad(set_to_none=True)
    # the cached body gives identical outputs
    torch.testing.assert_close(prov.lateral_inflow(times, [3, 2, 1]).detach(), lat.detach())
    # 'all': the LSTM body gets gradients too
    prov_all = R.LSTMRunoff(model, forcing, ATTRS, area, trainable="all", warmup=12)
    prov_all.lateral_inflow(times, ["a", "b"]).sum().backward()
    assert model.lstm.weight_hh_l0.grad is not None and model.lstm.weight_hh_l0.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    prov_none = R.LSTMRunoff(model, forcing, ATTRS, area, trainable="none")
    assert not any(p.requires_grad for p in prov_none.parameters())
    assert not prov_none.lateral_inflow(times, ["a", "b"]).requires_grad
    with pytest.raises(R.RunoffError, match="catchment id\\(s\\) 'b' are not reach ids"):
        prov_none.lateral_inflow(times, ["a"])
    with pytest.raises(R.RunoffError, match="not on the forcing time axis"):
        prov_none.lateral_inflow(pd.DatetimeIndex(["1999-01-01"]), ["a", "b"])
    with pytest.raises(R.RunoffError, match="no catchment area for catchment.*'b'"):
        R.LSTMRunoff(model, forcing, ATTRS, pd.Series({"a": 1.0}))
    # without areas: depth rates only (a route run converts them with its own areas)
    rates = R.LSTMRunoff(model, forcing, ATTRS, None, trainable="none")
    torch.testing.assert_close(rates.runoff(times), prov_none.runoff(times))
    with pytest.raises(R.RunoffError, match="no catchment areas were given"):
        rates.lateral_inflow(times, ["a", "b"])


def _lower_colorado_small():
    """A real 12-reach NWM Lower Colorado subnetwork (upstream of USGS 08131400) and each reach's local
    catchment area (km2): drainage area minus the upstream reaches' (floored at 0.05 km2)."""
    from rivergraph.datasets import load_lower_colorado

    net, _ = load_lower_colorado()
    g = net.gauges()
    sub = net.upstream_subnetwork([net.ids[int(g.index[g == "08131400"][0])]])
    A, down = sub.attr("drainage_area_km2"), sub.downstream
    upstream = np.zeros(len(sub))
    np.add.at(upstream, down[down >= 0], A[down >= 0])
    return sub, pd.Series(np.clip(A - upstream, 0.05, None), index=sub.ids.tolist())


@needs_model
def test_lstm_head_finetunes_end_to_end_through_routing():
    """LSTMRunoff(trainable='head') -> lateral inflow [T, N] -> Muskingum-Cunge (trapezoid, Route_Link
    channels) on a real 12-reach subnetwork -> loss at the outlet. The target is the routed outlet flow of
    a perturbed head, so it is reachable; a few Adam steps on the head must reduce the loss."""
    from rivergraph.models.router import MuskingumCunge

    model = R.NeuralHydrologyLSTM.from_run_dir(RUN_DIR)  # own copy: requires_grad flags change here
    net, area = _lower_colorado_small()
    ids = net.ids.tolist()
    T = 120
    idx = pd.date_range("2001-01-01", periods=T, freq="h", tz="UTC")
    temp = 283.0 + 5.0 * np.sin(2 * np.pi * np.arange(T) / 24)
    forcing = {}
    for k, r in enumerate(ids):  # a 12-hour storm per catchment, later and wetter upstream-to-downstream
        p = np.zeros(T)
        p[40 + 5 * k:52 + 5 * k] = 1.0 + 0.2 * k
        forcing[r] = pd.DataFrame({"APCP_surface": p, "TMP_2maboveground": temp}, index=idx)
    attrs = pd.DataFrame({"elev_mean": net.attr("elevation_m"), "slope_mean": 20.0}, index=ids)
    prov = R.LSTMRunoff(model, forcing, attrs, area, trainable="head")
    router = MuskingumCunge(net, dt=3600.0, mode="trapezoid")
    times = idx[48:]  # 48 h LSTM spin-up (stateful), 72 routed hours
    outlet = net.outlets

    def outlet_flow() -> torch.Tensor:
        return router(prov.lateral_inflow(times, ids).double(), outputs=outlet)[:, 0]

    head = model.head.net[0]
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    with torch.no_grad():  # reachable target: the same chain with a perturbed head
        head.weight.mul_(1.3)
        head.bias.add_(0.05)
        target = outlet_flow()
        head.weight.copy_(w0)
        head.bias.copy_(b0)
    assert (target > 0).all()

    def loss_fn() -> torch.Tensor:
        return ((outlet_flow() - target) ** 2).mean() / target.var()

    loss = loss_fn()
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0
    assert torch.isfinite(head.bias.grad).all() and head.bias.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.lstm.parameters())
    # the gradient through LSTM head -> mapping -> router is the true one (central difference on the bias)
    eps = 1e-3
    with torch.no_grad():
        head.bias.add_(eps)
        up = loss_fn().item()
        head.bias.sub_(2 * eps)
        dn = loss_fn().item()
        head.bias.copy_(b0)
    assert head.bias.grad.item() == pytest.approx((up - dn) / (2 * eps), rel=2e-2)

    opt = torch.optim.Adam([p for p in prov.parameters() if p.requires_grad], lr=3e-3)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.head.parameters()}
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn().item()
    assert np.isfinite(losses).all()
    assert final < 0.3 * losses[0], losses + [final]
    assert all(p.grad is None for p in model.lstm.parameters())


@needs_model
def test_lstm_runoff_chunks_carry_state_and_spinup(model):
    """Consecutive chunks continue the LSTM from the carried state: equal to one call over the period;
    a cyclic spin-up starts from the state after running the spin-up period, and changes the result."""
    T = 96
    rng = np.random.default_rng(3)
    forcing = {"a": _frame(T, APCP_surface=rng.gamma(0.3, 2.0, T)), "b": _frame(T)}
    area = {"a": 10.0, "b": 20.0}
    prov = R.LSTMRunoff(model, forcing, ATTRS, area, trainable="none")
    times = prov.times
    whole = prov.lateral_inflow(times, ["b", "a"])
    rows = prov.chunks(times, ["b", "a"])
    parts = [rows(t0, min(T, t0 + 25)) for t0 in range(0, T, 25)]
    assert prov._carry[0] == T  # the last chunk ended at the end: nothing was recomputed from the start
    torch.testing.assert_close(torch.cat(parts).float(), whole, rtol=1e-5, atol=1e-6)
    # a request before the carried position recomputes from the start (same values)
    torch.testing.assert_close(prov.lateral_inflow(times[10:20], ["b", "a"]), whole[10:20], rtol=1e-5, atol=1e-6)
    spun = R.LSTMRunoff(model, forcing, ATTRS, area, trainable="none", spinup_cycles=2, spinup_steps=48)
    h0, c0 = spun.initial_state()
    with torch.no_grad():
        _, st1 = model.hidden_sequence(spun.x_dyn[:, :48], spun.x_stat)
        _, (h2, c2) = model.hidden_sequence(spun.x_dyn[:, :48], spun.x_stat, st1)
        ys, _ = model(spun.x_dyn, spun.x_stat, (h2, c2))
    torch.testing.assert_close(h0, h2)
    torch.testing.assert_close(spun.runoff(times)[:, 0], ys[0, :, 0])
    assert not torch.allclose(spun.runoff(times), prov.runoff(times))
    with pytest.raises(R.RunoffError, match="spin-up cycles need"):
        R.LSTMRunoff(model, forcing, ATTRS, area, spinup_cycles=1, warmup=12)


@needs_model
def test_lstm_runoff_windowed_mode(model):
    T = 1010
    rng = np.random.default_rng(2)
    forcing = {"a": _frame(T, APCP_surface=rng.gamma(0.2, 1.0, T))}
    prov = R.LSTMRunoff(model, forcing, ATTRS, {"a": 10.0}, mode="windowed", trainable="none")
    times = forcing["a"].index[[998, 1005, 1009]]
    got = prov.runoff(times)[:, 0]
    _, xd, xs = model.inputs_from_frames(forcing, ATTRS)
    want = model.predict_windowed(xd, xs, end_index=[998, 1005, 1009])[0, :, 0]
    torch.testing.assert_close(got, want)
    with torch.no_grad():
        torch.testing.assert_close(got[0], model(xd, xs)[0][0, 998, 0])  # first window = sequential
    with pytest.raises(R.RunoffError, match="windowed mode needs 998 steps"):
        prov.runoff(forcing["a"].index[[10]])


