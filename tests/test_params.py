"""ParameterNet / AttributeScaler: hard bounds, scaling, exact init, normalisation saved with the model."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import NetworkError, build_network
from rivergraph.models.params import AttributeScaler, OutputSpec, ParameterNet

torch.set_num_threads(1)


def _net(n=6):
    # a chain 0 -> 1 -> ... -> n-1 with attributes spanning orders of magnitude
    ids = np.arange(1, n + 1)
    down = np.r_[ids[1:], 0]
    attrs = pd.DataFrame({"drainage_area_km2": np.logspace(0, 4, n),
                          "slope": np.linspace(1e-4, 1e-2, n), "length_m": np.linspace(500, 5000, n),
                          "order": np.arange(n) // 2 + 1, "elevation_m": np.linspace(800, 50, n)})
    return build_network(ids, down, attrs)


@pytest.mark.parametrize("scaling,lo,hi", [("sigmoid", 0.0, 3.0), ("log", 0.01, 0.3), ("log", 1.0, 200.0)])
def test_squash_stays_in_bounds_and_inverts(scaling, lo, hi):
    s = OutputSpec(lo, hi, scaling)
    z = torch.linspace(-60, 60, 1001, dtype=torch.float64)
    v = s.squash(z)
    assert float(v.min()) >= lo and float(v.max()) <= hi * (1 + 1e-12)
    assert torch.all(v[1:] >= v[:-1])  # monotone
    for x in (lo + 0.1 * (hi - lo), 0.5 * (lo + hi), hi - 0.01 * (hi - lo)):
        assert float(s.squash(torch.tensor(s.unsquash(x), dtype=torch.float64))) == pytest.approx(x, rel=1e-12)
    if scaling == "log":  # uniform in log space: the midpoint of z is the geometric mean
        assert float(s.squash(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(math.sqrt(lo * hi))


@pytest.mark.parametrize("kw,msg", [(dict(lo=1, hi=1), "lo < hi"), (dict(lo=0.0, hi=1, scaling="log"), "lo > 0"),
                                    (dict(lo=0, hi=1, scaling="tanh"), "scaling"),
                                    (dict(lo=0, hi=1, init=1.0), "init")])
def test_bad_specs_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        OutputSpec(**kw)


def test_init_is_exact_and_gradients_flow():
    net = _net()
    p = ParameterNet({"n": OutputSpec(0.01, 0.3, "log", init=0.06), "q": (0.0, 3.0, "sigmoid", 0.5)})
    p.scaler.fit(net)
    out = p.double().parameters_for(net)
    assert set(out) == {"n", "q"} and out["n"].shape == (len(net),)
    torch.testing.assert_close(out["n"], torch.full((len(net),), 0.06, dtype=out["n"].dtype))
    torch.testing.assert_close(out["q"], torch.full((len(net),), 0.5, dtype=out["q"].dtype))
    (out["n"] * torch.arange(len(net))).sum().backward()
    assert p.backbone[-1].weight.grad.abs().sum() > 0


def test_scaler_normalises_and_is_saved_with_model():
    net = _net()
    p = ParameterNet({"n": OutputSpec(0.01, 0.3, "log")}, hidden=[8])
    p.scaler.fit(net)
    x = p.scaler.transform(net, torch.float64)
    torch.testing.assert_close(x.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    assert "drainage_area_km2" in p.scaler.log_columns and "order" not in p.scaler.log_columns
    # log-transformed area: equally spaced in log -> equally spaced features
    d = torch.diff(x[:, 0])
    torch.testing.assert_close(d, d[0].expand_as(d))
    q = ParameterNet.from_config(p.config())
    assert not q.scaler.fitted
    q.load_state_dict(p.state_dict())
    assert q.scaler.fitted and q.scaler.columns == p.scaler.columns
    torch.testing.assert_close(q.parameters_for(net)["n"], p.parameters_for(net)["n"])


def test_scaler_errors_name_column_and_reach():
    net = _net()
    with pytest.raises(NetworkError, match="lacks attribute column.*'bogus'"):
        AttributeScaler(["slope", "bogus"]).fit(net)
    net.attrs.loc[2, "drainage_area_km2"] = 0.0
    with pytest.raises(NetworkError, match=r"'drainage_area_km2'.*<= 0.*\[3\]"):
        AttributeScaler(["drainage_area_km2"]).fit(net)
    with pytest.raises(RuntimeError, match="not fitted"):
        AttributeScaler(["slope"]).transform(net)


def test_pluggable_backbone():
    net = _net()
    lin = torch.nn.Linear(2, 1)
    p = ParameterNet({"n": OutputSpec(0.01, 0.3, "log", init=0.05)}, attributes=["slope", "elevation_m"], backbone=lin)
    p.scaler.fit(net)
    assert p.backbone is lin
    torch.testing.assert_close(p.parameters_for(net)["n"], torch.full((len(net),), 0.05))
    with pytest.raises(ValueError, match=r"features must be \[N, 2\]"):
        p(torch.zeros(3, 4))
