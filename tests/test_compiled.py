"""The compiled (numba) CPU path: same results and gradients as the torch wavefront to rounding on a real Lower
Colorado subnetwork (every output layout, warm and cold starts, carried state), its checkpointed adjoint
bit-identical to its full-history one, and the engine choice."""
from __future__ import annotations

import pytest
import torch

from rivergraph.engine import Schedule, StaticMuskingum
from rivergraph.engine.cells import MuskingumCungeCell
from rivergraph.engine.compiled import available, use_compiled
from rivergraph.physics.channels import get_channel
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)
F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:positivity")


def test_numba_is_installed():
    assert available(), "numba is a dependency of rivergraph (pyproject.toml)"


def _run(net, engine, every=None, outputs=None, hot=True, dtype=F64, T=19):
    N = len(net)
    g = torch.Generator().manual_seed(5)
    q = (0.05 + 3.0 * torch.rand(T, N, generator=g, dtype=F64)).to(dtype).requires_grad_(True)
    k = torch.linspace(900.0, 9000.0, N, dtype=dtype).requires_grad_(True)
    x = torch.linspace(0.05, 0.4, N, dtype=dtype).requires_grad_(True)
    r = MuskingumCunge(net, dt=1800.0, mode="static", engine=engine, checkpoint_every=every)
    Q = r(q[:7], output_positions=outputs, hot_start=hot, k=k, x=x)
    Q2 = r(q[7:], output_positions=outputs, state=r.state, k=k, x=x)  # carried state
    out = torch.cat([Q, Q2])
    w = torch.linspace(0.1, 1.0, out.numel(), dtype=dtype).reshape(out.shape)
    ((out * w).sum() + r.state.Q.sum() + 0.5 * r.state.I.sum()).backward()
    return [out.detach(), q.grad, k.grad, x.grad], r.balance


@pytest.mark.parametrize("outputs,hot", [(None, True), (None, False), ([0, 2, 5], True)])
def test_compiled_matches_torch(small, outputs, hot):
    ref, bal = _run(small, "torch", outputs=outputs, hot=hot)
    got, bal_c = _run(small, "compiled", outputs=outputs, hot=hot)
    for a, b in zip(ref, got):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))
    assert abs(bal_c.residual_m3 - bal.residual_m3) <= 1e-9 * bal.inflow_m3
    assert abs(bal_c.storage_end_m3 - bal.storage_end_m3) <= 1e-12 * bal.storage_end_m3


def test_compiled_float32(small):
    ref, _ = _run(small, "torch", dtype=torch.float32)
    got, _ = _run(small, "compiled", dtype=torch.float32)
    for a, b in zip(ref, got):
        assert a.dtype == torch.float32 and torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("every", [1, 3, 50])
def test_compiled_checkpoint_bit_identical(small, every):
    ref, _ = _run(small, "compiled")
    got, _ = _run(small, "compiled", every=every)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scheme", ["conservative", "standard"])
@pytest.mark.parametrize("positivity", [True, False])
def test_compiled_power_law_forward_matches_torch(small, scheme, positivity):
    N = len(small)
    g = torch.Generator().manual_seed(2)
    q = 0.05 + 3.0 * torch.rand(23, N, generator=g, dtype=F64)
    kw = dict(width_coef=torch.linspace(3.0, 40.0, N, dtype=F64), width_exp=torch.linspace(0.2, 1.5, N, dtype=F64))
    res = {}
    for eng in ("torch", "compiled"):
        r = MuskingumCunge(small, dt=900.0, mode="power_law", engine=eng, scheme=scheme, positivity=positivity)
        with torch.no_grad():
            Q1 = r(q[:9], hot_start=False, **kw)
            Q2 = r(q[9:], state=r.state, output_positions=[0, 3, 4], **kw)
        res[eng] = (Q1, Q2, r.state.S, r.balance)
    a, b = res["torch"], res["compiled"]
    for x, y in zip(a[:3], b[:3]):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-12 * float(x.abs().max()))
    vol = a[3].inflow_m3
    for f in ("residual_m3", "parameter_drift_m3", "storage_start_m3", "storage_end_m3"):
        assert abs(getattr(a[3], f) - getattr(b[3], f)) <= 1e-10 * vol, f


