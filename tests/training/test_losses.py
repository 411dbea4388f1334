"""Gauge losses: NaN masking, warm-up, daily means."""
from __future__ import annotations

import pytest
import torch

from rivergraph.training import LossSpec, gauge_loss


def test_gauge_loss_masks_nan_and_discards_warmup():
    t = torch.linspace(0, 6, 96, dtype=torch.float64)
    obs = torch.stack([torch.sin(t) + 2, torch.cos(t) + 3], 1)
    for kind in ("nse", "kge", "l1"):
        assert float(gauge_loss(obs.clone(), obs, LossSpec(kind))) == pytest.approx(0.0, abs=1e-12)
    sim = obs.clone()
    sim[:10] += 5.0  # wrong only during warm-up
    assert float(gauge_loss(sim, obs, LossSpec("nse", warmup_steps=10))) == pytest.approx(0.0, abs=1e-12)
    assert float(gauge_loss(sim, obs, LossSpec("nse"))) > 1.0
    obs_nan = obs.clone()
    obs_nan[20:30, 0] = float("nan")
    sim2 = obs.clone()
    sim2[20:30, 0] = 100.0  # wrong only where observations are missing
    loss = gauge_loss(sim2.requires_grad_(), obs_nan, LossSpec("nse"))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    # daily means: an hourly wiggle with zero daily mean does not count
    wig = obs + 0.5 * torch.tensor([1.0, -1.0]).repeat(48).unsqueeze(1)
    assert float(gauge_loss(wig, obs, LossSpec("nse", "daily"))) == pytest.approx(0.0, abs=1e-12)
    assert float(gauge_loss(wig, obs, LossSpec("nse", "hourly"))) > 0.1
    with pytest.raises(ValueError, match="kind"):
        LossSpec("mse")
