"""Graph neural network backbones for :class:`~rivergraph.models.ParameterNet` (torch_geometric, loaded here only).

A backbone maps node features ``x`` [N, F] and ``edge_index`` [2, E] (upstream -> downstream, as
:meth:`RiverNetwork.edge_index` and :func:`rivergraph.graph.pyg.to_pyg`) to [N, n_out] unbounded values.
With the default ``directed=True`` every layer aggregates at a reach what its upstream reaches send
(GCNConv: Kipf & Welling 2017; SAGEConv: Hamilton et al. 2017), so a reach's receptive field lies upstream of
it: on a gauge batch (the upstream sub-network of its gauges) the GNN gives each reach exactly the parameters
it gets on the full network. ``directed=False`` also passes messages downstream -> upstream (wider context,
but then a sub-network's outlet reaches miss their downstream neighbours).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["GNNBackbone", "GNN_LAYERS"]

GNN_LAYERS = ("gcn", "sage")
"""Layer types :class:`GNNBackbone` builds (``torch_geometric.nn.GCNConv``, ``SAGEConv``)."""


class GNNBackbone(nn.Module):
    """``len(hidden)`` graph convolutions with an activation, then a linear head to ``n_out`` values.

    The head is an ``nn.Linear``, so :class:`~rivergraph.models.OutputSpec` ``init`` values apply (the
    untrained network then returns them everywhere).
    """

    is_graph_backbone = True

    def __init__(self, n_in: int, n_out: int, hidden: Sequence[int] = (32, 32), layer: str = "sage",
                 activation: type = nn.Tanh, directed: bool = True):
        super().__init__()
        from torch_geometric import nn as gnn

        if layer not in GNN_LAYERS:
            raise ValueError(f"unknown GNN layer '{layer}'; choose from {list(GNN_LAYERS)}")
        conv = {"gcn": gnn.GCNConv, "sage": gnn.SAGEConv}[layer]
        self.layer, self.directed = layer, directed
        self.convs = nn.ModuleList()
        for h in hidden:
            self.convs.append(conv(n_in, h))
            n_in = h
        self.act = activation()
        self.head = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if not self.directed:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
        for conv in self.convs:
            x = self.act(conv(x, edge_index))
        return self.head(x)
