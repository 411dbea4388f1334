"""The physics-first trapezoid with the NWM floodplain (``mode="compound_trapezoid"``)."""
from __future__ import annotations

import torch
from torch.autograd import gradcheck

from rivergraph.models import MuskingumCunge
from rivergraph.physics.channels import compound_celerity, trapezoid_celerity
from rivergraph.physics.nwm import NWMChannel


def _section(n_rows: int = 40):
    torch.manual_seed(0)
    Q = torch.rand(n_rows, dtype=torch.float64) * 12 + 0.01  # bankfull flow of this section: 3.62 m3/s
    full = lambda v: torch.full_like(Q, v)  # noqa: E731
    return Q, dict(n=full(0.05), ncc=full(0.1), S0=full(1e-3), B=full(5.0), z=full(2.0), tw=full(9.0),
                   twcc=full(27.0))


def test_without_floodplain_it_is_the_trapezoid():
    Q, p = _section()
    c0, T0 = trapezoid_celerity(Q, p["n"], p["S0"], p["B"], p["z"])
    for ncc, twcc in ((torch.zeros_like(Q), p["twcc"]), (p["ncc"], torch.zeros_like(Q))):
        c, T = compound_celerity(Q, p["n"], ncc, p["S0"], p["B"], p["z"], p["tw"], twcc)
        torch.testing.assert_close(c, c0, rtol=1e-12, atol=0)
        torch.testing.assert_close(T, T0, rtol=1e-12, atol=1e-12)


def test_floodplain_above_bankfull_and_exact_gradients():
    Q, p = _section()
    c, T = compound_celerity(Q, p["n"], p["ncc"], p["S0"], p["B"], p["z"], p["tw"], p["twcc"])
    above = T == 27.0
    assert above.sum() >= 10 and (~above).sum() >= 1 and bool((c > 0).all())
    args = [x[:6].clone().requires_grad_(True) for x in (Q, p["n"], p["ncc"], p["B"], p["twcc"])]

    def f(q, n, ncc, b, twcc):
        return compound_celerity(q, n, ncc, p["S0"][:6], b, p["z"][:6], p["tw"][:6], twcc)[0]

    assert gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)
    ones = torch.ones_like(Q)
    ch = NWMChannel(ones, p["n"], p["ncc"], p["S0"], p["B"], p["tw"], p["twcc"], p["z"])
    assert ch.bfd[0] == 1.0  # (9 - 5) / (2 * 2)


def test_routes_a_real_subnetwork_and_conserves_water(small):
    net = small
    q = torch.rand(30, len(net), dtype=torch.float64) * 5.0  # storms well above bankfull on small reaches
    r = MuskingumCunge(net, dt=3600.0, mode="compound_trapezoid")
    Q = r(q)
    assert torch.isfinite(Q).all() and bool((Q >= -1e-12).all())
    assert abs(r.balance.relative_error) < 1e-10
    Qt = MuskingumCunge(net, dt=3600.0, mode="trapezoid")(q)
    assert not torch.allclose(Q, Qt)  # the floodplain slows the flood wave
