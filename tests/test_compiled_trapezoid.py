"""The compiled (numba) Muskingum-Cunge kernel on the trapezoid channel against the torch wavefront (which
differentiates :func:`rivergraph.physics.muskingum.mc_step` with autograd and the depth by one Newton step at the
root): outputs and gradients of every input (q, n, slope, bottom width, side slope, length, the carried state) to
rounding, both update forms, positivity on and off, on a hand-made graph whose flows hit every clamp, on a real
Lower Colorado subnetwork and on the whole Lower Colorado; its checkpointed adjoint bit-identical to the
full-history one (the warm-started depth solve included)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_compiled_mc import (
    SCHEMES,
    _check_balance,
    _check_checkpoint,
    _check_float32,
    _clamps_hit,
    _close,
    _inflow,
    _run,
    _tree,
)

from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)
F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:positivity")


def _params(net, dtype, extreme=False):
    N = len(net)
    if extreme:  # celerity below and above its bounds, X clipped at 0; rectangles (z = 0) among them
        n = torch.tensor([0.3, 0.01, 0.2, 0.01, 0.3, 0.012, 0.25, 0.01, 0.05], dtype=dtype)
        B = torch.tensor([50.0, 2.0, 30.0, 3.0, 40.0, 1.0, 35.0, 10.0, 8.0], dtype=dtype)
        z = torch.tensor([0.0, 1.0, 2.0, 0.5, 3.0, 0.0, 1.5, 0.0, 1.0], dtype=dtype)
    else:
        n, B = torch.linspace(0.02, 0.1, N, dtype=dtype), torch.linspace(2.0, 40.0, N, dtype=dtype)
        z = torch.linspace(0.0, 3.0, N, dtype=dtype)
    return dict(n=n, bottom_width=B, side_slope=z,
                slope=torch.as_tensor(net.attrs["slope"].to_numpy(copy=True), dtype=dtype).clamp_min(1e-4),
                length=torch.as_tensor(net.attrs["length_m"].to_numpy(copy=True), dtype=dtype))


def _flood(T, N, dtype, zeros=False):
    """:func:`test_compiled_mc._inflow` with a larger flood on the steep smooth reach (celerity above 20 m/s in
    this wider channel)."""
    q = _inflow(T, N, F64, zeros=zeros)
    if zeros:
        q[5:12, 7] *= 10.0
    return q.to(dtype)


def _trap(*a, **kw):
    return _run(*a, mode="trapezoid", params=_params, inflow=_flood, **kw)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("positivity", [True, False])
def test_trapezoid_gradients_match_torch_every_clamp(scheme, positivity):
    net = _tree()
    dt = 900.0 if positivity else 3600.0
    ref, (q, ps, Q1) = _trap(net, "torch", scheme, positivity, extreme=True, outputs=[0, 4, 8], dt=dt)
    got, _ = _trap(net, "compiled", scheme, positivity, extreme=True, outputs=[0, 4, 8], dt=dt)
    _close(ref, got, 1e-10)
    hits = _clamps_hit(net, q, ps, Q1, dt, positivity, mode="trapezoid")
    assert all(hits.values()), hits  # the comparison covers every clamp's gradient


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("positivity", [True, False])
def test_trapezoid_gradients_match_torch_real_subnetwork(basin_08159000, scheme, positivity):
    net = basin_08159000[0]
    ref, _ = _trap(net, "torch", scheme, positivity, outputs=[0, 17, 50])
    got, _ = _trap(net, "compiled", scheme, positivity, outputs=[0, 17, 50])
    _close(ref, got, 1e-10)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_trapezoid_gradients_match_torch_lower_colorado(lc, scheme):
    """The whole Lower Colorado (11,248 reaches, 650 levels), its own channel columns, 6 steps of 1 h,
    gradients of q, n and the bottom width."""
    net = lc[0]
    N = len(net)
    res = {}
    for eng in ("torch", "compiled"):
        q = (3.0 * torch.rand(6, N, generator=torch.Generator().manual_seed(2), dtype=F64)).requires_grad_(True)
        n = torch.full((N,), 0.05, dtype=F64, requires_grad=True)
        B = torch.as_tensor(net.attrs["bottom_width_m"].to_numpy(copy=True), dtype=F64).requires_grad_(True)
        r = MuskingumCunge(net, dt=3600.0, mode="trapezoid", engine=eng, scheme=scheme)
        Q = r(q, hot_start=False, n=n, bottom_width=B)
        Q.square().sum().backward()
        res[eng] = [Q.detach(), q.grad, n.grad, B.grad]
    _close(res["torch"], res["compiled"], 1e-10)


def test_trapezoid_float32(basin_08159000):
    _check_float32(basin_08159000[0], _trap)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("every", [1, 4, 50])
def test_trapezoid_checkpoint_bit_identical(basin_08159000, scheme, every):
    """Bit-identical with the warm-started depth solve: the forward restores its depth scratch per segment."""
    _check_checkpoint(basin_08159000[0], _trap, scheme, every)


def test_trapezoid_balance_matches_torch(basin_08159000):
    """The storage sums the mass balance reports are the torch path's, with gradients on."""
    _check_balance(basin_08159000[0], basin_08159000[1][:30], "trapezoid", _params)


