"""The NWM channel mode: readers, NWM Muskingum-Cunge physics, level-pool lakes, prescribed flows, the lagged
engine's mass balance and gradients, and parity with the NWM's own Lower Colorado streamflow."""
from __future__ import annotations

import math

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph.graph import NetworkError, build_network
from rivergraph.io.readers import nwm_side_slope, read_lakeparm
from rivergraph.models import MuskingumCunge
from rivergraph.models.nwm import NWMRouter
from rivergraph.physics.level_pool import LevelPool, level_from_outflow, level_pool_discharge, level_pool_step
from rivergraph.physics.nwm import (NWMChannel, compound_flow, compound_section, mc_step, normal_depth,
                                    nwm_celerity, nwm_coefficients, secant_depth)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import route_lower_colorado as example  # noqa: E402

D = torch.float64


def _channel(n=3, **kw) -> NWMChannel:
    base = dict(dx=2000.0, n=0.05, ncc=0.1, s0=1e-3, bw=5.0, tw=8.3, twcc=25.0, z=2.0)
    base.update(kw)
    return NWMChannel(**{k: torch.full((n,), float(v), dtype=D) for k, v in base.items()})


# ------------------------------------------------------------------------------------------------ readers
def test_nwm_side_slope_is_one_over_chslp():
    z = nwm_side_slope(np.array([0.5, 2.0, 0.0, np.nan]))
    assert z[:3].tolist() == [2.0, 0.5, 1.0] and np.isnan(z[3])   # ChSlp = 0 -> z = 1 as WRF-Hydro
    with pytest.raises(NetworkError, match="negative ChSlp.*reaches 7"):
        nwm_side_slope(np.array([0.5, -1.0]), ids=np.array([3, 7]))


def test_read_lakeparm_subset_and_missing(shared_data):
    path = shared_data / "lower_colorado_tx" / "domain" / "LAKEPARM.nc"
    lk = read_lakeparm(path, [5632093, 3762850])
    assert lk.index.tolist() == [5632093, 3762850] and (lk["LkArea"] > 0).all()
    assert (lk["WeirE"] > lk["OrificeE"]).all() and (lk["LkMxE"] > lk["WeirE"]).all()
    with pytest.raises(NetworkError, match="12345 not in LAKEPARM"):
        read_lakeparm(path, [12345])


# ------------------------------------------------------------------------------------------------ channel
def test_compound_section_continuous_at_bankfull_and_trapezoid_below():
    ch = _channel(2)
    bfd = ch.bfd
    assert torch.allclose(bfd, torch.full((2,), (8.3 - 5.0) / 4.0, dtype=D))
    eps = 1e-9
    q_lo, q_hi = compound_flow(bfd - eps, ch), compound_flow(bfd + eps, ch)
    A_lo = compound_section(bfd - eps, ch.bw, ch.z, bfd, ch.twcc, ch.ncc)[0]
    A, Ac = compound_section(bfd + eps, ch.bw, ch.z, bfd, ch.twcc, ch.ncc)[:2]
    assert torch.allclose(A_lo, A + Ac, rtol=1e-6)
    assert (q_hi < q_lo).all()   # the NWM's floodplain wetted perimeter (twcc + 2 h) drops R: a known kink
    h = torch.tensor([0.3, 0.6], dtype=D)
    A, Ac, P, Pc, R, _, _ = compound_section(h, ch.bw, ch.z, bfd, ch.twcc, ch.ncc)
    assert torch.allclose(A, (5.0 + 2.0 * h) * h) and (Ac == 0).all() and (Pc == 0).all()
    # no floodplain (TopWdthCC = 0): the trapezoid continues above bankfull (t-route hydraulic_geometry)
    ch0 = _channel(1, twcc=0.0)
    h = torch.tensor([2.0], dtype=D)
    assert torch.allclose(compound_section(h, ch0.bw, ch0.z, ch0.bfd, ch0.twcc, ch0.ncc)[0], (5.0 + 2.0 * h) * h)


