"""torch-geometric at the edges: to_pyg / from_pyg, batches of disjoint basins, and UpstreamSum (PyG message
passing) as the reference for the graph-level upstream sum and the engine's message."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from rivergraph.graph import NetworkError, build_network, upstream_sum
from rivergraph.graph.pyg import UpstreamSum, from_pyg, to_pyg
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)

# hand-made graphs: a chain, a confluence, and a forest of two trees (0 = outlet)
GRAPHS = {"chain": {1: 2, 2: 3, 3: 0},
          "confluence": {1: 3, 2: 3, 3: 5, 4: 5, 5: 0},
          "forest": {1: 3, 2: 3, 3: 5, 4: 5, 5: 0, 6: 7, 7: 0, 8: 0}}


def _net(to):
    n = len(to)
    attrs = pd.DataFrame({"musk_s": np.linspace(3600.0, 9000.0, n), "musx": np.full(n, 0.2),
                          "drainage_area_km2": np.arange(1.0, n + 1.0)})
    return build_network(list(to), list(to.values()), attrs)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_to_pyg_and_back(name):
    net = _net(GRAPHS[name])
    d = to_pyg(net, x=["drainage_area_km2"])
    assert d.num_nodes == len(net) and d.x.shape == (len(net), 1)
    src, dst = d.edge_index
    assert (torch.as_tensor(net.downstream)[src] == dst).all()  # upstream -> downstream
    assert d.edge_index.shape[1] == len(net) - net.n_outlets
    assert d.reach_id.tolist() == net.ids.tolist() and d.reach.tolist() == list(range(len(net)))
    back = from_pyg(d, net)
    assert back.downstream.tolist() == net.downstream.tolist()
    assert back.attrs["source_reach_id"].tolist() == net.ids.tolist()
    assert torch.equal(net.to_pyg().edge_index, d.edge_index)
    with pytest.raises(NetworkError, match="rows"):
        to_pyg(net, x=torch.zeros(len(net) + 1, 2))


def test_batch_from_data_list_is_the_disjoint_union():
    a, b = _net(GRAPHS["confluence"]), _net(GRAPHS["chain"])
    batch = Batch.from_data_list([to_pyg(a), to_pyg(b)])
    u = from_pyg(batch, None)
    assert len(u) == len(a) + len(b) and u.n_outlets == a.n_outlets + b.n_outlets
    assert u.downstream[len(a):].tolist() == [d + len(a) if d >= 0 else -1 for d in b.downstream]
    bad = to_pyg(a)
    bad.edge_index = torch.cat([bad.edge_index, torch.tensor([[0], [1]])], 1)  # reach 0 with two downstreams
    with pytest.raises(NetworkError, match="more than one downstream"):
        from_pyg(bad)


def _check_upstream_sum(net, gen):
    op = UpstreamSum()
    x = torch.randn(len(net), generator=gen, dtype=torch.float64)
    ref = op(x, net.edge_index)
    torch.testing.assert_close(upstream_sum(x, net), ref, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(upstream_sum(x.numpy(), net), ref.numpy(), rtol=1e-13, atol=1e-12)
    X = torch.randn(3, len(net), generator=gen, dtype=torch.float64)  # [T, N] with dim=1
    torch.testing.assert_close(upstream_sum(X, net, dim=1), op(X.T, net.edge_index).T, rtol=1e-13, atol=1e-12)
    # the same linear map backwards: gradients (A^T g) agree
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(len(net), generator=gen, dtype=torch.float64)
    (upstream_sum(xa, net) * g).sum().backward()
    (op(xb, net.edge_index) * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-13, atol=1e-12)
    return ref


@pytest.mark.parametrize("name", list(GRAPHS))
def test_upstream_sum_matches_message_passing_small(name):
    net = _net(GRAPHS[name])
    ref = _check_upstream_sum(net, torch.Generator().manual_seed(0))
    assert float(ref[net.level_from_headwaters == 0].abs().max()) == 0.0  # headwaters receive nothing
    with pytest.raises(NetworkError, match="reaches"):
        upstream_sum(torch.zeros(len(net) + 1), net)


def test_upstream_sum_matches_message_passing_lower_colorado(lc):
    _check_upstream_sum(lc[0], torch.Generator().manual_seed(1))


def _engine_message(net, q, **kw):
    """The engine's message at the end of a routing run: the router's carried inflow I = sum of upstream Q."""
    r = MuskingumCunge(net, **kw)
    r(q, balance=False)
    return r.state.I, UpstreamSum()(r.state.Q, net.edge_index)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_engine_message_equals_upstream_sum_small(name):
    net = _net(GRAPHS[name])
    q = torch.rand(6, len(net), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for steps in range(1, 7):  # every step's message (the state after `steps` steps)
        I, ref = _engine_message(net, q[:steps], mode="static")
        torch.testing.assert_close(I, ref, rtol=1e-13, atol=1e-12)
        assert float(ref.abs().max()) > 0


def test_schedule_upstream_sum_equals_message_passing(lc):
    """The engine's own A x (Schedule.upstream_sum, sorted reach order) against UpstreamSum on the same graph."""
    from rivergraph.engine import Schedule

    for net in (_net(GRAPHS["forest"]), lc[0]):
        s = Schedule.from_network(net)
        x = torch.randn(2, len(net), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        ref = UpstreamSum()(x.T, net.edge_index).T  # network order
        torch.testing.assert_close(s.upstream_sum(x.index_select(1, s.order)), ref.index_select(1, s.order),
                                   rtol=1e-13, atol=1e-12)


def test_engine_message_equals_upstream_sum_lower_colorado(lc):
    net, data = lc
    q = data["q_lateral"][:4].double()
    I, ref = _engine_message(net, q, mode="trapezoid")
    torch.testing.assert_close(I, ref, rtol=1e-12, atol=1e-9)
    assert float(ref.max()) > 1.0


def test_import_rivergraph_does_not_load_torch_geometric():
    code = ("import sys, rivergraph, rivergraph.training, rivergraph.models, rivergraph.runs, rivergraph.graph; "
            "assert 'torch_geometric' not in sys.modules, 'torch_geometric imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