def test_engine_choice(small):
    sched = Schedule.from_network(small)
    mc = MuskingumCungeCell(get_channel("compound_trapezoid"), 600.0)
    pl = MuskingumCungeCell(get_channel("power_law"), 600.0)
    tz = MuskingumCungeCell(get_channel("trapezoid"), 600.0)
    assert use_compiled(sched, StaticMuskingum(), "auto") and not use_compiled(sched, StaticMuskingum(), "torch")
    assert use_compiled(sched, StaticMuskingum(), "auto", needs_grad=True)
    assert not use_compiled(sched, mc, "auto")
    assert use_compiled(sched, pl, "auto") and use_compiled(sched, pl, "auto", needs_grad=True)
    assert use_compiled(sched, pl, "compiled", needs_grad=True)
    assert use_compiled(sched, tz, "auto") and use_compiled(sched, tz, "compiled", needs_grad=True)
    with pytest.raises(ValueError, match="no compiled kernel for MuskingumCungeCell"):
        use_compiled(sched, mc, "compiled")
    assert use_compiled(sched, tz, "auto", dtype=torch.float32) and not use_compiled(sched, tz, "auto",
                                                                                     dtype=torch.float16)
    with pytest.raises(ValueError, match="runs float32 and float64, not torch.float16"):
        use_compiled(sched, tz, "compiled", dtype=torch.float16)
    with pytest.raises(ValueError, match="engine must be one of"):
        MuskingumCunge(small, mode="static", engine="fast")


def numba_loaded(setup: str, torch_run: str, compiled_run: str) -> list[str]:
    """In a fresh interpreter on the Lower Colorado (``net``, ``d``): whether numba is imported after
    ``torch_run`` and after ``compiled_run`` (statements; ``setup`` first), as ``["False", "True"]`` strings."""
    import subprocess
    import sys

    code = ("import sys, torch; from rivergraph import MuskingumCunge; from rivergraph.datasets import "
            f"load_lower_colorado; net, d = load_lower_colorado(); {setup}; {torch_run}; a = 'numba' in sys.modules; "
            f"{compiled_run}; print(a, 'numba' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_numba_loaded_only_for_the_compiled_path():
    """``import rivergraph`` and the torch engine do not import numba (~55 MB, ~0.25 s); the compiled path does."""
    assert numba_loaded("q = torch.as_tensor(d['q_lateral'][:3]).float()",
                        "MuskingumCunge(net, dt=3600.0, mode='static', engine='torch')(q)",
                        "MuskingumCunge(net, dt=3600.0, mode='static', engine='compiled')(q)") == ["False", "True"]


def test_stale_kernel_caches_are_dropped(tmp_path):
    """engine/compiled_base.drop_stale_kernel_caches: numba's caches of the kernels go when a kernel source
    changes (numba itself only watches each function's own file), and stay while nothing changed."""
    from rivergraph.engine.compiled_base import drop_stale_kernel_caches

    (tmp_path / "compiled_a.py").write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    stale = [cache / "compiled_a.f-1.py311.nbi", cache / "compiled_a.f-1.py311.1.nbc"]
    other = cache / "unrelated.cpython-311.pyc"
    for f in (*stale, other):
        f.write_bytes(b"old")
    assert drop_stale_kernel_caches(tmp_path)  # no digest yet: dropped
    assert not any(f.exists() for f in stale) and other.exists()
    for f in stale:
        f.write_bytes(b"fresh")
    assert not drop_stale_kernel_caches(tmp_path)  # unchanged sources: kept
    assert all(f.exists() for f in stale)
    (tmp_path / "compiled_a.py").write_text("x = 2\n")
    assert drop_stale_kernel_caches(tmp_path)
    assert not any(f.exists() for f in stale)
