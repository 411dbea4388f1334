"""What the gauges can identify: per-reach sensitivity of gauge hydrographs to Manning's n."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..graph.network import RiverNetwork
from .batches import upstream_router

__all__ = ["n_sensitivity", "identifiable_reaches"]


def n_sensitivity(net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], n: np.ndarray, *,
                  fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law", probes: int = 16,
                  seed: int = 0) -> np.ndarray:
    """How much each reach's Manning's n shows in the gauge hydrographs: diag(J^T J), J = d(Q_g(t) / sd_g) /
    d(log n_i), Q routed in float64 with ``n`` (and ``fixed``) over the reaches upstream of ``gauges``.

    Estimated with ``probes`` Rademacher vectors v (Hutchinson 1989: E[(J^T v)_i^2] = (J^T J)_ii), one backward
    pass each. Zero for reaches no gauge sees. A reach whose value is a small fraction of the median hardly
    changes any gauge's hydrograph: its n is not identifiable from these gauges (typically short headwater
    reaches whose Muskingum K is far below the time step).
    """
    gauges = np.asarray(gauges, dtype=np.int64)
    keep, router, params = upstream_router(net, gauges, fixed, dt_s, mode)
    logn = torch.log(torch.as_tensor(np.asarray(n, dtype=np.float64)[keep])).requires_grad_()
    Q = router(q_lat.double()[:, torch.from_numpy(keep)], output_positions=np.searchsorted(keep, gauges), n=logn.exp(),
               **params)
    Q = Q / Q.detach().std(0, keepdim=True).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    J = torch.zeros(len(keep), dtype=torch.float64)
    for i in range(probes):
        v = torch.randint(0, 2, Q.shape, generator=gen).to(Q) * 2 - 1
        (g,) = torch.autograd.grad(Q, logn, v, retain_graph=i < probes - 1)
        J += g.square() / probes
    out = np.zeros(len(net))
    out[keep] = J.numpy()
    return out


def identifiable_reaches(sensitivity: np.ndarray, mask: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Reaches in ``mask`` whose :func:`n_sensitivity` is at least ``fraction`` of the median over ``mask``
    (0.01 of the Fisher information = 10% of the median sensitivity amplitude)."""
    return mask & (sensitivity >= fraction * np.median(sensitivity[mask]))
