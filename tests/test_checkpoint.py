"""Checkpointed adjoint: gradients bit-identical (torch.equal) to the full-history adjoint on a real Lower
Colorado subnetwork, every mode and scheme, any segment length; the memory model and the k policy."""
from __future__ import annotations

import math

import pytest
import torch

from rivergraph.engine import LinearHeat, Schedule, sweep
from rivergraph.engine.checkpoint import checkpoint_bytes, history_bytes, parse_memory, resolve_checkpoint
from rivergraph.engine.cells import StaticMuskingum
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)
F64 = torch.float64


def _storm(T, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=F64)[:, None]
    peak = torch.rand(N, generator=g, dtype=F64) * 5.0
    when = torch.rand(N, generator=g, dtype=F64) * T / 2
    return 0.05 + peak * torch.exp(-0.5 * ((t - when) / 3.0) ** 2)


def _grads(net, mode, scheme, every, T=17, subset=False, hot=True):
    N = len(net)
    q = _storm(T, N).requires_grad_(True)
    kw = {}
    if mode == "power_law":
        kw = {"width_coef": torch.full((N,), 20.0, dtype=F64, requires_grad=True),
              "width_exp": torch.full((N,), 0.5, dtype=F64, requires_grad=True)}
    elif mode == "static":
        kw = {"k": torch.linspace(1500.0, 9000.0, N, dtype=F64, requires_grad=True),
              "x": torch.full((N,), 0.2, dtype=F64, requires_grad=True)}
    else:
        kw = {"n": torch.full((N,), 0.04, dtype=F64, requires_grad=True)}
    r = MuskingumCunge(net, dt=3600.0, mode=mode, scheme=scheme, checkpoint_every=every)
    outs = [1, 3, N - 1] if subset else None
    with pytest.warns(UserWarning) if mode == "static" else _nothing():
        Q = r(q, output_positions=outs, hot_start=hot, **kw)
    w = torch.linspace(0.5, 2.0, Q.numel(), dtype=F64).reshape(Q.shape)
    ((Q * w).sum() + r.state.Q.sum() + r.state.I.sum()).backward()
    return [Q.detach(), q.grad, *(v.grad for v in kw.values())], r.balance


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("mode,scheme", [("static", "conservative"), ("trapezoid", "conservative"),
                                         ("trapezoid", "standard"), ("power_law", "conservative"),
                                         ("power_law", "standard")])
def test_checkpointed_gradients_bit_identical(small, mode, scheme):
    ref, bal = _grads(small, mode, scheme, None)
    assert all(torch.isfinite(g).all() for g in ref) and ref[1].abs().sum() > 0
    for every in (1, 4, 9, 10_000):
        got, bal_c = _grads(small, mode, scheme, every)
        for a, b in zip(ref, got):
            assert torch.equal(a, b), (mode, scheme, every)
        assert bal_c.residual_m3 == bal.residual_m3 and bal_c.parameter_drift_m3 == bal.parameter_drift_m3


@pytest.mark.parametrize("mode", ["static", "trapezoid"])
def test_checkpointed_subset_cold_start(small, mode):
    ref, _ = _grads(small, mode, "conservative", None, subset=True, hot=False)
    got, _ = _grads(small, mode, "conservative", 5, subset=True, hot=False)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_checkpointed_heat_cell(small):
    sched = Schedule.from_network(small)
    T, N = 13, sched.n
    g = torch.Generator().manual_seed(3)
    a, beta, gamma = (0.4 * torch.rand(T, N, generator=g, dtype=F64) for _ in range(3))
    x0 = torch.rand(N, generator=g, dtype=F64)

    def run(every):
        ins = [t.clone().requires_grad_(True) for t in (a, beta, gamma, x0)]
        out = sweep(sched, LinearHeat(), ins[:3], (), (ins[3],), outputs="sorted", checkpoint_every=every).out
        (out * torch.arange(out.numel(), dtype=F64).reshape(out.shape)).sum().backward()
        return [out.detach(), *(t.grad for t in ins)]

    for x, y in zip(run(None), run(3)):
        assert torch.equal(x, y)


