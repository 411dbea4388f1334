"""Gauge mini-batches: each routes its gauges on the upstream sub-network only, with a router built once.

A :class:`GaugeBatch` is also a PyG graph (:meth:`GaugeBatch.to_pyg`): node features ``x``, ``edge_index``
upstream -> downstream, ``reach`` (full-network positions) and ``gauge_index`` (the gauges' nodes; PyG shifts
it with ``edge_index``), so ``torch_geometric.data.Batch.from_data_list`` makes the disjoint union of several
basins, and :meth:`GaugeBatch.from_pyg` routes that union as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..graph.network import RiverNetwork
from ..models.router import MuskingumCunge
from .losses import LossSpec, gauge_loss

__all__ = ["GaugeBatch", "make_batches", "upstream_router", "route_batch", "batch_loss", "route_gauges"]


@dataclass
class GaugeBatch:
    """A mini-batch of gauges: ``gauges`` (positions in the full network), ``reaches`` (full-network positions of
    the upstream sub-network, sorted), ``outputs`` (gauge positions inside it), its cached ``router``,
    normalised ``features`` [n_reaches, F] and ``edge_index`` [2, E] (sub-network positions, upstream ->
    downstream); ``fixed`` holds non-learned routing parameters (sub-network)."""

    gauges: np.ndarray
    reaches: np.ndarray
    outputs: np.ndarray
    router: MuskingumCunge
    features: torch.Tensor
    fixed: dict = field(default_factory=dict)
    edge_index: torch.Tensor | None = None

    def __post_init__(self):
        if self.edge_index is None:
            self.edge_index = self.router.network.edge_index

    def to_pyg(self):
        """This batch as ``torch_geometric.data.Data(x, edge_index, reach, gauge_index, gauge_reach)``."""
        from torch_geometric.data import Data

        return Data(x=self.features, edge_index=self.edge_index, reach=torch.from_numpy(self.reaches),
                    gauge_index=torch.from_numpy(np.asarray(self.outputs, dtype=np.int64)),
                    gauge_reach=torch.from_numpy(self.gauges), num_nodes=len(self.reaches))

    @classmethod
    def from_pyg(cls, data, net: RiverNetwork, *, fixed: Mapping | None = None, dt: float = 3600.0,
                 mode: str = "power_law", device: str = "cpu") -> "GaugeBatch":
        """A batch routing a PyG graph of gauge batches (e.g. ``Batch.from_data_list([b.to_pyg(), ...])``, the
        disjoint union of their basins) as one network; ``net`` is the full network the ``reach`` positions
        refer to. Its gauges keep the order of ``data.gauge_reach``."""
        from ..graph.pyg import from_pyg

        sub = from_pyg(data, net)
        reaches = data.reach.cpu().numpy()
        return cls(data.gauge_reach.cpu().numpy(), reaches, data.gauge_index.cpu().numpy(),
                   MuskingumCunge(sub, dt=dt, mode=mode, device=device), data.x.to(device),
                   _restrict(fixed, reaches), sub.edge_index)


def _restrict(fixed: Mapping | None, reaches: np.ndarray) -> dict:
    """``fixed`` parameters at ``reaches`` (float64 tensors; scalars stay scalars)."""
    out = {}
    for k, v in (fixed or {}).items():
        t = torch.as_tensor(np.asarray(v, dtype=np.float64))
        out[k] = t if t.ndim == 0 else t[torch.from_numpy(reaches)]
    return out


def upstream_router(net: RiverNetwork, gauges: np.ndarray, fixed: Mapping | None = None, dt: float = 3600.0,
                    mode: str = "power_law", device: str = "cpu") -> tuple[np.ndarray, MuskingumCunge, dict]:
    """Positions of the reaches upstream of ``gauges`` (ascending), a router on that sub-network, and the
    ``fixed`` parameters restricted to it (float64 tensors; scalars stay scalars)."""
    mask = net.upstream_mask(gauges)
    reaches = np.flatnonzero(mask)
    return reaches, MuskingumCunge(net.subset(mask), dt=dt, mode=mode, device=device), _restrict(fixed, reaches)


def make_batches(net: RiverNetwork, gauges: Sequence[int], batch_size: int, scaler, *, fixed: Mapping | None = None,
                 dt: float = 3600.0, mode: str = "power_law", device: str = "cpu") -> list[GaugeBatch]:
    """Split gauge positions into batches of nested, similar-sized basins (sorted by upstream size), each routed
    on its own upstream sub-network by a router built once here. ``fixed``: name -> scalar or [N] array of
    routing parameters that are not learned (full-network order)."""
    gauges = np.asarray(gauges, dtype=np.int64)
    if len(gauges) == 0:
        raise ValueError("no gauged reaches to train on")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    sizes = np.array([net.upstream_mask([g]).sum() for g in gauges])
    order = gauges[np.argsort(-sizes, kind="stable")]
    feats = scaler.transform(net)
    out = []
    for s in range(0, len(order), batch_size):
        g = np.sort(order[s:s + batch_size])
        reaches, router, fx = upstream_router(net, g, fixed, dt, mode, device)
        out.append(GaugeBatch(g, reaches, np.searchsorted(reaches, g), router,
                              feats[torch.from_numpy(reaches)].to(device), fx))
    return out


def route_batch(model: Callable, batch: GaugeBatch, q_lat: torch.Tensor) -> torch.Tensor:
    """Discharge [T, G] (m3/s) at the batch's gauges, with the model's parameters for its reaches.

    ``model``: features [n, F] -> {name: [n] parameter} (a ParameterNet; one whose ``needs_graph`` is true
    also gets the batch's ``edge_index``). ``q_lat``: [T, N] lateral inflow of the full network (m3/s).
    """
    params = dict(batch.fixed)
    if getattr(model, "needs_graph", False):
        params.update(model(batch.features, batch.edge_index))
    else:
        params.update(model(batch.features))
    q = q_lat[:, torch.from_numpy(batch.reaches).to(q_lat.device)]
    return batch.router(q, output_positions=batch.outputs, balance=False, **params)


def batch_loss(model: Callable, batch: GaugeBatch, q_lat: torch.Tensor, obs: torch.Tensor, spec: LossSpec,
               dt_s: float = 3600.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch and the simulated discharge at its gauges [T, G] (m3/s).

    Args:
        model: see :func:`route_batch`.
        q_lat: [T, N] lateral inflow of the full network (m3/s).
        obs: [T, len(batch.gauges)] observed discharge (m3/s) at this batch's gauges, NaN = missing.
    """
    sim = route_batch(model, batch, q_lat)
    return gauge_loss(sim, obs, spec, dt_s), sim


@torch.no_grad()
def route_gauges(model: Callable, net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], *,
                 fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law",
                 batch_size: int = 64, batches: list[GaugeBatch] | None = None, scaler=None) -> torch.Tensor:
    """Discharge [T, G] (m3/s) at sorted gauge positions with the model's parameters (no gradients)."""
    gauges = np.asarray(gauges, dtype=np.int64)
    batches = batches or make_batches(net, gauges, batch_size, scaler if scaler is not None else model.scaler,
                                      fixed=fixed, dt=dt_s, mode=mode)
    out = torch.full((q_lat.shape[0], len(gauges)), float("nan"), dtype=q_lat.dtype)
    for b in batches:
        out[:, np.searchsorted(gauges, b.gauges)] = route_batch(model, b, q_lat).to(out)
    return out