def test_nwm_celerity_is_dq_da_in_the_channel():
    ch = _channel(3)
    h = torch.tensor([0.2, 0.5, 0.8], dtype=D, requires_grad=True)
    Q = compound_flow(h, ch)
    dQdh, = torch.autograd.grad(Q.sum(), h)
    ck, _ = nwm_celerity(h.detach(), ch)
    assert torch.allclose(ck, dQdh / (ch.bw + 2.0 * ch.z * h.detach()), rtol=1e-10)


def test_x_rule_and_k_floor():
    ch = _channel(3, dx=50.0)
    h = torch.tensor([0.2, 0.5, 2.0], dtype=D)
    ql = torch.zeros(3, dtype=D)
    C1, C2, C3, C4, K, X, _ = nwm_coefficients(h, torch.full((3,), 1e6, dtype=D), 0.25, ch, 300.0, ql)
    assert (X == 0.25).all() and (K >= 300.0).all()            # upper point: X floored at 0.25; K >= dt
    _, _, _, _, _, X0, _ = nwm_coefficients(h, torch.full((3,), 1e6, dtype=D), 0.0, ch, 300.0, ql)
    assert (X0 == 0.0).all()                                   # lower point: floor 0
    _, _, _, _, _, Xz, _ = nwm_coefficients(torch.zeros(3, dtype=D), torch.zeros(3, dtype=D), 0.25, ch, 300.0, ql)
    assert (Xz == 0.5).all()                                   # no celerity: X = 0.5
    assert torch.allclose(C1 + C2 + C3, torch.ones(3, dtype=D))


def test_secant_converges_to_the_nwm_tolerance_and_tightly():
    ch = _channel(4)
    q = torch.tensor([0.5, 2.0, 8.0, 40.0], dtype=D)                        # the last above bankfull
    depth = normal_depth(q * 0.8, ch)
    z = torch.zeros_like(q)
    for rtol, atol in ((0.01, 0.01), (1e-12, 1e-14)):
        sr = secant_depth(depth, ch, 300.0, q, q, q, z, rtol, atol)
        step = (sr.h_new - sr.h).abs()
        assert ((step <= rtol * sr.h) | (step < atol)).all()
    # steady inflow: the tight solution is normal depth and the outflow is the inflow
    Q, d, created, K, X = mc_step(q, q, q, z, depth, ch, 300.0, 1e-12, 1e-14)
    assert torch.allclose(Q, q, rtol=1e-9) and (created == 0).all()
    k = [0, 2, 3]
    assert torch.allclose(compound_flow(d[k], ch.index(torch.tensor(k))), q[k], rtol=1e-6)   # normal depth
    # 2 m3/s is within the compound flow's drop just above bankfull (several depths carry it): the NWM's
    # secant stops off the root there; the steady outflow does not depend on the depth
    assert torch.allclose(compound_flow(normal_depth(q, ch), ch), q, rtol=1e-9)
    assert normal_depth(q, ch)[1] < ch.bfd[1] < d[1]


def test_no_water_no_solve_and_negative_outflow_rule_reports_created_water():
    ch = _channel(2, dx=20000.0)
    z = torch.zeros(2, dtype=D)
    Q, d, created, K, X = mc_step(z, z, z, z, z, ch, 300.0)
    assert (Q == 0).all() and (d == 0).all()
    # same-step coupling with a sudden current upstream inflow on a slow reach: C2 < 0 makes the MC outflow
    # negative; the NWM returns max(C1 qup + C2 quc + C4, C1 qup + C3 qdp + C4) and that creates water
    quc = torch.tensor([50.0, 50.0], dtype=D)
    ql = torch.tensor([0.01, 0.01], dtype=D)
    Q, d, created, K, X = mc_step(z, quc, z, ql, torch.full((2,), 0.3, dtype=D), ch, 300.0)
    assert (Q >= 0).all() and (created > 0).all()
    C4 = ql * 300.0 / (K * (1 - X) + 150.0)
    assert torch.allclose(Q, C4)