def test_memory_model_and_policy(small):
    sched = Schedule.from_network(small)
    cell = StaticMuskingum()
    T = 1000
    full = history_bytes(sched, cell, T, F64)
    assert full == 2 * (T + 1) * sched.n * 8
    k = resolve_checkpoint(sched, cell, T, F64, "auto")
    assert 1 < k < T and checkpoint_bytes(sched, cell, T, F64, k) < full / 5
    assert resolve_checkpoint(sched, cell, T, F64, None) is None
    assert resolve_checkpoint(sched, cell, T, F64, "auto", memory_budget=10 * full) is None  # fits: no recompute
    assert resolve_checkpoint(sched, cell, T, F64, None, memory_budget=full // 2) == k
    with pytest.warns(UserWarning, match="memory budget"):
        resolve_checkpoint(sched, cell, T, F64, "auto", memory_budget=100)
    assert resolve_checkpoint(sched, cell, T, F64, 5) == 5
    assert parse_memory("6GiB") == 6 * 2 ** 30 and parse_memory("500MB") == 500_000_000
    for bad in (0, -3, "often", 2.5):
        with pytest.raises(ValueError, match="checkpoint_every"):
            MuskingumCunge(small, mode="trapezoid", checkpoint_every=bad)


def test_memory_model_counts_the_compiled_trapezoid_depth_scratch(small):
    """The compiled trapezoid keeps one depth per reach at each checkpoint, in the states' dtype: the estimate
    counts it and the engine reports it."""
    from rivergraph.engine.cells import MuskingumCungeCell
    from rivergraph.engine.compiled import history_scratch, snapshot_scratch_bytes
    from rivergraph.physics.channels import get_channel

    sched = Schedule.from_network(small)
    trap = MuskingumCungeCell(get_channel("trapezoid"), 3600.0)
    T, k, F32 = 1000, 30, torch.float32
    assert snapshot_scratch_bytes(trap, torch.float64) == 8 and snapshot_scratch_bytes(trap, F32) == 4
    assert snapshot_scratch_bytes(StaticMuskingum(), F32) == 0
    # and the depths of every kept step (its adjoint reads them): one more vector per kept step
    assert history_scratch(trap) == 1 and history_scratch(StaticMuskingum()) == 0
    more = checkpoint_bytes(sched, trap, T, F32, k, extra_history=1) - checkpoint_bytes(sched, trap, T, F32, k)
    assert more == (k + 1) * sched.n * 4
    assert history_bytes(sched, trap, T, F32, 1) - history_bytes(sched, trap, T, F32) == (T + 1) * sched.n * 4
    n_snap = math.ceil((T + sched.n_levels - 1) / k)
    extra = checkpoint_bytes(sched, trap, T, F32, k, scratch_bytes=4) - checkpoint_bytes(sched, trap, T, F32, k)
    assert extra == n_snap * sched.n * 4
    # the auto rule sees it too: a budget the states' checkpoints alone fit, the scratch does not
    k_auto = resolve_checkpoint(sched, trap, T, F32, "auto", scratch_bytes=4)
    tight = checkpoint_bytes(sched, trap, T, F32, k_auto)
    with pytest.warns(UserWarning, match="memory budget"):
        resolve_checkpoint(sched, trap, T, F32, "auto", memory_budget=tight, scratch_bytes=4)


def test_compiled_path_counts_steps_not_diagonals(small):
    """The compiled path checkpoints every k steps: its k and memory estimate count T steps, the wavefront's T + depth
    - 1 diagonals."""
    sched = Schedule.from_network(small)
    cell, T = StaticMuskingum(), 400
    k_wave = resolve_checkpoint(sched, cell, T, F64, "auto")
    k_step = resolve_checkpoint(sched, cell, T, F64, "auto", per_step=True)
    c_snap, c_hist = 2, 2  # Q and the message at each checkpoint; Q and I kept per diagonal
    assert k_step == round(math.sqrt(c_snap * T / c_hist)) and k_wave == round(
        math.sqrt(c_snap * (T + sched.n_levels - 1) / c_hist)) and k_wave >= k_step
    assert checkpoint_bytes(sched, cell, T, F64, 10, per_step=True) == (2 * 40 + 2 * 11) * sched.n * 8
