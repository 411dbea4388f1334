"""Gauge batches: upstream sub-networks only, one batch's loss and gradients, and batches as PyG graphs
(Batch.from_data_list of gauge batches routes the disjoint union of their basins)."""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch
from twin_cases import FIXED, make_pnet

from rivergraph.models.router import MuskingumCunge
from rivergraph.training import GaugeBatch, LossSpec, batch_loss, make_batches, route_batch, train_step

torch.set_num_threads(1)


def test_batches_route_only_upstream_and_match_full_network(twin40):
    sub, q, gauges, n_true, obs = twin40
    full = MuskingumCunge(sub, mode="power_law")(q, outputs=gauges, n=torch.tensor(n_true, dtype=torch.float32),
                                                 **{k: torch.tensor(v) for k, v in FIXED.items()})
    torch.testing.assert_close(obs, full, rtol=1e-5, atol=1e-6)
    pn = make_pnet()
    pn.scaler.fit(sub)
    batches = make_batches(sub, gauges, 4, pn.scaler, fixed=FIXED)
    assert sorted(np.concatenate([b.gauges for b in batches]).tolist()) == gauges.tolist()
    for b in batches:
        assert len(b.reaches) == sub.upstream_mask(b.gauges).sum() < len(sub)
    # one rank's work under DDP: loss and gradients for one batch
    b = batches[0]
    loss, sim = batch_loss(pn, b, q, obs[:, np.searchsorted(gauges, b.gauges)], LossSpec(warmup_steps=24))
    loss.backward()
    assert sim.shape == (96, len(b.gauges)) and float(loss.detach()) > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pn.parameters())
    # train_step: the trainer's own optimiser step on this batch, returning the same loss
    before = [p.detach().clone() for p in pn.parameters()]
    opt = torch.optim.Adam(pn.parameters(), lr=0.01)
    step_loss = train_step(pn, opt, b, q, obs[:, np.searchsorted(gauges, b.gauges)], LossSpec(warmup_steps=24))
    assert step_loss == float(loss.detach())
    assert any(not torch.equal(a, p) for a, p in zip(before, pn.parameters()))


def test_gauge_batches_as_pyg_batch_route_as_one(twin40):
    sub, q, gauges, n_true, obs = twin40
    pn = make_pnet()
    pn.scaler.fit(sub)
    batches = make_batches(sub, gauges, 3, pn.scaler, fixed=FIXED)
    datas = [b.to_pyg() for b in batches[:3]]
    assert all(d.edge_index.shape[1] == d.num_nodes - len(np.unique(b.router.network.outlets))
               for d, b in zip(datas, batches))
    big = Batch.from_data_list(datas)  # disjoint union (nested basins may repeat reaches, once per basin)
    assert big.num_nodes == sum(d.num_nodes for d in datas)
    offs = np.cumsum([0] + [d.num_nodes for d in datas[:-1]])
    assert big.gauge_index.tolist() == [int(o + g) for o, d in zip(offs, datas) for g in d.gauge_index]
    merged = GaugeBatch.from_pyg(big, sub, fixed=FIXED)
    with torch.no_grad():
        one = route_batch(pn, merged, q)
        each = torch.cat([route_batch(pn, b, q) for b in batches[:3]], 1)
    assert one.shape == (q.shape[0], len(merged.gauges))
    torch.testing.assert_close(one, each, rtol=1e-6, atol=1e-6)
    assert merged.gauges.tolist() == np.concatenate([b.gauges for b in batches[:3]]).tolist()
