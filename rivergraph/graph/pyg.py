"""torch-geometric at the edges: networks as PyG ``Data``, back again, and the upstream-sum operator.

This is the only graph module that imports ``torch_geometric`` (``import rivergraph`` does not load it).

- :func:`to_pyg` -- a :class:`~rivergraph.graph.RiverNetwork` as ``torch_geometric.data.Data``: node features
  ``x`` [N, F], ``edge_index`` [2, E] upstream -> downstream (PyG's default ``flow="source_to_target"``, so a
  layer aggregates at each reach what flows into it), ``reach`` (network positions) and ``reach_id``.
  ``Batch.from_data_list`` of several of them is the disjoint union of the basins (PyG shifts ``edge_index``
  and every other attribute whose name contains ``index``); the trainer's gauge batches
  (:meth:`rivergraph.training.GaugeBatch.to_pyg`) follow the same convention.
- :func:`from_pyg` -- the network of such a ``Data`` / ``Batch`` (each node has at most one outgoing edge),
  so a batch of disjoint basins can be routed as one network.
- :class:`UpstreamSum` -- ``MessagePassing(aggr="add")`` computing A x, the sum of upstream values: the
  reference for :func:`rivergraph.graph.upstream_sum` and for the engine's message in the tests (the engine
  fuses it into its sweep and does not call ``propagate``: the sweep is bound by per-call cost).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from .network import NetworkError, RiverNetwork

__all__ = ["to_pyg", "from_pyg", "UpstreamSum"]


def to_pyg(network: RiverNetwork, x: torch.Tensor | np.ndarray | Sequence[str] | None = None, **node_attrs) -> Data:
    """The network as a PyG ``Data``.

    Args:
        x: node features: a [N, F] tensor / array, or a list of attribute column names stacked as float32
            columns (no normalisation; see :class:`rivergraph.models.AttributeScaler` for that), or None.
        node_attrs: further tensors to attach (e.g. ``y=observed``), passed to ``Data``.
    Returns:
        ``Data(x, edge_index, reach, reach_id, num_nodes)``; ``reach`` = positions 0..N-1 (kept through
        ``Batch.from_data_list``, which does not shift it), ``reach_id`` = the ids (a tensor for integer ids,
        a list otherwise).
    """
    n = len(network)
    if x is not None and not isinstance(x, (torch.Tensor, np.ndarray)):
        x = torch.from_numpy(np.stack([network.attr(c) for c in x], 1)).float()
    elif isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if x is not None and x.shape[0] != n:
        raise NetworkError(f"to_pyg: x has {x.shape[0]} rows, the network {n} reaches")
    ids = network.ids
    reach_id = torch.from_numpy(ids.astype(np.int64)) if np.issubdtype(ids.dtype, np.integer) else ids.tolist()
    return Data(x=x, edge_index=network.edge_index, reach=torch.arange(n), reach_id=reach_id, num_nodes=n,
                **node_attrs)


def from_pyg(data: Data, network: RiverNetwork | None = None) -> RiverNetwork:
    """The river network of a PyG graph whose nodes have at most one outgoing edge (e.g. a ``Batch`` of
    :func:`to_pyg` graphs or of gauge batches).

    With ``network``, the node attributes are the rows ``data.reach`` of ``network.attrs`` (so routing
    parameters, lengths and slopes come along) plus a ``source_reach_id`` column; the ids of the result are
    the node numbers 0..N-1 (a batch may hold the same reach twice, once per basin).
    """
    n = int(data.num_nodes)
    src, dst = (t.cpu().numpy() for t in data.edge_index)
    down = np.full(n, -1, dtype=np.int64)
    out_deg = np.bincount(src, minlength=n)
    if (out_deg > 1).any():
        raise NetworkError(f"from_pyg: nodes {np.flatnonzero(out_deg > 1)[:10].tolist()} have more than one "
                           "downstream edge (a river network is a forest)")
    down[src] = dst
    if network is None:
        attrs = pd.DataFrame(index=range(n))
    else:
        if not hasattr(data, "reach") or data.reach is None:
            raise NetworkError("from_pyg: the graph has no 'reach' positions to take attributes from")
        rows = data.reach.cpu().numpy()
        attrs = network.attrs.iloc[rows].reset_index(drop=True).assign(source_reach_id=network.ids[rows])
    net = RiverNetwork(np.arange(n, dtype=np.int64), down, attrs, None, {"from_pyg": n})
    net.distance_to_outlet  # raises on cycles
    return net


class UpstreamSum(MessagePassing):
    """A x by message passing: out_i = sum of x_j over edges j -> i (``aggr="add"``, flow upstream ->
    downstream). ``x`` is [N] or [N, F] (nodes first); for a [T, N] time series pass ``x.T``."""

    def __init__(self):
        super().__init__(aggr="add", flow="source_to_target", node_dim=0)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.propagate(edge_index, x=x, size=(n, n))

    def message(self, x_j: torch.Tensor) -> torch.Tensor:
        return x_j