def test_depth_solve_matches_torch_from_any_start():
    """engine/compiled_trapezoid.SOLVERS: the normal depth of torch's ``trapezoid_depth`` to rounding, from the
    cold-start guess and warm-started from the root of another flow up to 9 decades away (rectangles among the
    shapes), one level of 20,000 reaches and the same reaches one at a time (a level's slowest reach sets its
    passes: the others' depths move by rounding only); the float32 solve (float32 states) to float32 rounding."""
    from rivergraph.engine.compiled_trapezoid import SOLVERS, TOLERANCE, cold_depth
    from rivergraph.physics.channels import trapezoid_depth

    rng = np.random.default_rng(1)
    M = 20000
    B, n, S0 = 10 ** rng.uniform(-1, 3, M), rng.uniform(0.01, 0.3, M), 10 ** rng.uniform(-6, -0.5, M)
    z = np.where(rng.random(M) < 0.2, 0.0, 10 ** rng.uniform(-2, 1.5, M))
    Q0, Q1 = 10 ** rng.uniform(-4, 5, M), 10 ** rng.uniform(-4, 5, M)
    s, nk = np.sqrt(1 + z * z), n / np.sqrt(S0)
    h0, h1 = (trapezoid_depth(*(torch.from_numpy(x) for x in (Q, n, S0, B, z))).numpy() for Q in (Q0, Q1))
    K3 = (Q1 * nk) ** 3
    cold = np.array([cold_depth(Q1[i], nk[i], B[i]) for i in range(M)])
    f64, u = np.dtype(np.float64), np.uint64
    for start in (h0, cold):
        whole = start.copy()
        assert SOLVERS[f64](u(0), u(M), K3, B, z, s, whole, TOLERANCE[f64])
        assert np.abs(whole / h1 - 1).max() < 1e-13
        single = start.copy()
        for i in range(0, M, 97):
            assert SOLVERS[f64](u(i), u(i + 1), K3, B, z, s, single, TOLERANCE[f64])
            assert abs(single[i] / h1[i] - 1) < 1e-13
    # float32: the root of the float32-rounded equation (K3, B, z, s as the kernel holds them) to a few ulps; these
    # shapes and flows take A^5 past float32's range (depths up to 150 km): the kernels' float64 rescue solves them
    from rivergraph.engine.compiled_trapezoid import rescue_depths

    f32 = np.dtype(np.float32)
    K3f, Bf, zf, sf = (x.astype(np.float32) for x in (K3, B, z, s))
    exact = h1.copy()
    assert SOLVERS[f64](u(0), u(M), *(x.astype(np.float64) for x in (K3f, Bf, zf, sf)), exact, TOLERANCE[f64])
    for start in (h0, cold):
        h32 = start.astype(np.float32)
        if not SOLVERS[f32](u(0), u(M), K3f, Bf, zf, sf, h32, f32.type(TOLERANCE[f32])):
            rescue_depths(u(0), u(M), K3f, Bf, zf, sf, h32)
        assert h32.dtype == np.float32 and np.abs(h32 / exact - 1).max() < 5e-7


def test_depth_solve_rescue():
    """A level that does not converge (float32's A^5 beyond 3e38: a 150 km wide channel 500 m deep; NaN) is solved
    again reach by reach in float64 (``rescue_depths``); a reach that cannot converge gets NaN, never a wrong depth."""
    from rivergraph.engine.compiled_trapezoid import SOLVERS, TOLERANCE, rescue_depths

    B, z = np.array([1e5, 10.0, 10.0], np.float32), np.array([100.0, 1.0, 1.0], np.float32)
    s = np.sqrt(1 + z.astype(np.float64) ** 2).astype(np.float32)
    h = np.array([500.0, 1.0, 1.0])
    K3 = ((B + z * h) * h) ** 5 / (B + 2 * h * s) ** 2  # float64: the roots are h
    K3[2] = np.nan
    K3 = K3.astype(np.float32)
    hs, u, f32 = np.full(3, 400.0, np.float32), np.uint64, np.dtype(np.float32)
    assert not SOLVERS[f32](u(0), u(3), K3, B, z, s, hs, f32.type(TOLERANCE[f32]))
    rescue_depths(u(0), u(3), K3, B, z, s, hs)
    assert abs(hs[0] / 500.0 - 1) < 1e-6 and abs(hs[1] - 1.0) < 1e-6 and np.isnan(hs[2])


def test_float32_overflowing_depth_rescued_end_to_end():
    """A reach whose float32 depth equation overflows (reach 1: 100 km wide, z = 100, 2e9 m3/s, ~500 m deep: A^5
    past float32's 3e38; its downstream reaches deep too) routes with float32 states as with float64 ones: the
    kernel solves such a level again in float64 (``rescue_depths``); without it the flows would be NaN."""
    net = _tree()
    N = len(net)
    ps = _params(net, F64)
    ps["bottom_width"][0], ps["side_slope"][0] = 1e5, 100.0
    q = torch.ones(6, N, dtype=F64)
    q[:, 0] = 2e9
    out = {}
    for dt in (F64, torch.float32):
        r = MuskingumCunge(net, dt=3600.0, mode="trapezoid", engine="compiled")
        out[dt] = r(q.to(dt), hot_start=False, **{k: v.to(dt) for k, v in ps.items()}).double()
    assert torch.isfinite(out[torch.float32]).all() and out[F64].max() > 1e9
    assert (out[torch.float32] - out[F64]).abs().max() <= 1e-5 * out[F64].abs().max()
