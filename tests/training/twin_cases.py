"""Helpers of the training tests: a reduced Lower Colorado twin (storms, the n law, observations)."""
from __future__ import annotations

import numpy as np
import torch

from rivergraph.models.params import OutputSpec, ParameterNet
from rivergraph.training import storm_inflow, twin_law, twin_observations

FIXED = {"width_coef": 21.0, "width_exp": 0.5}


def make_twin(lc, max_up: int, hours: int, seed: int = 1):
    """Sub-network upstream of the LC gauges with <= max_up upstream reaches, storms, truth and observations:
    ``(sub, q [hours, N] float32, gauges, n_true, obs [hours, G])``."""
    net, data = lc
    g = np.array([p for p in net.gauges().index if net.upstream_mask([p]).sum() <= max_up])
    mask = net.upstream_mask(g)
    sub = net.subset(mask)
    keep = np.flatnonzero(mask)
    gauges = np.sort(np.searchsorted(keep, g))
    base = data["q_lateral"].double().mean(0).numpy()[keep]
    q = storm_inflow(sub, hours, base=base, seed=seed, storms_per_week=4.0).float()
    n_true = twin_law(sub)
    obs = twin_observations(sub, q, gauges, n_true, fixed=FIXED)
    return sub, q, gauges, n_true, obs


def make_pnet(seed: int = 0, **kw) -> ParameterNet:
    torch.manual_seed(seed)
    return ParameterNet({"n": OutputSpec(0.01, 0.3, "log", init=0.03)}, **kw)
