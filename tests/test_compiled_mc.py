"""The compiled (numba) Muskingum-Cunge kernel on the power-law channel against the torch wavefront (which
differentiates :func:`rivergraph.physics.muskingum.mc_step` with autograd): outputs and gradients of every input
(q, n, slope, width coefficient and exponent, length, the carried state) to rounding, both update forms,
positivity on and off, on a hand-made graph whose flows hit every clamp, on a real Lower Colorado subnetwork and
on the whole Lower Colorado; its checkpointed adjoint bit-identical to the full-history one."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import build_network
from rivergraph.models.router import MuskingumCunge
from rivergraph.physics.channels import CELERITY_BOUNDS, MIN_REFERENCE_FLOW, get_channel

torch.set_num_threads(1)
F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:positivity")
SCHEMES = ["conservative", "standard"]


def _tree():
    """1, 2 -> 3; 3, 4 -> 5; 5, 8 -> 9 (outlet); 6 -> 7 (outlet): short and long, steep and flat reaches."""
    ids, to = [1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3, 5, 5, 9, 7, 0, 9, 0]
    n = len(ids)
    attrs = pd.DataFrame({"length_m": [300.0, 9000.0, 2500.0, 150.0, 20000.0, 800.0, 4000.0, 60.0, 12000.0],
                          "slope": np.geomspace(1e-4, 2e-2, n), "n": 0.04})
    return build_network(ids, to, attrs)


def _params(net, dtype, extreme=False):
    N = len(net)
    if extreme:  # celerity below and above its bounds, X clipped at 0
        n = torch.tensor([0.3, 0.01, 0.2, 0.01, 0.3, 0.012, 0.25, 0.01, 0.05], dtype=dtype)
        p = torch.tensor([200.0, 1.0, 150.0, 2.0, 100.0, 1.0, 180.0, 1.0, 20.0], dtype=dtype)
        w = torch.tensor([0.5, 0.2, 1.0, 0.3, 1.5, 0.2, 1.2, 0.2, 0.8], dtype=dtype)
    else:
        n, p = torch.linspace(0.02, 0.1, N, dtype=dtype), torch.linspace(3.0, 40.0, N, dtype=dtype)
        w = torch.linspace(0.2, 1.5, N, dtype=dtype)
    return dict(n=n, width_coef=p, width_exp=w,
                slope=torch.as_tensor(net.attrs["slope"].to_numpy(copy=True), dtype=dtype).clamp_min(1e-4),
                length=torch.as_tensor(net.attrs["length_m"].to_numpy(copy=True), dtype=dtype))


def _inflow(T, N, dtype, zeros=False, seed=2):
    g = torch.Generator().manual_seed(seed)
    q = 0.05 + 3.0 * torch.rand(T, N, generator=g, dtype=F64)
    if zeros:  # dry headwaters: reference flows below MIN_REFERENCE_FLOW
        q[:4, 0] = 0.0
        q[:, 5] = 0.0
        q[5:12, 7] = 40.0 * q[5:12, 7]  # a flood on the steep, smooth, narrow reach: celerity above its bound
    return q.to(dtype)


def _run(net, engine, scheme, positivity, T=23, dtype=F64, every=None, outputs=None, extreme=False, dt=900.0,
         mode="power_law", params=_params, inflow=_inflow):
    """Two chained calls (cold start, then the carried state with an output subset) and one loss on both
    outputs and the final state; returns the outputs, the gradients and the first call's full output.
    ``mode``, ``params(net, dtype, extreme)`` and ``inflow(T, N, dtype, zeros)``: the channel and its inputs."""
    q = inflow(T, len(net), dtype, zeros=extreme).requires_grad_(True)
    ps = {k: v.requires_grad_(True) for k, v in params(net, dtype, extreme).items()}
    r = MuskingumCunge(net, dt=dt, mode=mode, engine=engine, scheme=scheme, positivity=positivity,
                       checkpoint_every=every)
    Q1 = r(q[:9], hot_start=False, **ps)
    Q2 = r(q[9:], state=r.state, output_positions=outputs, **ps)
    w1 = torch.linspace(0.1, 1.0, Q1.numel(), dtype=dtype).reshape(Q1.shape)
    w2 = torch.linspace(0.3, 1.0, Q2.numel(), dtype=dtype).reshape(Q2.shape)
    loss = (Q1 * w1).sum() + (Q2 * w2).sum() + r.state.Q.sum() + 1e-3 * r.state.S.sum() + 0.5 * r.state.I.sum()
    loss.backward()
    return [Q1.detach(), Q2.detach(), r.state.S.detach(), q.grad, *(v.grad for v in ps.values())], (q, ps, Q1)


def _close(ref, got, rtol):
    for i, (a, b) in enumerate(zip(ref, got)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert torch.isfinite(b).all(), i
        err = float((a - b).abs().max()) / max(float(a.abs().max()), 1e-300)
        assert err <= rtol, (i, err)


def _clamps_hit(net, q, ps, Q, dt, positivity, mode="power_law"):
    """Which clamps the torch path's first call met: the reference-flow floor, the celerity bounds, X's floor
    and (with positivity) the lowering of X; from the routed flows (cold start, every reach an output)."""
    channel = get_channel(mode)
    down = torch.as_tensor(net.downstream)
    q, Q = q.detach()[: Q.shape[0]], Q.detach()
    I = torch.zeros_like(Q)
    for j in range(len(net)):
        if down[j] >= 0:
            I[:, down[j]] += Q[:, j]
    prev = lambda x: torch.cat([torch.zeros_like(x[:1]), x[:-1]])  # noqa: E731
    r = (prev(I) + I + prev(Q) + 2.0 * q) / 3.0
    Qr = r.clamp_min(MIN_REFERENCE_FLOW)
    p = {k: v.detach() for k, v in ps.items()}
    c, Tw = channel.celerity(Qr, *(p[name] for name in channel.param_names))
    cc = c.clamp(*CELERITY_BOUNDS)
    X = 0.5 * (1.0 - Qr / (Tw * p["slope"] * cc * p["length"]))
    h = dt * cc / (2.0 * p["length"])
    hits = {"q_min": bool((r < MIN_REFERENCE_FLOW).any()), "c_lo": bool((c < CELERITY_BOUNDS[0]).any()),
            "c_hi": bool((c > CELERITY_BOUNDS[1]).any()), "X_lo": bool((X < 0).any())}  # X < 0.5 always
    if positivity:
        Xc = X.clamp(0.0, 0.5)
        hits["h"] = bool((h < Xc).any())
        hits["1-h"] = bool((1.0 - h < torch.minimum(Xc, h)).any())
    return hits


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("positivity", [True, False])
def test_power_law_gradients_match_torch_every_clamp(scheme, positivity):
    net = _tree()
    dt = 900.0 if positivity else 3600.0
    ref, (q, ps, Q1) = _run(net, "torch", scheme, positivity, extreme=True, outputs=[0, 4, 8], dt=dt)
    got, _ = _run(net, "compiled", scheme, positivity, extreme=True, outputs=[0, 4, 8], dt=dt)
    _close(ref, got, 1e-11)
    hits = _clamps_hit(net, q, ps, Q1, dt, positivity)
    assert all(hits.values()), hits  # the comparison covers every clamp's gradient


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("positivity", [True, False])
def test_power_law_gradients_match_torch_real_subnetwork(basin_08159000, scheme, positivity):
    net = basin_08159000[0]
    ref, _ = _run(net, "torch", scheme, positivity, outputs=[0, 17, 50])
    got, _ = _run(net, "compiled", scheme, positivity, outputs=[0, 17, 50])
    _close(ref, got, 1e-11)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_power_law_gradients_match_torch_lower_colorado(lc, scheme):
    """The whole Lower Colorado (11,248 reaches, 650 levels), 6 steps of 1 h, gradients of q and n."""
    net = lc[0]
    N = len(net)
    res = {}
    for eng in ("torch", "compiled"):
        q = (3.0 * torch.rand(6, N, generator=torch.Generator().manual_seed(2), dtype=F64)).requires_grad_(True)
        n = torch.full((N,), 0.05, dtype=F64, requires_grad=True)
        r = MuskingumCunge(net, dt=3600.0, mode="power_law", engine=eng, scheme=scheme)
        Q = r(q, hot_start=False, n=n, width_coef=torch.full((N,), 10.0, dtype=F64),
              width_exp=torch.full((N,), 0.5, dtype=F64))
        Q.square().sum().backward()
        res[eng] = [Q.detach(), q.grad, n.grad]
    _close(res["torch"], res["compiled"], 1e-11)


def _check_float32(net, run):
    ref, _ = run(net, "torch", "conservative", True, dtype=torch.float32)
    got, _ = run(net, "compiled", "conservative", True, dtype=torch.float32)
    _close(ref, got, 1e-4)


def _check_checkpoint(net, run, scheme, every):
    ref, _ = run(net, "compiled", scheme, True, outputs=[3, 9])
    got, _ = run(net, "compiled", scheme, True, every=every, outputs=[3, 9])
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def _check_balance(net, q, mode, params):
    """The storage sums the mass balance reports are the torch path's, with gradients on."""
    bal = {}
    for eng in ("torch", "compiled"):
        r = MuskingumCunge(net, dt=3600.0, mode=mode, engine=eng)
        ps = {k: v.requires_grad_(True) for k, v in params(net, F64).items()}
        r(q, **ps).sum().backward()
        bal[eng] = r.balance
    a, b = bal["torch"], bal["compiled"]
    for f in ("residual_m3", "parameter_drift_m3", "storage_start_m3", "storage_end_m3"):
        assert abs(getattr(a, f) - getattr(b, f)) <= 1e-10 * a.inflow_m3, f
    # balance=False: the kernels skip their storage sums (sweep(diagnostics=False): NaN there), the same flows
    r = MuskingumCunge(net, dt=3600.0, mode=mode, engine="compiled")
    ps = params(net, F64)
    with_books = r(q, **ps)
    assert torch.equal(r(q, balance=False, **ps), with_books)


