"""The compiled linear heat transport (:mod:`rivergraph.engine.compiled_heat`) against the torch wavefront's
:class:`~rivergraph.engine.cells.LinearHeat` on the real Lower Colorado: outputs, final state and message, and the
gradients of a, beta, gamma, the initial state and the initial message to rounding (every output layout), its
checkpointed adjoint bit-identical to its full history, float32."""
from __future__ import annotations

import pytest
import torch

from rivergraph.engine import LinearHeat, Schedule, sweep
from rivergraph.engine.compiled import use_compiled

F64 = torch.float64


def _inputs(sched, T=17, dtype=F64, seed=3):
    """Convex weights as the temperature model makes them: a reach's upstream weights and its own beta sum to <= 1."""
    g = torch.Generator().manual_seed(seed)
    N = sched.n
    down = sched.down
    n_up = torch.bincount(down, minlength=N + 1)[down].clamp_min(1)  # tributaries of each reach's downstream reach
    a = (0.5 / n_up).to(F64) * torch.rand(T, N, generator=g, dtype=F64)
    beta = 0.45 * torch.rand(T, N, generator=g, dtype=F64)
    gamma = 5.0 + 20.0 * torch.rand(T, N, generator=g, dtype=F64)
    x0 = 10.0 + torch.rand(N, generator=g, dtype=F64)
    m0 = torch.rand(N, generator=g, dtype=F64)
    return [t.to(dtype) for t in (a, beta, gamma, x0, m0)]


def _run(sched, engine, ins, outputs="sorted", every=None):
    ins = [t.clone().requires_grad_(True) for t in ins]
    res = sweep(sched, LinearHeat(), ins[:3], (), (ins[3],), ins[4], outputs=outputs, checkpoint_every=every,
                engine=engine)
    w = torch.linspace(0.1, 1.0, res.out.numel(), dtype=res.out.dtype).reshape(res.out.shape)
    ((res.out * w).sum() + 0.3 * res.states[0].sum() + 0.7 * res.message.sum()).backward()
    return [res.out.detach(), res.states[0].detach(), res.message.detach(), *(t.grad for t in ins)]


@pytest.fixture(scope="module")
def lc_sched(lc):
    return Schedule.from_network(lc[0])


@pytest.mark.parametrize("outputs", ["sorted", "network", "subset"])
def test_compiled_heat_matches_torch(lc_sched, outputs):
    sched = lc_sched
    assert use_compiled(sched, LinearHeat(), "auto")
    ins = _inputs(sched)
    sel = torch.tensor([0, 7, 500, sched.n - 1]) if outputs == "subset" else outputs
    ref = _run(sched, "torch", ins, sel)
    got = _run(sched, "compiled", ins, sel)
    names = ("out", "x_final", "message", "a", "beta", "gamma", "x0", "m0")
    for name, r, c in zip(names, ref, got):
        assert r.shape == c.shape, name
        assert (c - r).abs().max() <= 1e-12 * max(float(r.abs().max()), 1e-300), name
    assert all(float(g.abs().sum()) > 0 for g in ref[3:7])  # every forcing and x0 reach the loss


def test_compiled_heat_checkpoint_bit_identical_and_float32(lc_sched):
    ins = _inputs(lc_sched)
    full = _run(lc_sched, "compiled", ins)
    for every in (1, 4, 50):
        for x, y in zip(full, _run(lc_sched, "compiled", ins, every=every)):
            assert torch.equal(x, y), every
    f32 = _run(lc_sched, "compiled", [t.float() for t in ins])
    for x, y in zip(full, f32):
        assert (y.double() - x).abs().max() <= 1e-5 * float(x.abs().max())


@pytest.mark.parametrize("engine", ["torch", "compiled"])
def test_final_message_gradient_matches_finite_differences(small, engine):
    """The returned final message m(T-1) = sum a x(T-1) does not read the initial message: its gradient goes to
    a, beta, gamma and x0 (the torch cell passed it whole to m0 until 2026-12-02: 0 against 277 on this network)."""
    sched = Schedule.from_network(small)
    ins = _inputs(sched, T=4)

    def f(x):
        return sweep(sched, LinearHeat(), x[:3], (), (x[3],), x[4], outputs="sorted", engine=engine).message.sum()

    x = [t.clone().requires_grad_(True) for t in ins]
    grads = torch.autograd.grad(f(x), x)
    assert float(grads[4].abs().max()) == 0.0 and float(grads[0].abs().sum()) > 0
    for i, g in enumerate(grads[:4]):
        flat_g = g.reshape(-1)
        for j in torch.linspace(0, flat_g.numel() - 1, 7).long().tolist():
            xp = [t.clone() for t in ins]
            xm = [t.clone() for t in ins]
            xp[i].view(-1)[j] += 1e-6
            xm[i].view(-1)[j] -= 1e-6
            fd = (f(xp) - f(xm)).item() / 2e-6
            assert abs(fd - float(flat_g[j])) <= 1e-6 * (1.0 + abs(fd)), (i, j, fd, float(flat_g[j]))
