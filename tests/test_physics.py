"""Physics units on tiny inputs: Muskingum coefficients and storage, the channel registry and celerities."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import MuskingumCunge, build_network
from rivergraph.models.params import ROUTING_OUTPUTS
from rivergraph.physics.channels import (CHANNELS, LENGTH, N, SLOPE, CungeChannel, ParamSpec, get_channel,
                                         learnable_parameters, parameter_spec, power_law_celerity, register_channel,
                                         trapezoid_celerity)
from rivergraph.physics.muskingum import (effective_x, mc_step, muskingum_coefficients, muskingum_storage,
                                          storage_weights, water_volume_history)

F64 = torch.float64


def test_coefficients_sum_and_positivity():
    K = torch.tensor([100.0, 1800.0, 3600.0, 20000.0], dtype=F64)
    X = torch.tensor([0.45, 0.3, 0.2, 0.0], dtype=F64)
    for pos in (False, True):
        c1, c2, c3, c4 = muskingum_coefficients(K, X, 3600.0, pos)
        torch.testing.assert_close(c1 + c2 + c3, torch.ones_like(K))
        torch.testing.assert_close(c4, c1 + c2)
    c = torch.stack(muskingum_coefficients(K, X, 3600.0, True))
    assert (c >= -1e-15).all()
    assert (torch.stack(muskingum_coefficients(K, X, 3600.0, False)) < 0).any()  # without: c1 or c3 < 0


def test_storage_weights_invert_the_coefficients():
    K = torch.tensor([900.0, 3600.0, 7200.0], dtype=F64)
    X = torch.tensor([0.1, 0.25, 0.4], dtype=F64)
    for pos in (False, True):
        Xe = effective_x(K, X, 3600.0, pos)
        kx, k1x = storage_weights(*muskingum_coefficients(K, X, 3600.0, pos), 3600.0)
        torch.testing.assert_close(kx, K * Xe)
        torch.testing.assert_close(k1x, K * (1.0 - Xe))
    I, Q = torch.tensor([1.0, 2.0, 3.0], dtype=F64), torch.tensor([4.0, 5.0, 6.0], dtype=F64)
    torch.testing.assert_close(muskingum_storage(K * X, K * (1 - X), I, Q), K * X * I + K * (1 - X) * Q)


def test_conservative_and_standard_steps_agree_for_constant_K_X():
    """With constant K, X and S(t-1) the storage of the flows, both update forms give the same Q(t), S(t)."""
    K = torch.tensor([1500.0, 4000.0], dtype=F64)
    X = torch.tensor([0.2, 0.3], dtype=F64)
    fn = lambda r, K, X: muskingum_coefficients(K, X, 900.0)  # noqa: E731  constant in the reference flow
    I_new, I_old, Q_old, q = (torch.tensor(v, dtype=F64) for v in ([3.0, 1.0], [2.0, 2.0], [2.5, 1.5], [0.2, 0.1]))
    kx, k1x = storage_weights(*fn(None, K, X), 900.0)
    S_prev = muskingum_storage(kx, k1x, I_old, Q_old)
    a = mc_step(fn, True, 900.0, I_new, I_old, Q_old, S_prev, q, 0, K, X)
    b = mc_step(fn, False, 900.0, I_new, I_old, Q_old, S_prev * 0.0, q, 0, K, X)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-13, atol=1e-12)
    # continuity: S(t) - S(t-1) = dt [(I(t-1) + I(t))/2 + q - (Q(t-1) + Q(t))/2]
    Q_new, S_new, S_used = a
    torch.testing.assert_close(S_new - S_used, 900.0 * (0.5 * (I_old + I_new) + q - 0.5 * (Q_old + Q_new)))


def test_water_volume_history_is_continuous():
    T, N, dt = 5, 3, 600.0
    g = torch.Generator().manual_seed(0)
    Q, I, q = (torch.rand(T, N, generator=g, dtype=F64) for _ in range(3))
    W = water_volume_history(Q, I, q, torch.full((N,), 1e4, dtype=F64), dt)
    torch.testing.assert_close(W[1:] - W[:-1], dt * (I + q - Q))
    torch.testing.assert_close(W[-1], 1e4 + 0.5 * dt * (I[-1] - Q[-1]))


def test_celerities_are_dQ_dA():
    """Kinematic celerity c = dQ/dA at normal depth: the power law's closed form from its depth, the trapezoid's
    against autograd of Manning's equation (c = (dQ/dh) / T)."""
    n, S0 = torch.tensor(0.04, dtype=F64), torch.tensor(1e-3, dtype=F64)
    Q = torch.tensor([0.5, 5.0, 80.0], dtype=F64)
    for fn, geom in ((trapezoid_celerity, (torch.tensor(6.0, dtype=F64), torch.tensor(1.5, dtype=F64))),
                     (power_law_celerity, (torch.tensor(20.0, dtype=F64), torch.tensor(0.5, dtype=F64)))):
        c, T = fn(Q, n, S0, *geom)
        assert (c > 0).all() and (T[1:] > T[:-1]).all()  # wider with more flow
    # power law closed form vs the same quantities from the depth: c = (q + 5/3)/(q + 1) Q/A
    p, qe = 20.0, 0.5
    c, T = power_law_celerity(Q, n, S0, torch.tensor(p, dtype=F64), torch.tensor(qe, dtype=F64))
    d = (T / p) ** (1 / qe)
    A = p * d ** (qe + 1) / (qe + 1)
    torch.testing.assert_close(c, (qe + 5 / 3) / (qe + 1) * Q / A)
    # trapezoid: c = dQ/dh / T by autograd of Manning's equation at the solved depth
    from rivergraph.physics.channels import trapezoid_depth

    B, z = torch.tensor(6.0, dtype=F64), torch.tensor(1.5, dtype=F64)
    h = trapezoid_depth(Q, n, S0, B, z).detach().requires_grad_(True)
    A = (B + z * h) * h
    P = B + 2 * h * torch.sqrt(1 + z * z)
    Qh = A * (A / P) ** (2 / 3) * torch.sqrt(S0) / n
    torch.testing.assert_close(Qh.detach(), Q)
    (dQdh,) = torch.autograd.grad(Qh.sum(), h)
    c, T = trapezoid_celerity(Q, n, S0, B, z)
    torch.testing.assert_close(c, dQdh / (B + 2 * z * h.detach()))