def test_power_law_float32(basin_08159000):
    _check_float32(basin_08159000[0], _run)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("every", [1, 4, 50])
def test_power_law_checkpoint_bit_identical(basin_08159000, scheme, every):
    _check_checkpoint(basin_08159000[0], _run, scheme, every)


def test_power_law_balance_matches_torch(basin_08159000):
    """The storage sums the mass balance reports are the torch path's, with gradients on."""
    _check_balance(basin_08159000[0], basin_08159000[1][:30], "power_law", _params)


def _exp_log(vexp, vlog):
    """A compiled loop writing vexp(x) and vlog(x) elementwise (as the kernels call them)."""
    import numba

    @numba.njit(error_model="numpy")
    def both(x, e, lg):
        for i in range(np.uint64(0), np.uint64(x.shape[0])):
            e[i] = vexp(x[i])
            lg[i] = vlog(x[i])

    return both


def test_vectorisable_exp_log_match_libm():
    """engine/compiled_math: exp within 1 ulp, log within 2 ulp of numpy's, special values as numpy's."""
    from rivergraph.engine.compiled_math import vexp, vlog

    both = _exp_log(vexp, vlog)
    rng = np.random.default_rng(0)
    for x, which in [(rng.uniform(-745.0, 709.7, 1 << 16), "exp"), (np.exp(rng.uniform(-738.0, 709.0, 1 << 16)), "log"),
                     (rng.uniform(0.3, 3.0, 1 << 16), "log")]:
        e, lg = np.empty_like(x), np.empty_like(x)
        both(x, e, lg)
        got, ref = (e, np.exp(x)) if which == "exp" else (lg, np.log(x))
        ulp = np.abs(got - ref) / np.spacing(np.abs(ref))
        assert ulp.max() <= (1.0 if which == "exp" else 2.0), (which, ulp.max())
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 5e-324, 1e-310, 710.0, -746.0])
    e, lg = np.empty_like(special), np.empty_like(special)
    both(special, e, lg)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(e, np.exp(special))
        np.testing.assert_allclose(lg, np.log(special), rtol=1e-15)


