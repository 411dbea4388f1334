"""ParameterNet with a graph backbone taking (x, edge_index): named GCN / GraphSAGE backbones and a user's
torch_geometric module; directed message passing gives a gauge batch the full network's parameters; one
training run through the router updates the GNN."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import GCNConv

from rivergraph.models.params import OutputSpec, ParameterNet
from rivergraph.training import (
    LossSpec,
    load_checkpoint,
    make_batches,
    train,
    twin_law,
    twin_observations,
)

torch.set_num_threads(1)
SPEC = {"n": OutputSpec(0.01, 0.3, "log", init=0.03)}
FIXED = {"width_coef": 21.0, "width_exp": 0.5}


class TwoHopGCN(torch.nn.Module):
    """A user's backbone: two GCNConv layers (torch_geometric.nn), called as backbone(x, edge_index)."""

    is_graph_backbone = True

    def __init__(self, n_in, n_out):
        super().__init__()
        self.c1, self.c2 = GCNConv(n_in, 8), GCNConv(8, n_out)

    def forward(self, x, edge_index):
        return self.c2(torch.tanh(self.c1(x, edge_index)), edge_index)


@pytest.mark.parametrize("layer", ["gcn", "sage"])
def test_gnn_backbone_batch_equals_full_network(basin_08159000, layer):
    small = basin_08159000[0]
    torch.manual_seed(0)
    pn = ParameterNet({"n": OutputSpec(0.01, 0.3, "log")}, backbone=layer, hidden=(8, 8))
    assert pn.needs_graph and pn.config()["backbone"] == layer
    pn.scaler.fit(small)
    full = pn.parameters_for(small)["n"]
    assert full.shape == (len(small),) and float(full.detach().std()) > 0
    nested = [p for p in small.gauges().index if small.downstream[p] >= 0]  # gauges inside the basin
    g = np.array([max(nested, key=lambda p: small.upstream_mask([p]).sum())])
    (b,) = make_batches(small, g, 1, pn.scaler)
    assert 1 < len(b.reaches) < len(small)
    sub = pn(b.features, b.edge_index)["n"]  # upstream receptive field: all of it is inside the batch
    torch.testing.assert_close(sub, full[torch.from_numpy(b.reaches)], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="edge_index"):
        pn(b.features)
    pn.backbone.directed = False  # messages also from downstream: the batch's outlet misses its neighbour
    both = pn(b.features, b.edge_index)["n"]
    assert not torch.allclose(both, pn.parameters_for(small)["n"][torch.from_numpy(b.reaches)], rtol=1e-4)
    pn.backbone.directed = True
    again = ParameterNet.from_config(pn.config())
    again.load_state_dict(pn.state_dict())
    torch.testing.assert_close(again.parameters_for(small)["n"], full)


def test_gnn_init_and_custom_backbone(small):
    pn = ParameterNet(SPEC, backbone="sage")
    pn.scaler.fit(small)
    n0 = pn.parameters_for(small)["n"]
    torch.testing.assert_close(n0, torch.full_like(n0, 0.03))  # OutputSpec.init through the linear head
    custom = ParameterNet(SPEC, backbone=TwoHopGCN(5, 1))
    custom.scaler.fit(small)
    assert custom.needs_graph and custom.parameters_for(small)["n"].shape == (len(small),)
    with pytest.raises(ValueError, match="custom backbone"):
        ParameterNet.from_config(custom.config())
    with pytest.raises(ValueError, match="unknown backbone"):
        ParameterNet(SPEC, backbone="transformer")


def test_gnn_backbone_trains_through_router(basin_08159000, tmp_path):
    sub, q, _ = basin_08159000
    q = q[:24].float()
    gauges = np.sort(sub.gauges().index.to_numpy())
    obs = twin_observations(sub, q, gauges, twin_law(sub), fixed=FIXED)
    torch.manual_seed(0)
    pn = ParameterNet(SPEC, backbone="gcn", hidden=(8,))
    pn.scaler.fit(sub)
    before = {k: v.clone() for k, v in pn.state_dict().items() if torch.is_tensor(v)}
    res = train(pn, sub, q, obs, gauges, epochs=2, lr=0.05, batch_size=2, spec=LossSpec("l1", warmup_steps=2),
                fixed=FIXED, checkpoint=tmp_path / "gnn.pt", progress=False)
    assert res.epochs_run == 2 and all(np.isfinite(h["train_loss"]) for h in res.history)
    ck = load_checkpoint(tmp_path / "gnn.pt")
    moved = [k for k, v in ck["model"].items() if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.convs") for k in moved)  # the graph convolutions learned
    assert ck["param_net"]["backbone"] == "gcn"
