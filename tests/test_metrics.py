"""rivergraph.metrics: NSE / KGE masking and gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rivergraph.metrics import kge, kge_components, nse


def test_metrics_mask_nan_and_are_differentiable():
    obs = torch.tensor([[1.0, 2.0], [2.0, float("nan")], [3.0, 4.0], [float("nan"), 1.0], [5.0, 3.0]])
    assert nse(obs, obs).tolist() == [1.0, 1.0] and kge(obs, obs).tolist() == pytest.approx([1.0, 1.0])
    mean = torch.nanmean(obs, dim=0, keepdim=True).expand_as(obs)
    assert nse(mean, obs).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    sim = torch.tensor([[1.5, 2.5], [2.0, 9.0], [2.5, 3.0], [7.0, 1.5], [4.0, 3.5]], requires_grad=True)
    # masking == dropping the missing observations
    for j in range(2):
        ok = ~torch.isnan(obs[:, j])
        assert nse(sim, obs)[j].item() == pytest.approx(nse(sim[ok, j], obs[ok, j]).item())
        assert kge(sim, obs)[j].item() == pytest.approx(kge(sim[ok, j], obs[ok, j]).item())
    s, o = sim[:, 0].detach().numpy()[[0, 1, 2, 4]], obs[:, 0].numpy()[[0, 1, 2, 4]]
    r, a, b = kge_components(sim, obs)
    assert r[0].item() == pytest.approx(np.corrcoef(s, o)[0, 1], rel=1e-5)
    assert a[0].item() == pytest.approx(s.std() / o.std(), rel=1e-5)
    assert b[0].item() == pytest.approx(s.mean() / o.mean(), rel=1e-5)
    (nse(sim, obs).sum() + kge(sim, obs).sum()).backward()
    assert torch.isfinite(sim.grad).all()
    assert sim.grad[3, 0] == 0 and sim.grad[1, 1] == 0  # masked steps get no gradient
    perfect = obs[:, :1].nan_to_num(1.0).clone().requires_grad_(True)
    kge(perfect, obs[:, :1].nan_to_num(1.0)).sum().backward()
    assert torch.isfinite(perfect.grad).all()
    assert torch.isnan(nse(torch.ones(3), torch.tensor([1.0, float("nan"), float("nan")]))).all()
    assert torch.isnan(nse(torch.ones(3), torch.ones(3))).all()  # constant observations
