"""The compiled (numba) secant depth solve of mode "nwm" (:mod:`rivergraph.engine.compiled_nwm`) against the torch
:func:`rivergraph.physics.nwm.secant_depth` it reproduces, on random channels and on the Lower Colorado's, and the
router end to end with ``engine="torch"`` against the compiled path.

The two run the same operations in the same order; torch's vectorised ``pow`` differs from libm's in the last bit
for some arguments, so the values agree to rounding: most reaches bit for bit, all to <= 1e-10 relative (the
residual ``qj0_prev`` and the slope relative to the flows, as they are differences of nearly equal flows)."""
from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch
from test_compiled import numba_loaded

import rivergraph.models.nwm as nwm_model
import rivergraph.physics.nwm as nwm
from rivergraph.engine.compiled_nwm import finish_compiled, secant_depth_compiled, secant_kernel
from rivergraph.engine.compiled_nwm_adjoint import finish, finish_with_grad
from rivergraph.models import MuskingumCunge
from rivergraph.models.nwm import NWMRouter
from rivergraph.physics.nwm import NWMChannel, normal_depth, secant_depth

D = torch.float64
FIELDS = ("h0", "h", "qj0_prev", "h_new", "slope")


def _random_case(N=6000, seed=0):
    """Random NWM channels and flows: a tenth with bw == tw, a tenth with bw > tw (bankfull 'infinite'), a fifth
    without floodplain (twcc = 0); flows over five decades, start depths 0.2-3x normal (below and above bankfull),
    and a tenth of the reaches with some of qup, quc, qdp, ql zero (2 % all zero)."""
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(N, generator=g, dtype=D)  # noqa: E731
    pick = torch.rand(N, generator=g)
    bw = u(1.0, 50.0)
    tw = torch.where(pick < 0.1, bw, torch.where(pick < 0.2, bw * u(0.5, 0.99), bw * u(1.05, 3.0)))
    twcc = torch.where(torch.rand(N, generator=g) < 0.2, torch.zeros(N, dtype=D), tw * u(1.5, 6.0))
    ch = NWMChannel(dx=u(100.0, 5000.0), n=u(0.02, 0.1), ncc=u(0.05, 0.2), s0=10 ** u(-5.0, -1.0), bw=bw, tw=tw,
                    twcc=twcc, z=u(0.5, 5.0))
    q = 10 ** u(-2.0, 3.0)
    flows = [q * u(0.0, 2.0), None, q * u(0.0, 2.0), u(0.0, 5.0)]
    flows[1] = flows[0] * u(0.5, 1.5)
    for k, f in enumerate(flows):
        f[(torch.rand(N, generator=g) < 0.1 * (k + 1) / 4) | (pick > 0.98)] = 0.0
    depth = normal_depth(q * u(0.2, 3.0), ch)
    return depth, ch, flows


def _kernel(depth, ch, flows, max_iter=nwm.MAX_ITER, max_tries=nwm.MAX_TRIES, dt=300.0):
    """The compiled kernel's five outputs with the given iteration limits."""
    a = lambda x: x.detach().double().contiguous().numpy()  # noqa: E731
    outs = [np.empty(depth.shape[0]) for _ in FIELDS]
    secant_kernel(a(depth), *(a(getattr(ch, f)) for f in ("dx", "n", "ncc", "s0", "bw", "tw", "twcc", "z")),
                  *(a(f) for f in flows), dt, nwm.DEPTH_RTOL, nwm.MIN_DEPTH, nwm.MIN_DEPTH, max_iter, max_tries, *outs,
                  np.empty((4, depth.shape[0])))
    return [torch.from_numpy(o) for o in outs]


def _assert_same(ref, got, flows, what=""):
    """All five outputs to 1e-10 relative, >= 99 % of reaches to 1e-13: the depths relative to themselves (h_new,
    = h + a secant step, relative to h as well: where the step is about -h, h_new is tiny), the residual relative
    to the flows, the slope (a difference quotient of residuals) to the flows over h_0 - h."""
    qs = sum(f.abs() for f in flows) + ref.qj0_prev.abs() + 1e-3
    scales = {"h0": ref.h0.abs(), "h": ref.h.abs(), "h_new": ref.h_new.abs() + ref.h.abs(), "qj0_prev": qs,
              "slope": ref.slope.abs() + qs / (ref.h0 - ref.h).abs()}
    for f, x in zip(FIELDS, got):
        r = getattr(ref, f)
        assert torch.isfinite(r).all() and torch.isfinite(x).all(), (what, f)
        err = (r - x).abs() / scales[f].clamp(min=1e-300)
        assert float(err.max()) <= 1e-10, (what, f, float(err.max()), int(err.argmax()))
        assert float((err <= 1e-13).double().mean()) >= 0.99, (what, f)