# ------------------------------------------------------------------------------------------------ lakes
def _lake(**kw) -> LevelPool:
    base = dict(area_km2=0.5, max_elev=102.0, weir_elev=100.0, weir_c=0.4, weir_l=10.0, orifice_elev=98.0,
                orifice_c=0.1, orifice_a=1.0, dam_l=10.0)
    base.update(kw)
    return LevelPool(**{k: torch.tensor([float(v)], dtype=D) for k, v in base.items()})


def test_level_pool_discharge_branches():
    lp = _lake()
    H = torch.tensor([97.0], dtype=D)
    assert float(level_pool_discharge(H, lp)) == 0.0                                         # dead pool
    orifice = 0.1 * 1.0 * np.sqrt(2 * 9.81 * 1.0)
    assert np.isclose(float(level_pool_discharge(torch.tensor([99.0], dtype=D), lp)), orifice)
    q = 0.1 * np.sqrt(2 * 9.81 * 3.0) + 0.4 * 10.0 * 1.0 ** 1.5
    assert np.isclose(float(level_pool_discharge(torch.tensor([101.0], dtype=D), lp)), q)
    q = 0.1 * np.sqrt(2 * 9.81 * 5.0) + 0.4 * 10.0 * 2.0 ** 1.5 + 0.4 * 100.0 * 1.0
    assert np.isclose(float(level_pool_discharge(torch.tensor([103.0], dtype=D), lp)), q)   # overtop


def test_level_pool_step_storage_steady_state_and_inversion():
    lp = _lake()
    H = torch.tensor([100.5], dtype=D)
    inflow = torch.tensor([7.0], dtype=D)
    H1, out, release = level_pool_step(H, inflow, inflow, torch.zeros(1, dtype=D), lp, 300.0)
    assert np.isclose(float(lp.storage(H1) - lp.storage(H)), float(300.0 * inflow - release), rtol=1e-12)
    q_eq = level_pool_discharge(H, lp)
    H2, out2, _ = level_pool_step(H, q_eq, q_eq, torch.zeros(1, dtype=D), lp, 300.0)
    assert torch.allclose(H2, H) and torch.allclose(out2, q_eq)
    Hi = level_from_outflow(q_eq, lp)
    assert torch.allclose(Hi, H, atol=1e-9)


def test_level_pool_gradients_match_finite_differences():
    def f(wc, oa, area, H):
        lp = _lake()
        lp.weir_c, lp.orifice_a, lp.area_km2 = wc, oa, area
        Hn, q, _ = level_pool_step(H, torch.full((1,), 9.0, dtype=D), torch.full((1,), 9.0, dtype=D),
                                   torch.zeros(1, dtype=D), lp, 300.0)
        return torch.cat([Hn, q])

    args = [torch.tensor([v], dtype=D, requires_grad=True) for v in (0.4, 1.0, 0.5, 100.7)]
    assert torch.autograd.gradcheck(f, args)

    def g(wc, q):
        return level_from_outflow(q, _replace(_lake(), weir_c=wc))

    assert torch.autograd.gradcheck(g, [torch.tensor([0.4], dtype=D, requires_grad=True),
                                        torch.tensor([5.0], dtype=D, requires_grad=True)], atol=1e-6)


def _replace(lp, **kw):
    for k, v in kw.items():
        setattr(lp, k, v)
    return lp


