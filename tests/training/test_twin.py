"""The synthetic twin's pieces: storms, the power-law fit, local areas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rivergraph.training import fit_power_law, local_area_km2, storm_inflow


def test_fit_power_law_exact():
    A = np.logspace(-2, 5, 50)
    a, b = fit_power_law(A, 0.0915 * A ** -0.131)
    assert a == pytest.approx(0.0915, rel=1e-10) and b == pytest.approx(-0.131, rel=1e-10)


def test_storm_inflow_deterministic_and_volume(lc):
    net, _ = lc
    sub = net.upstream_subnetwork([net.ids[net.gauges().index[0]]])
    q1 = storm_inflow(sub, 200, seed=3)
    q2 = storm_inflow(sub, 200, seed=3)
    assert torch.equal(q1, q2) and q1.shape == (200, len(sub)) and float(q1.min()) >= 0
    assert not torch.equal(q1, storm_inflow(sub, 200, seed=4))
    assert float(q1[:48].abs().max()) == 0.0  # quiet spin-up, no base flow given
    assert (local_area_km2(net) >= 0).all()


# --------------------------------------------------------------------------------------- batches