# ------------------------------------------------------------------ the registry
def test_registry_declares_every_parameter_once():
    assert {"static", "trapezoid", "power_law"} <= set(CHANNELS)
    seen: dict[str, ParamSpec] = {}
    for ch in CHANNELS.values():
        assert len(set(ch.param_names)) == len(ch.param_names)
        for p in ch.params:
            assert seen.setdefault(p.name, p) is p  # one declaration per name, shared between geometries
    assert parameter_spec("n").bounds == (0.01, 0.3)
    assert parameter_spec("q") is parameter_spec("width_exp")  # deprecated alias
    # the learnable specs a ParameterNet uses are the registry's bounds
    assert set(ROUTING_OUTPUTS) == set(learnable_parameters()) == {"n", "width_coef", "width_exp"}
    for k, spec in ROUTING_OUTPUTS.items():
        assert (spec.lo, spec.hi) == parameter_spec(k).bounds
    with pytest.raises(ValueError, match="unknown routing mode 'kinematic'.*static"):
        get_channel("kinematic")


def test_a_new_geometry_is_one_class_and_one_registration():
    """A rectangle (power law with exponent 0, written on its own) routes through the router by name and
    matches the power law it equals."""

    class Rectangle(CungeChannel):
        name = "test_rectangle"
        params = (N, SLOPE, ParamSpec("width", "bottom_width_m", "m", positive=True), LENGTH)

        def celerity(self, Q, n, slope, width, length):
            return power_law_celerity(Q, n, slope, width, torch.zeros_like(width))

    register_channel(Rectangle)
    try:
        net = build_network([1, 2, 3], [3, 3, 0], attrs=pd.DataFrame(
            {"length_m": [2000.0, 3000.0, 4000.0], "slope": 1e-3, "n": 0.04, "bottom_width_m": [5.0, 8.0, 12.0]}))
        q = torch.rand(12, 3, generator=torch.Generator().manual_seed(0), dtype=F64) + 0.2
        Q = MuskingumCunge(net, dt=900.0, mode="test_rectangle")(q)
        ref = MuskingumCunge(net, dt=900.0, mode="power_law")(
            q, width_coef=torch.tensor(net.attrs["bottom_width_m"].to_numpy(np.float64)), width_exp=0.0)
        torch.testing.assert_close(Q, ref, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="'width' must be positive"):
            MuskingumCunge(net, dt=900.0, mode="test_rectangle")(q, width=torch.tensor([1.0, 0.0, 2.0], dtype=F64))
    finally:
        del CHANNELS["test_rectangle"]


def test_deprecated_power_law_names_warn_and_agree():
    net = build_network([1, 2], [2, 0], attrs=pd.DataFrame({"length_m": [2000.0, 3000.0], "slope": 1e-3,
                                                             "n": 0.04}))
    q = torch.full((6, 2), 1.0, dtype=F64)
    r = MuskingumCunge(net, dt=900.0, mode="power_law")
    new = r(q, width_coef=20.0, width_exp=0.5)
    with pytest.warns(DeprecationWarning, match="'q' is deprecated; call it 'width_exp'"):
        old = r(q, p=20.0, q=0.5)
    torch.testing.assert_close(old, new, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError, match="given twice"):
            r(q, width_coef=20.0, p=20.0, width_exp=0.5)