# ------------------------------------------------------------------------------------------------ router
def _tiny():
    """1, 2 -> 3 -> 4 (3 and 4 lake 77, outlet 4) -> 5 -> 6 (outlet)."""
    ids = [1, 2, 3, 4, 5, 6]
    to = [3, 3, 4, 5, 6, 0]
    attrs = pd.DataFrame({"length_m": [2000.0, 3000, 1000, 1500, 2500, 2000], "slope": 1e-3, "n": 0.05,
                          "n_floodplain": 0.1, "bottom_width_m": 5.0, "top_width_m": 8.3,
                          "top_width_floodplain_m": 25.0, "side_slope": 2.0,
                          "waterbody": [-9999, -9999, 77, 77, -9999, -9999]})
    lakes = pd.DataFrame({"LkArea": [0.5], "LkMxE": [102.0], "WeirE": [100.0], "WeirC": [0.4], "WeirL": [10.0],
                          "OrificeE": [98.0], "OrificeC": [0.1], "OrificeA": [1.0], "Dam_Length": [10.0],
                          "ifd": [0.9]}, index=pd.Index([77], name="lake_id"))
    return build_network(ids, to, attrs), lakes


def _forcing(T=6):
    t = torch.arange(T, dtype=D).unsqueeze(1)
    return (torch.tensor([[1.0, 2.0, 0.3, 0.2, 0.5, 0.1]], dtype=D) * (1.0 + 0.5 * torch.sin(t))).clone()


@pytest.mark.parametrize("coupling", ["lagged", "implicit"])
def test_router_lake_node_nan_inside_and_balance(coupling):
    net, lakes = _tiny()
    r = NWMRouter(net, dt=300.0, forcing_dt=3600.0, lakes=lakes, coupling=coupling)
    Q = r(_forcing())
    assert torch.isnan(Q[:, 2]).all() and torch.isfinite(Q[:, [0, 1, 3, 4, 5]]).all()
    b = r.balance
    assert abs(b.relative_error) < 1e-10 and b.created_m3 == 0.0
    assert b.lake_end_m3 != b.lake_start_m3 and np.isclose(b.inflow_m3, 6 * 3600.0 * float(_forcing().sum(1).mean()))
    # the lake's outflow leaves at its outlet (4) and is routed on by 5 -> 6
    assert (Q[:, 3] > 0).all() and (Q[:, 4] > 0).all() and (Q[:, 5] > 0).all()


def test_router_lateral_dropped_as_nwm_is_reported():
    net, lakes = _tiny()
    r = NWMRouter(net, dt=300.0, forcing_dt=3600.0, lakes=lakes, lake_lateral=False)
    r(_forcing())
    assert np.isclose(r.balance.dropped_m3, 3600.0 * float(_forcing()[:, 2:4].sum()))


def test_router_gradients_match_finite_differences():
    net, lakes = _tiny()
    r = NWMRouter(net, dt=300.0, forcing_dt=900.0, lakes=lakes, depth_rtol=1e-12, depth_atol=1e-14)
    q = _forcing(3)
    n = torch.full((6,), 0.05, dtype=D, requires_grad=True)
    wc = torch.tensor([0.4], dtype=D, requires_grad=True)

    def loss(n_, wc_):
        return r(q, n=n_, lake_params={"weir_c": wc_}, balance=False)[:, 5].sum()

    L = loss(n, wc)
    gn, gw = torch.autograd.grad(L, [n, wc])
    assert gn.abs().sum() > 0 and gw.abs().sum() > 0
    for k in (0, 4):
        e = torch.zeros(6, dtype=D)
        e[k] = 1e-6
        fd = (loss(n.detach() + e, wc.detach()) - loss(n.detach() - e, wc.detach())) / 2e-6
        assert np.isclose(float(gn[k]), float(fd), rtol=2e-3, atol=1e-6), (k, float(gn[k]), float(fd))
    fd = (loss(n.detach(), wc.detach() + 1e-6) - loss(n.detach(), wc.detach() - 1e-6)) / 2e-6
    assert np.isclose(float(gw[0]), float(fd), rtol=2e-3)