def test_compiled_secant_equals_torch_on_random_channels():
    depth, ch, flows = _random_case()
    ref = secant_depth(depth, ch, 300.0, *flows)
    got = secant_depth_compiled(depth, ch, 300.0, *flows, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
    _assert_same(ref, [getattr(got, f) for f in FIELDS], flows, "NWM limits")
    # the cases covered
    bfd = ch.bfd
    over = ref.h_new > bfd
    assert (over & (ch.twcc > 0)).sum() > 100 and (over & (ch.twcc == 0)).sum() > 10 and (~over).sum() > 1000
    assert (ch.bw == ch.tw).sum() > 100 and (ch.bw > ch.tw).sum() > 100
    assert (flows[0] == 0).sum() > 100 and (torch.stack(flows).abs().sum(0) == 0).sum() > 10
    # reaches that hit maxiter (their result changes with the number of restarts allowed), one of them 4 times
    assert torch.equal(_kernel(depth, ch, flows)[3], got.h_new)
    restarted = [(_kernel(depth, ch, flows, max_tries=k)[3] != got.h_new).sum() for k in (0, 3)]
    assert restarted[0] >= 3 and restarted[1] >= 1


def test_compiled_secant_equals_torch_through_many_restarts(monkeypatch):
    """With 3 iterations before a restart most reaches restart, some of them more than once."""
    depth, ch, flows = _random_case(3000, seed=1)
    monkeypatch.setattr(nwm, "MAX_ITER", 3)
    ref = secant_depth(depth, ch, 300.0, *flows)
    got = _kernel(depth, ch, flows, max_iter=3)
    _assert_same(ref, got, flows, "max_iter 3")
    tries = [_kernel(depth, ch, flows, max_iter=3, max_tries=k)[3] for k in range(5)]
    assert torch.equal(tries[4], got[3])
    assert (tries[0] != tries[4]).float().mean() > 0.5 and (tries[1] != tries[4]).sum() >= 3


def test_compiled_secant_equals_torch_on_the_lower_colorado(lc, monkeypatch):
    """The secant's inputs of every routing sub-step of 3 hours of the Lower Colorado (level-pool lakes), as the
    router passes them: both solvers on the same inputs; the torch one drives the run."""
    net, data = lc
    seen = []

    def both(depth, ch, dt, qup, quc, qdp, ql, rtol, atol):
        ref = secant_depth(depth, ch, dt, qup, quc, qdp, ql, rtol, atol)
        got = secant_depth_compiled(depth, ch, dt, qup, quc, qdp, ql, rtol, atol)
        _assert_same(ref, [getattr(got, f) for f in FIELDS], (qup, quc, qdp, ql), f"step {len(seen)}")
        seen.append(int(depth.shape[0]))
        return ref

    monkeypatch.setattr(nwm_model, "_depth_solver", lambda engine, device: (both, None))
    r = NWMRouter(net, dt=300.0, forcing_dt=3600.0, lakes=data["lakeparm"])
    with torch.no_grad():
        r(data["q_lateral"].double()[1:4], Q0=data["streamflow"].double()[0])
    assert len(seen) == 36 and min(seen) > 10_000


def _no_floodplain_pair():
    """The same random channels with nCC = 0 and with TopWdthCC = 0: the NWM uses the floodplain only where both
    are > 0 (SUBMUSKINGCUNGE), so the two are the same channel."""
    depth, ch, flows = _random_case(2000, seed=4)
    fields = {f: getattr(ch, f) for f in ch.__dataclass_fields__}
    return (depth, NWMChannel(**{**fields, "ncc": torch.zeros_like(ch.ncc)}),
            NWMChannel(**{**fields, "twcc": torch.zeros_like(ch.twcc)}), flows)


def test_compiled_secant_without_floodplain_roughness_is_the_nwm_rule():
    depth, no_ncc, no_twcc, flows = _no_floodplain_pair()
    a, b = (secant_depth_compiled(depth, c, 300.0, *flows, nwm.DEPTH_RTOL, nwm.MIN_DEPTH) for c in (no_ncc, no_twcc))
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def test_torch_secant_without_floodplain_roughness_is_the_nwm_rule():
    """nCC = 0 drops the floodplain as TwCC = 0 does (the NWM's rule); torch's celerity gave rs / 0 * 0 = NaN
    there until 2026-12-02, read as Ck = 0: every such reach a pass-through."""
    depth, no_ncc, no_twcc, flows = _no_floodplain_pair()
    a, b = (secant_depth(depth, c, 300.0, *flows) for c in (no_ncc, no_twcc))
    assert torch.allclose(a.h_new, b.h_new, rtol=1e-12)


@pytest.mark.parametrize("grad", [True, False])
def test_router_compiled_equals_torch_end_to_end(lc, grad):
    """mode="nwm" on the Lower Colorado, 3 hours, level-pool lakes: outputs, state, balance and (with gradients)
    the gradient with respect to Manning's n, engine="torch" against the compiled path; without gradients the
    step's end after the secant is compiled too (``finish_kernel``)."""
    net, data = lc
    q = data["q_lateral"].double()[1:4]
    out = {}
    for engine in ("torch", "compiled"):
        r = MuskingumCunge(net, dt=300.0, forcing_dt=3600.0, mode="nwm", output="end", engine=engine,
                           nwm={"lakes": data["lakeparm"]})
        n = torch.as_tensor(net.attrs["n"].to_numpy(dtype=np.float64)).requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            Q = r(q, Q0=data["streamflow"].double()[0], n=n)
        g = torch.autograd.grad(torch.nan_to_num(Q).square().sum(), n)[0] if grad else None
        out[engine] = Q.detach(), r.state.depth, g, r.balance
    (Qt, dt_, gt, bt), (Qc, dc, gc, bc) = out["torch"], out["compiled"]
    assert torch.equal(torch.isnan(Qt), torch.isnan(Qc)) and torch.isnan(Qt).any()
    ok = ~torch.isnan(Qt)
    assert torch.allclose(Qc[ok], Qt[ok], rtol=1e-10, atol=1e-12)
    assert torch.allclose(dc, dt_, rtol=1e-10, atol=1e-12)
    if grad:
        assert torch.allclose(gc, gt, rtol=1e-8, atol=1e-12 * float(gt.abs().max())) and (gt != 0).sum() > 1000
    assert abs(bc.relative_error - bt.relative_error) < 1e-12 and bc.created_m3 == bt.created_m3


def test_engine_choice_and_errors(lc, monkeypatch):
    net, data = lc
    assert nwm_model._depth_solver("torch", torch.device("cpu")) == (secant_depth, None)
    assert nwm_model._depth_solver("auto", torch.device("cpu")) == (secant_depth_compiled, finish)
    assert nwm_model._depth_solver("auto", torch.device("meta")) == (secant_depth, None)
    with pytest.raises(ValueError, match="engine must be one of"):
        NWMRouter(net, engine="fast")
    with pytest.raises(ValueError, match="CPU only"):
        MuskingumCunge(net, mode="nwm", engine="compiled", device="meta")
    monkeypatch.setattr(nwm_model, "available", lambda: False)
    with pytest.raises(ValueError, match="numba is not installed"):
        NWMRouter(net, engine="compiled")
    assert nwm_model._depth_solver("auto", torch.device("cpu")) == (secant_depth, None)


def test_numba_loaded_only_for_the_compiled_secant():
    """mode="nwm" with engine="torch" does not import numba; the default (auto, CPU) does."""
    assert numba_loaded("q = d['q_lateral'][1:2].double(); kw = dict(dt=300.0, forcing_dt=3600.0, mode='nwm')",
                        "MuskingumCunge(net, engine='torch', **kw)(q)", "MuskingumCunge(net, **kw)(q)") == ["False", "True"]


def test_compiled_finish_matches_torch():
    """The no-gradient end of mc_step (final coefficients, C4 guard, negative-outflow rule) compiled against torch's
    on the random channels, from the same secant result: outflow, created water, K and X to 1e-12 relative of the
    flows; the negative-outflow rule fires on some reaches (checked)."""
    depth, ch, flows = _random_case()
    active = (flows[3] > 0) | (flows[0] > 0) | (flows[2] > 0)
    idx = active.nonzero().flatten()
    c = ch.index(idx)
    fl = [f.index_select(0, idx) for f in flows]
    sr = secant_depth(depth.index_select(0, idx), c, 300.0, *fl, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
    ref = nwm._finish(sr, c, 300.0, *fl, False)
    got = finish_compiled(sr, c, 300.0, *fl)
    scale = sum(f.abs() for f in fl) + 1e-3
    for name, r, g in zip(("outflow", "created", "K", "X"), ref, got):
        den = scale if name in ("outflow", "created") else r.abs() + 1e-12
        assert ((g - r).abs() / den).max() < 1e-12, name
    assert (ref[1] > 0).sum() > 0  # the rule is exercised
    # the compiled secant's own end of step (from its last interval) is finish_kernel's from its points, bit for bit
    sc = secant_depth_compiled(depth.index_select(0, idx), c, 300.0, *fl, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
    assert sc.end is not None and finish_compiled(sc, c, 300.0, *fl) is sc.end
    again = finish_compiled(dataclasses.replace(sc, end=None), c, 300.0, *fl)
    assert all(torch.equal(a, b) for a, b in zip(sc.end, again))


@pytest.mark.parametrize("compiled", [False, True])
def test_mc_step_all_active_equals_gathered(compiled):
    """physics/nwm.mc_step where every reach routes water (no gather, no scatter) gives the values of the
    gathered path (the same reaches beside one dry reach), torch's end of step and the compiled one."""
    depth, ch, flows = _random_case(N=2000, seed=5)
    flows = [f + 0.5 for f in flows]  # every reach active
    solver = (secant_depth_compiled, finish) if compiled else (None, None)
    full = nwm.mc_step(*flows, depth, ch, 300.0, depth_solver=solver[0], finish=solver[1])
    pad = lambda x, v: torch.cat([x, torch.tensor([v], dtype=D)])  # noqa: E731
    ch1 = NWMChannel(*(pad(x, float(x[0])) for x in ch.fields()))
    part = nwm.mc_step(*(pad(f, 0.0) for f in flows), pad(depth, 0.0), ch1, 300.0, depth_solver=solver[0],
                       finish=solver[1])
    for a, b in zip(full, part):
        assert torch.equal(a, b[:-1])


def test_compiled_channel_arrays_follow_in_place_changes():
    """The compiled kernels' float64 copy of a channel is kept on it only while its tensors are unchanged: an
    in-place change of Manning's n gives the fresh channel's depths, not the old ones."""
    depth, ch, flows = _random_case(N=500, seed=6)
    args = (300.0, *flows, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
    before = secant_depth_compiled(depth, ch, *args).h_new
    ch.n.mul_(1.5)
    after = secant_depth_compiled(depth, ch, *args).h_new
    fresh = secant_depth_compiled(depth, NWMChannel(*(x.clone() for x in ch.fields())), *args).h_new
    assert torch.equal(after, fresh) and not torch.equal(after, before)


def _grads(end, sr, c, fl, w):
    """The outflow of an end of step and its gradients (weights ``w``) for the flows and every channel parameter."""
    ins = [f.clone().requires_grad_() for f in fl]
    cg = NWMChannel(*(x.clone().requires_grad_() for x in c.fields()))
    q = end(sr, cg, 300.0, *ins)[0]
    return q.detach(), torch.autograd.grad((q * w).sum(), [*ins, *cg.fields()])


def test_compiled_adjoint_equals_torch_gradients():
    """The hand-written adjoint of the compiled end of step (compiled_nwm_adjoint) against torch's autograd of the
    same implicit-function rule (physics.nwm._finish), from the same secant result on the random channels (both
    sides of bankfull, floodplain or none, the C4 guard, the negative-outflow rule): the outflow and its gradient
    for all four flows and the eight channel parameters, to 1e-9 relative (1e-12 of the largest where a gradient is
    rounding noise about 0)."""
    depth, ch, flows = _random_case()
    flows[3] = flows[3] - 1.0  # losses too: the guard and the negative-outflow rule
    active = (flows[3] > 0) | (flows[0] > 0) | (flows[2] > 0)
    idx = active.nonzero().flatten()
    c = ch.index(idx)
    fl = [f.index_select(0, idx) for f in flows]
    sr = secant_depth(depth.index_select(0, idx), c, 300.0, *fl, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
    w = torch.randn(len(idx), generator=torch.Generator().manual_seed(1), dtype=D)
    qt, gt = _grads(lambda *a: nwm._finish(*a, True), sr, c, fl, w)
    qc, gc = _grads(finish_with_grad, sr, c, fl, w)
    assert torch.equal(qc, finish_compiled(sr, c, 300.0, *fl)[0])
    assert torch.allclose(qc, qt, rtol=1e-12, atol=1e-12)
    names = ("qup", "quc", "qdp", "ql", *c.__dataclass_fields__)
    for name, a, b in zip(names, gt, gc):
        assert ((a - b).abs() <= 1e-9 * a.abs() + 1e-12 * float(a.abs().max())).all(), name
        assert (a != 0).sum() > 100, name  # every gradient exercised
    created = nwm._finish(sr, c, 300.0, *fl, False)[1]
    assert (created > 0).sum() > 10 and (sr.h > c.bfd).sum() > 100


def test_compiled_adjoint_keeps_three_values_per_reach_step():
    """With gradients the compiled end of step saves the secant's last points and the flows (seven [N] tensors,
    besides the channel's own tensors, which it keeps for torch's in-place check): no torch graph of the residual
    evaluations (~290 floats per reach-step). An in-place change of a parameter before the backward is an error,
    not a wrong gradient."""
    from rivergraph.engine.lagged import saved_bytes

    depth, ch, flows = _random_case(N=1000, seed=7)
    flows = [f + 0.5 for f in flows]
    c = NWMChannel(*(x.clone().requires_grad_() for x in ch.fields()))
    step = lambda: nwm.mc_step(*flows, depth, c, 300.0, depth_solver=secant_depth_compiled, finish=finish)  # noqa: E731
    (q, *_), nbytes = saved_bytes(step)
    assert q.requires_grad and nbytes == (7 + 8) * 1000 * 8
    (qt, *_), tbytes = saved_bytes(lambda: nwm.mc_step(*flows, depth, c, 300.0))
    assert tbytes > 15 * nbytes and torch.allclose(q, qt, rtol=1e-10)
    q = step()[0]  # without the counting hooks (torch checks saved tensors' versions only without hooks)
    with torch.no_grad():
        c.n.mul_(1.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        q.sum().backward()


def test_parallel_kernels_follow_torch_threads_and_give_the_same_values():
    """The compiled NWM kernels loop over reaches on torch's thread count (compiled_base.kernel_threads): the same
    values bit for bit on one thread and on two, secant, end of step and adjoint."""
    from rivergraph.engine.compiled_base import kernel_threads, numba

    depth, ch, flows = _random_case(N=4000, seed=8)
    active = (flows[3] > 0) | (flows[0] > 0) | (flows[2] > 0)
    idx = active.nonzero().flatten()
    c, fl = ch.index(idx), [f.index_select(0, idx) for f in flows]
    w = torch.randn(len(idx), generator=torch.Generator().manual_seed(2), dtype=D)
    before = torch.get_num_threads()
    runs = []
    try:
        for k in (1, 2):
            torch.set_num_threads(k)
            assert kernel_threads() == min(k, numba.config.NUMBA_NUM_THREADS) == numba.get_num_threads()
            sr = secant_depth_compiled(depth.index_select(0, idx), c, 300.0, *fl, nwm.DEPTH_RTOL, nwm.MIN_DEPTH)
            runs.append((sr, _grads(finish_with_grad, sr, c, fl, w)))
    finally:
        torch.set_num_threads(before)
    (a, (qa, ga)), (b, (qb, gb)) = runs
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in FIELDS)
    assert torch.equal(qa, qb) and all(torch.equal(x, y) for x, y in zip(ga, gb))
