"""rivergraph.runoff.mapping: the catchment -> reach map."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from rivergraph import runoff as R



# ============================================================================ mapping
def test_catchment_reach_map():
    m1 = R.CatchmentReachMap.one_to_one([20, 10], [10, 20, 30])
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(m1.apply(q), torch.tensor([[2.0, 1.0, 0.0], [4.0, 3.0, 0.0]]))
    with pytest.raises(R.RunoffError, match="catchment id\\(s\\) '10'.*match as strings"):
        R.CatchmentReachMap.one_to_one(["10"], [10, 20])
    table = pd.DataFrame({"catchment_id": ["c1", "c1", "c2"], "reach_id": [1, 2, 2], "fraction": [0.25, 0.75, 1.0]})
    m2 = R.CatchmentReachMap.from_table(table, ["c2", "c1"], [1, 2, 3])
    torch.testing.assert_close(m2.dense(), torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.75, 0.0]]))
    qq = torch.tensor([[2.0, 4.0]], requires_grad=True)  # columns c2, c1
    lat = m2.apply(qq)
    torch.testing.assert_close(lat, torch.tensor([[1.0, 5.0, 0.0]]))
    lat.sum().backward()
    torch.testing.assert_close(qq.grad, torch.ones(1, 2))  # mass conserved
    bad = table.assign(fraction=[0.25, 0.5, 1.0])
    with pytest.raises(R.RunoffError, match="sum to 1 per catchment.*'c1': 0.75"):
        R.CatchmentReachMap.from_table(bad)
    with pytest.raises(R.RunoffError, match="unknown reach id\\(s\\) 2"):
        R.CatchmentReachMap.from_table(table, reach_ids=[1, 3])
    with pytest.raises(R.RunoffError, match="unknown catchment id\\(s\\) 'c2'"):
        R.CatchmentReachMap.from_table(table, catchment_ids=["c1"])
    with pytest.raises(R.RunoffError, match="'c3' have no row"):
        R.CatchmentReachMap.from_table(table, catchment_ids=["c1", "c2", "c3"])
    with pytest.raises(R.RunoffError, match="negative"):
        R.CatchmentReachMap.from_table(table.assign(fraction=[1.25, -0.25, 1.0]))
    with pytest.raises(R.RunoffError, match="not in the catchment-reach map"):
        m2.select_reaches([4])