@pytest.mark.parametrize("engine", ["torch", "compiled"])
def test_every_channel_step_without_gathers_is_the_gathered_one(engine, monkeypatch):
    """Without lakes or prescribed flows every position is a channel reach: the lagged step then skips its gathers
    and scatters (lagged._every_channel); flows, depths and books are those of the gathered step, the gradients to
    rounding (autograd sums the parts of an input in another order)."""
    import rivergraph.engine.lagged as lagged

    net, _ = _tiny()
    out = []
    for every in (True, False):
        monkeypatch.setattr(lagged, "_every_channel", lambda g, c, every=every: every and g.n == len(g.channel))
        r = NWMRouter(net, dt=300.0, forcing_dt=900.0, engine=engine)
        n = torch.full((6,), 0.05, dtype=D, requires_grad=True)
        Q = r(_forcing(3), n=n)
        out.append((Q.detach(), r.state.depth, torch.autograd.grad(Q.square().sum(), n)[0], r.balance))
    (Qa, da, ga, ba), (Qb, db, gb, bb) = out
    assert torch.equal(Qa, Qb) and torch.equal(da, db) and ga.abs().sum() > 0
    assert torch.allclose(ga, gb, rtol=1e-13, atol=0), (ga - gb).abs().max()
    assert ba.residual_m3 == bb.residual_m3 and ba.muskingum_end_m3 == bb.muskingum_end_m3


def test_prescribed_flow_routed_downstream_with_gradients():
    net, lakes = _tiny()
    r = NWMRouter(net, dt=300.0, forcing_dt=3600.0, lakes=lakes, prescribed=[3])   # the lake outlet
    q = _forcing(4)
    pf = torch.tensor([[3.0], [4.0], [5.0], [4.0]], dtype=D, requires_grad=True)
    n = torch.full((6,), 0.05, dtype=D, requires_grad=True)
    Q = r(q, prescribed_flow=pf, n=n)
    assert torch.allclose(Q[:, 3], pf.detach()[:, 0])
    gp, gn = torch.autograd.grad(Q[:, 5].sum(), [pf, n])
    assert (gp != 0).any() and gn[4] != 0 and gn[0] == 0      # reach 1 drains into the prescribed lake
    assert abs(r.balance.relative_error) < 1e-10 and r.balance.prescribed_net_m3 != 0
    with pytest.raises(NetworkError, match="lake-internal"):
        NWMRouter(net, lakes=lakes, prescribed=[2])
    with pytest.raises(ValueError, match="prescribed_flow must be"):
        r(q)


def test_router_bad_input_names_reaches():
    net, lakes = _tiny()
    r = NWMRouter(net, dt=300.0, forcing_dt=3600.0)
    n = torch.full((6,), 0.05, dtype=D)
    n[4] = 0.0
    with pytest.raises(NetworkError, match=r"'n'.*reaches 5"):
        r(_forcing(2), n=n)
    with pytest.raises(TypeError, match="routing runs in float32 or float64"):
        r(_forcing(2).half())
    assert torch.isfinite(r(-0.01 * _forcing(2))).all()  # the NWM routes losses (its C4 guard): no error
    two = lakes.copy()
    bad = net.attrs.copy()
    bad["waterbody"] = [-9999, 77, 77, 77, -9999, -9999]
    net2 = build_network([1, 2, 3, 4, 5, 6], [3, 0, 4, 5, 6, 0], bad)
    with pytest.raises(NetworkError, match="lake 77: 2 member reaches leave it"):
        NWMRouter(net2, lakes=two)


