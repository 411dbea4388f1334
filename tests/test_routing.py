"""Muskingum / Muskingum-Cunge routing: parity with RAPID2, gradients, mass balance, state, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.datasets import load_rapid_sandbox
from rivergraph.graph.network import NetworkError
from rivergraph.models.router import MuskingumCunge, RoutingState
from rivergraph.engine.schedule import Schedule
from rivergraph.engine.sweep import steady_state

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def sandbox():
    return load_rapid_sandbox()


def _storm(T: int, N: int, seed: int = 0, base: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=torch.float64)[:, None]
    peak = torch.rand(N, generator=g, dtype=torch.float64) * 5.0
    when = torch.rand(N, generator=g, dtype=torch.float64) * T / 2
    return base + peak * torch.exp(-0.5 * ((t - when) / 3.0) ** 2)


# ------------------------------------------------------------------ parity with RAPID2
def test_rapid_sandbox_parity(sandbox):
    net, d = sandbox
    r = MuskingumCunge(net, dt=d["dt_routing_s"], forcing_dt=d["dt_s"], mode="static", positivity=False,
                       output="rapid")
    Q0 = d["qinit"].double()
    I0 = torch.zeros_like(Q0)
    down = torch.as_tensor(net.downstream)
    has = down >= 0
    I0.index_add_(0, down[has], Q0[has])
    Q = r(d["qext"].double(), state=RoutingState(Q0, I0))
    err = (Q - d["qout_ref"].double()).abs().max().item()
    assert err < 1e-3, err
    assert (r.state.Q - d["qfinal_ref"]).abs().max().item() < 1e-3
    assert abs(r.balance.relative_error) < 1e-12


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("mode,scheme", [("static", "conservative"), ("trapezoid", "conservative"),
                                         ("trapezoid", "standard"), ("power_law", "conservative")])
def test_gradcheck(small, mode, scheme):
    N = len(small)
    q = (_storm(5, N) + 0.1).requires_grad_()
    r = MuskingumCunge(small, dt=1800.0, forcing_dt=3600.0, mode=mode, scheme=scheme)
    if mode == "static":
        k = torch.full((N,), 3600.0, dtype=torch.float64, requires_grad=True)
        x = torch.full((N,), 0.2, dtype=torch.float64, requires_grad=True)
        args, f = (q, k, x), lambda q, k, x: r(q, k=k, x=x, balance=False)
    elif mode == "trapezoid":
        n = torch.tensor(small.attrs["n"].to_numpy(np.float64), requires_grad=True)
        B = torch.tensor(small.attrs["bottom_width_m"].to_numpy(np.float64), requires_grad=True)
        args, f = (q, n, B), lambda q, n, B: r(q, n=n, bottom_width=B, balance=False)
    else:
        n = torch.full((N,), 0.05, dtype=torch.float64, requires_grad=True)
        p = torch.full((N,), 20.0, dtype=torch.float64, requires_grad=True)
        qq = torch.full((N,), 0.5, dtype=torch.float64, requires_grad=True)
        args, f = (q, n, p, qq), lambda q, n, p, qq: r(q, n=n, width_coef=p, width_exp=qq, balance=False)
    assert torch.autograd.gradcheck(f, args, atol=1e-6, rtol=1e-4)


def test_gradcheck_outputs_subset_cold_start(small):
    N = len(small)
    q = (_storm(9, N) + 0.1).requires_grad_()  # more steps than levels: the row ring wraps
    r = MuskingumCunge(small, dt=3600.0, mode="trapezoid")
    assert torch.autograd.gradcheck(lambda q: r(q, outputs=[0, N - 1], hot_start=False), (q,), atol=1e-6,
                                    rtol=1e-4)


def test_outputs_subset_matches_full(small):
    q = _storm(10, len(small))
    r = MuskingumCunge(small, dt=3600.0)
    full = r(q)
    part = r(q, outputs=[3, 0])
    assert torch.equal(part, full[:, [3, 0]])


# ------------------------------------------------------------------ mass balance, positivity
@pytest.mark.parametrize("mode", ["static", "trapezoid"])
def test_mass_balance_lower_colorado(lc, mode):
    net, d = lc
    q = d["q_lateral"].double()
    kw = {"positivity": False} if mode == "static" else {}
    r = MuskingumCunge(net, dt=3600.0, mode=mode, **kw)
    Q = r(q)
    assert torch.isfinite(Q).all()
    b = r.balance
    assert b.inflow_m3 > 1e6 and b.outflow_m3 > 1e6
    assert abs(b.relative_error) < 1e-6, str(b)


def test_standard_scheme_reports_its_drift(lc):
    """The NWM / t-route update form re-derives storage from flows each step; the balance shows it."""
    net, d = lc
    r = MuskingumCunge(net, dt=3600.0, scheme="standard")
    r(d["q_lateral"].double())
    b = r.balance
    assert abs(b.scheme_relative_error) < 1e-6  # every step conserves water given its own K, X
    assert abs(b.parameter_drift_m3) > 0


def test_non_negative_without_clamp(small):
    """Storms on a dry network, cold start: all coefficients >= 0, so flows are >= 0 and mass balances."""
    q = _storm(48, len(small), base=0.0)
    q[q < 1e-3] = 0.0
    for mode in ("trapezoid", "power_law"):
        extra = {"width_coef": 10.0, "width_exp": 1.0} if mode == "power_law" else {}
        r = MuskingumCunge(small, dt=600.0, forcing_dt=3600.0, mode=mode)
        Q = r(q, hot_start=False, **extra)
        assert (Q >= 0).all()
        assert abs(r.balance.relative_error) < 1e-9


def test_static_positivity_warns_and_stays_non_negative(sandbox):
    net, d = sandbox
    r = MuskingumCunge(net, dt=900.0, forcing_dt=10800.0, mode="static")  # dt < 2 K X: c1 < 0, X is lowered
    with pytest.warns(UserWarning, match="X lowered"):
        Q = r(d["qext"].double(), hot_start=False)
    assert (Q >= 0).all()


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("mode,scheme", [("static", "conservative"), ("trapezoid", "conservative"),
                                         ("trapezoid", "standard")])
def test_two_chunks_equal_one_run(small, mode, scheme):
    N = len(small)
    q = _storm(20, N)
    kw = dict(k=torch.full((N,), 5000.0, dtype=torch.float64), x=0.2) if mode == "static" else {}
    r = MuskingumCunge(small, dt=1200.0, forcing_dt=3600.0, mode=mode, scheme=scheme, output="end")
    whole = r(q, **kw)
    first = r(q[:8], **kw)
    second = r(q[8:], state=r.state, **kw)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-12, atol=1e-12)


def test_chunked_balance_counts_the_carried_storage(small):
    """A call continuing from a carried S starts from that storage: no drift in the conservative form."""
    q = _storm(20, len(small))
    r = MuskingumCunge(small, dt=1200.0, forcing_dt=3600.0)
    r(q[:8])
    S = r.state.S.sum().item()
    r(q[8:], state=r.state)
    assert S > 0 and r.balance.storage_start_m3 == pytest.approx(S, rel=1e-12)
    assert abs(r.balance.parameter_drift_m3) < 1e-9 * S and abs(r.balance.scheme_relative_error) < 1e-9


def test_repeated_calls_share_no_visible_state(small):
    """The sweep reuses its workspace between calls with the same step count: results and returned states
    must not change with what ran before or after."""
    N = len(small)
    q = _storm(12, N)
    r = MuskingumCunge(small, dt=3600.0, mode="static")
    a = r(q)
    state = r.state
    Qf = state.Q.clone()
    r(q * 3.0)  # same step count: same workspace
    r(q[:5])  # another step count: rebuilt
    assert torch.equal(state.Q, Qf)
    assert torch.equal(r(q), a)


def test_hot_start_is_steady(small):
    q = torch.full((10, len(small)), 0.3, dtype=torch.float64)
    for mode in ("static", "trapezoid"):
        r = MuskingumCunge(small, dt=3600.0, mode=mode, positivity=False)
        kw = dict(k=3600.0, x=0.2) if mode == "static" else {}
        Q = r(q, **kw)
        expect = torch.as_tensor(small.accumulate(np.full(len(small), 0.3)))
        torch.testing.assert_close(Q, expect.expand_as(Q), rtol=1e-10, atol=1e-10)


def test_steady_state_gradient(small):
    sched = Schedule.from_network(small)
    q0 = torch.rand(len(small), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: steady_state(sched, x), (q0,))


# ------------------------------------------------------------------ bad input
def test_bad_lateral_inflow_names_reaches(small):
    r = MuskingumCunge(small, dt=3600.0)
    q = torch.ones(4, len(small), dtype=torch.float64)
    for bad in (float("nan"), float("inf")):
        q[2, 5] = bad
        with pytest.raises(ValueError, match="NaN/inf.*" + str(small.ids[5])):
            r(q)
    q[2, 5] = -1.0
    with pytest.raises(ValueError, match="negative lateral inflow.*" + str(small.ids[5])):
        r(q)
    with pytest.raises(ValueError, match=r"q_lat must be \[T, 12\]"):
        r(torch.ones(4, len(small) + 1))


def test_bad_parameters(small):
    N = len(small)
    q = torch.ones(3, N, dtype=torch.float64)
    r = MuskingumCunge(small, dt=3600.0)
    with pytest.raises(ValueError, match="'n' outside its physical bounds"):
        r(q, n=torch.full((N,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        r(q, n=torch.full((N + 1,), 0.05, dtype=torch.float64))
    with pytest.raises(TypeError, match="unknown routing parameter"):
        r(q, manning=0.05)
    with pytest.raises(ValueError, match="non-finite"):
        r(q, bottom_width=torch.full((N,), float("nan"), dtype=torch.float64))
    with pytest.raises(NetworkError, match="needs parameter 'width_coef'"):
        MuskingumCunge(small, mode="power_law")(q)
    with pytest.raises(ValueError, match="whole multiple"):
        MuskingumCunge(small, dt=3600.0, forcing_dt=5000.0)
    with pytest.raises(ValueError, match="state is for"):
        r(q, state=RoutingState(torch.zeros(N + 1), torch.zeros(N + 1)))


def test_missing_column_is_named():
    net = build_network([1, 2], [2, 0], attrs=pd.DataFrame({"length_m": [100.0, 100.0], "slope": [1e-3, 1e-3]}))
    with pytest.raises(NetworkError, match="'n', 'bottom_width_m', 'side_slope'"):
        MuskingumCunge(net)(torch.ones(2, 2))


def test_closed_storm_cycle_returns_the_water():
    """Base flow -> storm -> base flow through one 20 km reach: what went in must come out.

    Measure-free check of the update forms (start and end states are the same steady state): the
    conservative form returns the inflow volume; the standard (NWM / t-route) form creates ~6 %.
    """
    net = build_network([1], [0], attrs=pd.DataFrame({"length_m": [20000.0], "slope": [1e-3]}))
    t = torch.arange(120, dtype=torch.float64)
    q = (5.0 + 95.0 * torch.exp(-0.5 * ((t - 30.0) / 4.0) ** 2))[:, None]
    gain = {}
    for scheme in ("conservative", "standard"):
        r = MuskingumCunge(net, dt=600.0, forcing_dt=3600.0, mode="power_law", scheme=scheme)
        Q = r(q, n=0.04, width_coef=20.0, width_exp=0.5)
        assert abs(Q[-1, 0].item() - 5.0) < 1e-3  # back at base flow
        gain[scheme] = Q.sum().item() / q.sum().item() - 1.0
    assert abs(gain["conservative"]) < 1e-5
    assert gain["standard"] > 0.01