def test_short_series_exp_log_for_float32_states():
    """engine/compiled_math's vexp_f32 / vlog_f32 (the power law's y = Qr^a_3 when the states are float32): within
    3e-10 relative of numpy's over the kernels' range, NaN and inf passed through."""
    from rivergraph.engine.compiled_math import vexp_f32, vlog_f32

    both = _exp_log(vexp_f32, vlog_f32)
    rng = np.random.default_rng(0)
    x = rng.uniform(-700.0, 700.0, 1 << 16)
    e, lg = np.empty_like(x), np.empty_like(x)
    both(x, e, lg)
    assert np.abs(e / np.exp(x) - 1).max() < 3e-10
    x = np.exp(rng.uniform(-700.0, 700.0, 1 << 16))
    both(x, e, lg)
    assert np.abs(lg - np.log(x)).max() < 3e-11 * np.abs(np.log(x)).max()
    x = 10 ** rng.uniform(-4, 6, 1 << 16)  # reference flows, m3/s, and y = Qr^(1/5)
    both(0.2 * np.log(x), e, lg)
    assert np.abs(e / x ** 0.2 - 1).max() < 3e-10
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0])
    e, lg = np.empty_like(special), np.empty_like(special)
    both(special, e, lg)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(e, np.exp(special), rtol=3e-10)
        np.testing.assert_array_equal(lg, np.log(special))


def test_sweep_without_diagnostics_skips_the_books(basin_08159000):
    """sweep(diagnostics=False) (the router's balance=False): the compiled kernels skip the storage sums and say
    so (NaN diagnostics), the flows unchanged bit for bit."""
    from rivergraph.engine.sweep import sweep

    net, q = basin_08159000[0], basin_08159000[1][:20]
    r = MuskingumCunge(net, dt=3600.0, mode="power_law", engine="compiled")
    cell, theta = r._cell(r.sorted_parameters(_params(net, F64), F64))
    Q0 = torch.zeros(len(net), dtype=F64)
    runs = [sweep(r.sched, cell, (q,), theta, (Q0, torch.full_like(Q0, float("nan"))), engine="compiled",
                  diagnostics=d) for d in (True, False)]
    assert torch.isfinite(runs[0].diagnostics).all() and torch.isnan(runs[1].diagnostics).all()
    assert torch.equal(runs[0].out, runs[1].out)