def test_muskingum_cunge_mode_nwm_delegates():
    net, lakes = _tiny()
    r = MuskingumCunge(net, dt=300.0, forcing_dt=3600.0, mode="nwm", output="end", nwm={"lakes": lakes})
    direct = NWMRouter(net, dt=300.0, forcing_dt=3600.0, lakes=lakes)
    q = _forcing(3)
    assert torch.equal(torch.nan_to_num(r(q)), torch.nan_to_num(direct(q))) and r.balance is not None
    Q2 = r(q, outputs=[5])
    assert Q2.shape == (3, 1)


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.slow
def test_parity_with_the_nwm_lower_colorado(lc, tmp_path):
    """Issue 14's figures: exact inflow, first file's state, dt 300 s, 27 h. (a) lake outlets prescribed
    from the NWM, (b) level-pool lakes from LAKEPARM, (c) USGS gauges. 25-55 s on one core."""
    import xarray as xr

    net, data = lc
    ref = data["streamflow"].double()[1:28]
    times = data["time"][1:28]
    Qa, ra = example.run_variant(net, data, "prescribed")
    Qb, rb = example.run_variant(net, data, "level_pool")
    below = example.below_lakes(net, rb.nwm.lake_outlets)
    fa, fb = (example.parity_figures(Q, ref, below) for Q in (Qa, Qb))
    assert fa["reaches"] == 10_907 and fa["varying"] == 1_549
    assert fa["median_nse"] >= 0.98 and fa["max_abs_dq"] <= 0.2, fa              # measured 0.991, 0.117
    assert fb["median_nse"] >= 0.95 and fb["median_nse_below_lake"] >= 0.95, fb  # measured 0.983, 1.000
    for r in (ra, rb):
        assert r.balance.created_m3 == 0.0 and abs(r.balance.relative_error) < 1e-9
    obs = example.observations_at(data["usgs_obs"], times)
    g = example.gauge_figures(Qa, ref, data["gauge_reach"], obs)
    assert g["gauges"] >= 50 and abs(g["mae_median"] - g["mae_nwm_median"]) < 0.05, g
    # the CF file the example writes
    from rivergraph.io import write_discharge

    path = write_discharge(Qa, net, times, tmp_path / "nwm_parity_prescribed.nc")
    with xr.open_dataset(path) as ds:
        assert ds["streamflow"].dims == ("time", "feature_id") and ds.sizes["feature_id"] == 11_248
        assert str(ds["time"].values[0]).startswith("2021-08-23T14:00")
        np.testing.assert_allclose(ds["streamflow"].sel(feature_id=net.ids[5]).values, Qa[:, 5].numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ checkpointing
@pytest.mark.parametrize("coupling", ["lagged", "implicit"])
def test_checkpointed_time_loop_same_values_gradients_and_books(coupling):
    """checkpoint_every: outputs and the mass balance equal the plain loop's (torch.equal: the recomputation
    repeats the same operations; the books kept once), the gradients of lateral inflow, prescribed flow, channel
    and lake parameters to rounding (an input several sub-steps use gets its parts summed segment by segment,
    in another order: <= 1.3e-14 of the largest measured), and autograd keeps far less (bytes saved for
    backward, counted by a hook)."""
    net, lakes = _tiny()

    def run(k):
        r = NWMRouter(net, dt=300.0, forcing_dt=900.0, lakes=lakes, prescribed=[5], coupling=coupling,
                      checkpoint_every=k)
        q = _forcing(8).requires_grad_(True)
        pf = torch.linspace(0.5, 1.5, 8, dtype=D).reshape(8, 1).requires_grad_(True)
        n = torch.full((6,), 0.05, dtype=D, requires_grad=True)
        wc = torch.tensor([0.4], dtype=D, requires_grad=True)
        saved = [0]

        def pack(x):
            saved[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            Q = r(q, prescribed_flow=pf, n=n, lake_params={"weir_c": wc})
        loss = (torch.nan_to_num(Q) * torch.arange(6, dtype=D)).sum()
        return [Q.detach(), *torch.autograd.grad(loss, [q, pf, n, wc])], r.balance, saved[0]

    plain, b0, s0 = run(None)
    for k in (1, 5, 24, 100, "auto"):  # 24 sub-steps: one segment at 24 and above
        ck, b1, s1 = run(k)
        assert torch.equal(torch.nan_to_num(plain[0]), torch.nan_to_num(ck[0]))
        for x, y in zip(plain[1:], ck[1:]):
            assert (x - y).abs().max() <= 1e-13 * x.abs().max() and x.abs().max() > 0
        assert vars(b0) == vars(b1) and b0.lake_end_m3 != b0.lake_start_m3
        if k == "auto" or k < 24:
            assert s1 < s0 / 3, (k, s1, s0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        NWMRouter(net, checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        MuskingumCunge(net, mode="nwm", checkpoint_every="sometimes")
    with pytest.raises(ValueError):
        MuskingumCunge(net, mode="nwm", checkpoint_every="auto", memory_budget="6 parsecs")
    assert MuskingumCunge(net, mode="nwm", checkpoint_every=3).nwm.checkpoint_every == 3
    r = MuskingumCunge(net, mode="nwm", checkpoint_every="auto", memory_budget="1GiB")
    assert (r.nwm.checkpoint_every, r.nwm.memory_budget) == ("auto", "1GiB")


def test_auto_checkpoint_rule_of_the_time_loop():
    """lagged.auto_every: the whole graph where it fits the budget; else k = sqrt(T carry / step), the minimum of
    (T / k) carry + k step over k (checked against every k); a warning where even that is over the budget; and
    saved_bytes counts each saved tensor once."""
    from rivergraph.engine.lagged import auto_every, saved_bytes

    T, step, carry = 8760, 290 * 4 * 1000, 3 * 4 * 1000
    assert auto_every(T, step, carry, budget=T * step) == T
    k = auto_every(T, step, carry, budget=None)
    cost = lambda j: -(-T // j) * carry + j * step  # noqa: E731
    assert k == round(math.sqrt(T * carry / step)) and cost(k) <= min(cost(j) for j in range(1, 200)) * 1.01
    with pytest.warns(UserWarning, match="memory budget"):
        auto_every(T, step, carry, budget=cost(k) // 2)
    x = torch.ones(1000, dtype=D, requires_grad=True)
    (y, nbytes) = saved_bytes(lambda a: (a * a).sum(), x)  # a * a saves x twice: counted once
    assert nbytes == 8000 and float(y) == 1000.0


def test_checkpointed_time_loop_on_the_lower_colorado(lc):
    """The real network with its LAKEPARM level pools, 2 h of the NWM's lateral inflow from the first file's state
    (24 sub-steps of 300 s): checkpointed every 5 sub-steps, the outflows equal the plain loop's and the
    gradients of a gauge loss to the lateral inflow and Manning's n agree to rounding (measured: equal, on 9,724 and
    6,243 nonzero entries)."""
    net, data = lc
    q0 = data["q_lateral"].double()[1:3]
    Q0 = data["streamflow"].double()[0]
    gauges = torch.as_tensor(data["gauge_reach"].to_numpy(dtype=np.int64))
    n0 = torch.as_tensor(net.attrs["n"].to_numpy(copy=True), dtype=D)

    def run(k):
        router = example.nwm_router(net, data, "level_pool")
        router.nwm.checkpoint_every = k
        q, n = q0.clone().requires_grad_(True), n0.clone().requires_grad_(True)
        Q = router(q, Q0=Q0, n=n)
        loss = torch.nan_to_num(Q[:, gauges]).square().sum()
        return [Q.detach(), *torch.autograd.grad(loss, [q, n])], router.balance

    (Qp, gqp, gnp), bp = run(None)
    (Qc, gqc, gnc), bc = run(5)
    assert torch.equal(torch.nan_to_num(Qp), torch.nan_to_num(Qc)) and vars(bp) == vars(bc)
    for x, y in ((gqp, gqc), (gnp, gnc)):
        assert x.abs().max() > 0 and (x - y).abs().max() <= 1e-12 * x.abs().max()
