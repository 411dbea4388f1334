"""The engine: cells' adjoints against autograd, the sweep against plain loops, gradcheck for every cell (float64,
small hand-made graphs), the schedule's upstream sum and workspace cache."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.engine import Cell, LinearHeat, MuskingumCungeCell, Schedule, StaticMuskingum, sweep
from rivergraph.engine.cells import linear_transport
from rivergraph.physics.channels import get_channel
from rivergraph.physics.muskingum import muskingum_coefficients

torch.set_num_threads(1)
F64 = torch.float64

# a hand-made tree: 1, 2 -> 3; 3, 4 -> 5 (outlet); 6 -> 7 (outlet): two basins, three levels
IDS, TO = [1, 2, 3, 4, 5, 6, 7], [3, 3, 5, 5, 0, 7, 0]


def _net():
    n = len(IDS)
    attrs = pd.DataFrame({"length_m": np.linspace(800.0, 3000.0, n), "slope": np.linspace(5e-4, 4e-3, n),
                          "n": 0.04, "bottom_width_m": np.linspace(3.0, 12.0, n), "side_slope": 1.5,
                          "musk_s": np.linspace(2000.0, 6000.0, n), "musx": 0.2})
    return build_network(IDS, TO, attrs)


def _rand(*shape, seed=0, lo=0.1, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=F64)


def _cells():
    """Cells and sorted parameters on the hand-made tree (Muskingum-Cunge without positivity: its min() has kinks
    that finite differences straddle)."""
    net = _net()
    sched = Schedule.from_network(net)
    o = sched.order
    col = lambda c: torch.tensor(net.attrs[c].to_numpy(np.float64)).index_select(0, o)  # noqa: E731
    K, X = col("musk_s"), col("musx")
    static = (StaticMuskingum(600.0), list(muskingum_coefficients(K, X, 600.0)))
    out = {"static": static}
    for mode in ("trapezoid", "power_law"):
        ch = get_channel(mode)
        th = [col(c) if c in ("n", "slope", "length_m", "bottom_width_m", "side_slope") else None
              for c in (p.column for p in ch.params)]
        th = [t if t is not None else torch.full((len(net),), v, dtype=F64)
              for t, v in zip(th, [0.04, 1e-3, 20.0, 0.5, 1000.0])]
        for scheme in ("conservative", "standard"):
            out[f"{mode}-{scheme}"] = (MuskingumCungeCell(ch, 600.0, False, scheme == "conservative"), th)
    return net, sched, out


# ------------------------------------------------------------------ cell adjoints vs autograd
@pytest.mark.parametrize("name", ["static", "heat"])
def test_closed_form_vjp_matches_autograd(name):
    """A cell's hand-written vjp_ gives the same cotangents as the base class's local autograd of step()."""
    m = 6
    if name == "static":
        cell = StaticMuskingum()
        p = [_rand(m, seed=i, lo=0.0, hi=0.5) for i in range(4)]
        u = [_rand(m, seed=9)]
    else:
        cell = LinearHeat()
        p = []
        u = [_rand(m, seed=9 + i, hi=0.5) for i in range(3)]
    m_new, m_old, y_bar = _rand(m, seed=20), _rand(m, seed=21), _rand(m, seed=22)
    s_old = [_rand(m, seed=23)]
    s_new = list(cell.step(m_new, m_old, s_old, u, p, 0))

    def run(fn):
        m_bar, m_carry, s_carry = torch.zeros(m, dtype=F64), _rand(m, seed=24), [_rand(m, seed=25)]
        if name == "heat":
            m_carry.zero_()  # heat reads no m(t-1): nothing reaches it from the next step
        p_bar = [torch.zeros(m, dtype=F64) for _ in p]
        ub = fn(y_bar.clone(), m_bar, m_carry, s_carry, m_new, m_old, s_old, s_new, u, p, 0, p_bar)
        return [m_bar, m_carry, *s_carry, *p_bar, *ub]

    closed = run(cell.vjp_)
    auto = run(lambda *a: Cell.vjp_(cell, *a))
    for c, a in zip(closed, auto):
        torch.testing.assert_close(c, a, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("key", ["static", "trapezoid-conservative", "power_law-standard"])
def test_forward_in_place_matches_step(key):
    _, sched, cells = _cells()
    cell, p = cells[key]
    m = sched.n
    s0 = [_rand(m, seed=1), _rand(m, seed=2, lo=100.0, hi=1000.0)][:len(cell.states)]
    cell.begin(s0, p)
    m_new, m_old, u = _rand(m, seed=3), _rand(m, seed=4), [_rand(m, seed=5)]
    ref = cell.step(m_new, m_old, s0, u, p, 0)
    s = [x.clone() for x in s0]
    cell.forward_(m_new, m_old, s, u, p, 0, 0)
    for a, b in zip(s, ref):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------ the sweep vs plain loops
def _loop_muskingum(net, c, q, Q0, I0):
    """Reference: every step, reaches in topological order, Q = c1 I + c2 I_old + c3 Q_old + c4 q."""
    c1, c2, c3, c4 = c
    Q, I, out = Q0.clone(), I0.clone(), []
    for t in range(q.shape[0]):
        Qn, In = Q.clone(), torch.zeros_like(I)
        for i in np.argsort(-net.distance_to_outlet, kind="stable"):
            In[i] = sum((Qn[j] for j in np.flatnonzero(net.downstream == i)), torch.zeros((), dtype=F64))
            Qn[i] = c1[i] * In[i] + c2[i] * I[i] + c3[i] * Q[i] + c4[i] * q[t, i]
        Q, I = Qn, In
        out.append(Q)
    return torch.stack(out)


def test_static_sweep_matches_loop_and_outputs_agree():
    net, sched, cells = _cells()
    cell, c = cells["static"]
    T, N = 6, len(net)
    q, Q0 = _rand(T, N, seed=7), _rand(N, seed=8)
    I0 = torch.zeros(N, dtype=F64)
    inv = sched.sorted_pos
    ref = _loop_muskingum(net, [x.index_select(0, inv) for x in c], q, Q0, I0)
    full = sweep(sched, cell, (q,), c, (Q0.index_select(0, sched.order),), I0).out
    torch.testing.assert_close(full, ref, rtol=1e-13, atol=1e-13)
    srt = sweep(sched, StaticMuskingum(), (q,), c, (Q0.index_select(0, sched.order),), I0, outputs="sorted").out
    torch.testing.assert_close(srt, ref.index_select(1, sched.order), rtol=1e-13, atol=1e-13)
    pos = torch.tensor([0, 4, 6])
    sub = sweep(sched, StaticMuskingum(), (q,), c, (Q0.index_select(0, sched.order),), I0, outputs=pos).out
    torch.testing.assert_close(sub, ref.index_select(1, sched.order.index_select(0, pos)), rtol=1e-13, atol=1e-13)


def test_heat_engine_matches_loop_and_gradcheck():
    """(moved from test_temperature) the heat cell against a plain loop, and gradcheck in a, beta, gamma, x0."""
    net = build_network([1, 2, 3, 4, 5, 6, 7], [3, 3, 5, 5, 0, 7, 0])
    s = Schedule.from_network(net)
    T, N = 5, 7
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(T, N, generator=g, dtype=torch.float64) * 0.4 for _ in range(2))
    c, x0 = torch.rand(T, N, generator=g, dtype=torch.float64), torch.rand(N, generator=g, dtype=torch.float64)

    def loop(a, b, c, x0):
        x, out = x0.clone(), []
        for t in range(T):
            xn = x.clone()
            for i in np.argsort(-net.distance_to_outlet, kind="stable"):
                ups = np.flatnonzero(net.downstream == i)
                xn[i] = b[t, i] * x[i] + c[t, i] + sum(a[t, j] * xn[j] for j in ups)
            x = xn
            out.append(x)
        return torch.stack(out)

    o, inv = s.order, s.sorted_pos

    def eng(a, b, c, x0):
        return linear_transport(s, a[:, o], b[:, o], c[:, o], x0[o])[:, inv]

    assert (eng(a, b, c, x0) - loop(a, b, c, x0)).abs().max() < 1e-13
    args = [t.clone().requires_grad_() for t in (a, b, c, x0)]
    assert torch.autograd.gradcheck(eng, args)


# ------------------------------------------------------------------ gradcheck, every cell and scheme
@pytest.mark.parametrize("key", ["static", "trapezoid-conservative", "trapezoid-standard", "power_law-conservative",
                                 "power_law-standard"])
def test_sweep_gradcheck_every_cell(key):
    """Gradients of the output and of the final states in the forcing, the parameters and the initial state."""
    net, sched, cells = _cells()
    cell, p = cells[key]
    T, N = 4, len(net)
    q = _rand(T, N, seed=11, lo=0.5, hi=3.0)
    Q0 = _rand(N, seed=12, lo=0.5, hi=2.0)
    I0 = sched.upstream_sum(Q0)
    flow_dep = len(cell.states) == 2
    nan_S = torch.full((N,), float("nan"), dtype=F64)

    def f(q, Q0, *p):
        c = type(cell)(cell.channel, 600.0, False, cell.conservative) if flow_dep else StaticMuskingum()
        init = (Q0, nan_S) if flow_dep else (Q0,)
        r = sweep(sched, c, (q,), p, init, I0, outputs=torch.tensor([1, 5, 6]))
        return r.out, r.states[0], r.message

    args = [x.clone().requires_grad_() for x in (q, Q0, *p)]
    assert torch.autograd.gradcheck(f, args, atol=1e-6, rtol=1e-4)


def test_sweep_rejects_wrong_shapes():
    _, sched, cells = _cells()
    cell, p = cells["static"]
    with pytest.raises(ValueError, match="forcings .*params"):
        sweep(sched, cell, (), p, (torch.zeros(sched.n, dtype=F64),))
    with pytest.raises(ValueError, match="forcing 'q_lat' has shape"):
        sweep(sched, cell, (torch.zeros(3, sched.n + 1, dtype=F64),), p, (torch.zeros(sched.n, dtype=F64),))


# ------------------------------------------------------------------ schedule
def test_upstream_sum_and_workspaces():
    net = _net()
    sched = Schedule.from_network(net)
    x = _rand(3, len(net), seed=3)
    ref = torch.zeros_like(x)
    down = torch.as_tensor(net.downstream)
    for j in range(len(net)):
        if down[j] >= 0:
            ref[:, down[j]] += x[:, j]
    o = sched.order
    torch.testing.assert_close(sched.upstream_sum(x[:, o]), ref[:, o])
    # a router and a heat cell alternate on one schedule: each keeps its workspace, results unchanged
    cells = _cells()[2]
    cell, c = cells["static"]
    q, Q0 = _rand(5, len(net), seed=4), _rand(len(net), seed=5)
    a = sweep(sched, StaticMuskingum(), (q,), c, (Q0,)).out
    linear_transport(sched, *(_rand(5, len(net), seed=s, hi=0.3) for s in (6, 7, 8)), Q0, engine="torch")
    b = sweep(sched, StaticMuskingum(), (q,), c, (Q0,)).out
    assert torch.equal(a, b)
    assert len(sched._workspaces) == 2


@pytest.mark.parametrize("key", ["static", "power_law-conservative"])
@pytest.mark.parametrize("outputs", ["network", "sorted", "subset"])
def test_sweeps_repeat_bit_for_bit_every_output_layout(key, outputs):
    """A workspace's first sweep, its reuse and a fresh workspace give the same outputs and gradients, bit for
    bit, for every output layout (whole network, sorted, a subset next to the whole network: the band index is
    reused for the history rows), with the rings wrapping (T > levels) and not."""
    net, sched, cells = _cells()
    cell, p = cells[key]
    N = len(net)
    sel = torch.tensor([1, 5, 6]) if outputs == "subset" else outputs
    flow_dep = len(cell.states) == 2

    def run(T):
        q = _rand(T, N, seed=21, lo=0.5, hi=3.0).requires_grad_()
        pp = [x.clone().requires_grad_() for x in p]
        init = (_rand(N, seed=22, lo=0.5, hi=2.0), torch.full((N,), float("nan"), dtype=F64)) if flow_dep else \
            (_rand(N, seed=22, lo=0.5, hi=2.0),)
        r = sweep(sched, cell, (q,), pp, init)
        r2 = sweep(sched, cell, (q,), pp, init, outputs=sel)
        (r2.out.square().sum() + r.out.sum()).backward()
        return [r.out.detach(), r2.out.detach(), q.grad, *(x.grad for x in pp)]

    for T in (2, 8):  # 3 levels: no wrap, wrap
        first, again = run(T), run(T)
        sched._workspaces.clear()
        fresh = run(T)
        for x, *others in zip(first, again, fresh):
            assert all(torch.equal(x, y) for y in others)
        net_out, sel_out = first[0], first[1]  # every layout holds the same values as the whole network's
        cols = sched.order if outputs == "sorted" else sched.order[sel] if outputs == "subset" else slice(None)
        assert torch.equal(sel_out, net_out[:, cols])
        if key == "static":  # against the per-reach loop (sorted parameters back to network order)
            c = [x[sched.sorted_pos] for x in p]
            Q0 = _rand(N, seed=22, lo=0.5, hi=2.0)[sched.sorted_pos]
            ref = _loop_muskingum(net, c, _rand(T, N, seed=21, lo=0.5, hi=3.0), Q0, torch.zeros(N, dtype=F64))
            assert (net_out - ref).abs().max() < 1e-12
