"""Wavefront schedule of a river network: levels, anti-diagonals and their slices.

See :mod:`rivergraph.engine.sweep` for the sweep that runs on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..graph.algorithms import upstream_sum
from ..graph.network import RiverNetwork

__all__ = ["Schedule"]


@dataclass
class Schedule:
    """Reach ordering and slices for the wavefront sweeps (built once per network and device).

    ``order[k]`` is the original position of sorted reach k; ``sorted_pos[i]`` the inverse.
    ``lstart[L]:lstart[L+1]`` are the sorted reaches at level L; ``down[k]`` is the sorted position of the
    reach downstream of sorted reach k (``n`` for outlets). Every edge goes from level L to level L + 1, so
    the upstream reaches of any band of levels are one contiguous slice.
    """

    n: int
    n_levels: int
    order: torch.Tensor
    sorted_pos: torch.Tensor
    level: torch.Tensor  # sorted, int64
    lstart: np.ndarray  # python-side slice bounds
    down: torch.Tensor  # sorted position of downstream reach, n for outlets
    device: torch.device
    MAX_WORKSPACES = 3
    _workspaces: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_network(cls, net: RiverNetwork, device: torch.device | str = "cpu") -> "Schedule":
        dist = net.distance_to_outlet
        lmax = int(dist.max()) if len(dist) else 0
        level = lmax - dist
        # sort by level, and within a level by the user's reach order: the upstream reaches of any band of
        # levels are still one contiguous slice (every edge goes from level L to L + 1), and the row
        # permutations between the two orders become one increasing sweep per level (2x cheaper than
        # ordering a level by downstream reach, measured on the Lower Colorado and the 300k tree)
        order = np.argsort(level, kind="stable")
        sorted_pos = np.empty_like(order)
        sorted_pos[order] = np.arange(len(order))
        lev_s = level[order]
        lstart = np.searchsorted(lev_s, np.arange(lmax + 2))
        down_orig = net.downstream[order]
        down = np.where(down_orig >= 0, sorted_pos[np.maximum(down_orig, 0)], len(order))
        dev = torch.device(device)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=dev)  # noqa: E731
        return cls(len(order), lmax + 1, t(order), t(sorted_pos), t(lev_s), lstart, t(down), dev)

    def diagonals(self, n_steps: int, reverse: bool = False):
        """Yield ``(d, lo, hi, a, b, sa, sb)`` for every diagonal d of an ``n_steps`` run (ascending, or
        descending with ``reverse``): levels [lo, hi] and sorted slice [a, b) of the active reaches, and
        the sorted slice [sa, sb) of their upstream reaches (levels lo-1..hi-1, contiguous), which hold the
        values of the same step t on diagonal d-1."""
        n_diag = n_steps + self.n_levels - 1
        ls = self.lstart
        for d in (range(n_diag - 1, -1, -1) if reverse else range(n_diag)):
            lo = max(0, d - n_steps + 1)
            hi = min(d, self.n_levels - 1)
            yield d, lo, hi, int(ls[lo]), int(ls[hi + 1]), int(ls[max(lo - 1, 0)]), int(ls[hi])

    def workspace(self, n_steps: int, dtype: torch.dtype, layout: tuple):
        """The forward-sweep workspace (:class:`rivergraph.engine.workspace.Workspace`) for ``n_steps`` steps,
        ``dtype`` and a cell layout; the last few are kept (a router and a heat cell alternate on one
        schedule), the oldest dropped."""
        from .workspace import Workspace

        key = (n_steps, dtype, layout)
        w = self._workspaces.pop(key, None)
        if w is None:
            while len(self._workspaces) >= self.MAX_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))  # free the oldest first
            w = Workspace(self, n_steps, dtype, layout)
        self._workspaces[key] = w  # most recent last
        return w

    def flat_base(self) -> torch.Tensor:
        """``arange(N) - level * N``: the flat index of (step t, sorted reach k) in a [T, N] array is
        ``base[k] + d * N`` on diagonal d = t + level_k."""
        return torch.arange(self.n, device=self.device) - self.level * self.n

    def upstream_sum(self, x: torch.Tensor) -> torch.Tensor:
        """A x: for every reach (sorted order, last dimension), the sum of ``x`` over its upstream reaches
        (:func:`rivergraph.graph.algorithms.upstream_sum` with the sorted downstream positions)."""
        return upstream_sum(x, self.down, dim=x.ndim - 1)

    def accumulate(self, local: torch.Tensor) -> torch.Tensor:
        """(I - A)^-1 local: each reach plus everything upstream (sorted order), level by level."""
        acc = local.clone()
        ls = self.lstart
        for L in range(1, self.n_levels):  # every reach of level L-1 drains into level L
            a, b = int(ls[L - 1]), int(ls[L])
            acc.scatter_add_(0, self.down[a:b], acc[a:b].clone())
        return acc

    def accumulate_transposed(self, g: torch.Tensor) -> torch.Tensor:
        """(I - A)^-T g: each reach plus everything downstream of it (sorted order)."""
        acc = torch.cat([g, g.new_zeros(1)])
        for L in range(self.n_levels - 2, -1, -1):
            a, b = int(self.lstart[L]), int(self.lstart[L + 1])
            acc[a:b] += acc[self.down[a:b]]
        return acc[:-1]
