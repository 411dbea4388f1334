"""BMI conformance-style tests: every Bmi method, shapes/units/types, and BMI stepping == the router."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from bmipy import Bmi
from pydantic import ValidationError

from rivergraph.bmi import DISCHARGE, LATERAL_INFLOW, BmiRiverGraph
from rivergraph.io.readers import save_network_npz
from rivergraph.models.router import MuskingumCunge

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def basin(tmp_path_factory, basin_08159000):
    """USGS 08159000's 107-reach subnetwork saved as npz, its NWM lateral inflow, and a BMI config."""
    sub, q, _ = basin_08159000
    folder = tmp_path_factory.mktemp("bmi")
    save_network_npz(sub, folder / "net.npz")
    cfg = {"network": "net.npz", "dt_s": 900.0, "time_step_s": 3600.0, "output": "end", "end_time_s": 28 * 3600.0}
    (folder / "bmi.yaml").write_text(yaml.safe_dump(cfg))
    return sub, q, folder


def _model(folder, **change):
    path = folder / "bmi.yaml"
    if change:
        cfg = yaml.safe_load(path.read_text()) | change
        path = folder / "changed.yaml"
        path.write_text(yaml.safe_dump(cfg))
    m = BmiRiverGraph()
    m.initialize(str(path))
    return m


def test_every_bmi_method(basin):
    net, q, folder = basin
    m = _model(folder)
    assert isinstance(m, Bmi)
    n = len(net)
    assert isinstance(m.get_component_name(), str)
    assert m.get_input_var_names() == (LATERAL_INFLOW, DISCHARGE)
    assert m.get_output_var_names() == (DISCHARGE,)
    assert m.get_input_item_count() == 2 and m.get_output_item_count() == 1
    assert (m.get_start_time(), m.get_current_time(), m.get_time_step()) == (0.0, 0.0, 3600.0)
    assert m.get_end_time() == 28 * 3600.0 and m.get_time_units() == "s"
    for name in (LATERAL_INFLOW, DISCHARGE):
        assert m.get_var_units(name) == "m3 s-1"
        assert m.get_var_type(name) == "float64" and m.get_var_itemsize(name) == 8
        assert m.get_var_nbytes(name) == 8 * n
        assert m.get_var_location(name) == "node" and m.get_var_grid(name) == 0
        assert m.get_value_ptr(name).shape == (n,)
    g = 0
    assert m.get_grid_type(g) == "unstructured" and m.get_grid_rank(g) == 2
    assert m.get_grid_size(g) == m.get_grid_node_count(g) == n
    assert m.get_grid_edge_count(g) == n - net.n_outlets and m.get_grid_face_count(g) == 0
    edges = m.get_grid_edge_nodes(g, np.empty(2 * (n - 1), dtype=np.int64)).reshape(-1, 2)
    np.testing.assert_array_equal(net.downstream[edges[:, 0]], edges[:, 1])
    for fn in (m.get_grid_face_edges, m.get_grid_face_nodes, m.get_grid_nodes_per_face):
        assert fn(g, np.empty(0, dtype=np.int64)).size == 0
    np.testing.assert_allclose(m.get_grid_x(g, np.empty(n)), net.attrs["lon"].to_numpy(np.float64))
    np.testing.assert_allclose(m.get_grid_y(g, np.empty(n)), net.attrs["lat"].to_numpy(np.float64))
    np.testing.assert_allclose(m.get_grid_z(g, np.empty(n)), net.attrs["elevation_m"].to_numpy(np.float64))
    for fn in (m.get_grid_shape, m.get_grid_spacing, m.get_grid_origin):
        with pytest.raises(NotImplementedError):
            fn(g, np.empty(2))
    with pytest.raises(ValueError, match="unknown grid 1"):
        m.get_grid_size(1)

    # values: set, read back by copy, pointer and indices
    m.set_value(LATERAL_INFLOW, q[0].numpy())
    np.testing.assert_array_equal(m.get_value(LATERAL_INFLOW, np.empty(n)), q[0].numpy())
    ptr = m.get_value_ptr(DISCHARGE)
    m.update()
    assert m.get_current_time() == 3600.0
    assert ptr is m.get_value_ptr(DISCHARGE) and ptr.max() > 0  # the pointer sees the update
    idx = np.array([3, 0, n - 1])
    np.testing.assert_array_equal(m.get_value_at_indices(DISCHARGE, np.empty(3), idx), ptr[idx])
    m.set_value_at_indices(LATERAL_INFLOW, idx, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(m.get_value_ptr(LATERAL_INFLOW)[idx], [1.0, 2.0, 3.0])
    m.update_until(4 * 3600.0)
    assert m.get_current_time() == 4 * 3600.0
    m.finalize()
    with pytest.raises(RuntimeError, match="not initialized"):
        m.update()


def test_bmi_stepping_equals_router(basin):
    net, q, folder = basin
    m = _model(folder)
    n = len(net)
    sim = []
    for t in range(12):
        m.set_value(LATERAL_INFLOW, q[t].numpy())
        m.update()
        sim.append(m.get_value(DISCHARGE, np.empty(n)).copy())
    router = MuskingumCunge(net, dt=900.0, forcing_dt=3600.0, output="end")
    expected = router(q[:12]).numpy()
    assert expected.max() > 1.0 and np.ptp(expected, axis=0).max() > 0.01  # flows that change in time
    np.testing.assert_allclose(np.array(sim), expected, rtol=1e-12, atol=1e-12)
    # update_until over 5 steps holds the last inflow: same as 5 routed rows of it
    m.update_until(m.get_current_time() + 5 * 3600.0)
    more = router(q[11:12].expand(5, -1), state=router.state)
    np.testing.assert_allclose(m.get_value_ptr(DISCHARGE), more[-1].numpy(), rtol=1e-12, atol=1e-12)


def test_set_discharge_replaces_the_state(basin):
    net, q, folder = basin
    m = _model(folder, hot_start=False)
    Q0 = np.linspace(0.5, 2.0, len(net))
    m.set_value(DISCHARGE, Q0)
    m.set_value(LATERAL_INFLOW, q[0].numpy())
    m.update()
    router = MuskingumCunge(net, dt=900.0, forcing_dt=3600.0, output="end")
    I0 = np.zeros(len(net))
    np.add.at(I0, net.downstream[net.downstream >= 0], Q0[net.downstream >= 0])
    from rivergraph.models.router import RoutingState

    expected = router(q[:1], state=RoutingState(torch.from_numpy(Q0), torch.from_numpy(I0)))
    np.testing.assert_allclose(m.get_value_ptr(DISCHARGE), expected[0].numpy(), rtol=1e-12)


def test_bad_input(basin, tmp_path):
    net, q, folder = basin
    m = _model(folder)
    with pytest.raises(ValueError, match="unknown BMI variable 'water'"):
        m.get_var_units("water")
    with pytest.raises(ValueError, match=f"expected {len(net)} values"):
        m.set_value(LATERAL_INFLOW, np.ones(3))
    bad = np.ones(len(net))
    bad[5] = -1.0
    with pytest.raises(ValueError, match=rf"reaches \[{net.ids[5]}\]"):
        m.set_value(LATERAL_INFLOW, bad)
    with pytest.raises(ValueError, match="whole number of 3600.0 s steps"):
        m.update_until(1800.0)
    with pytest.raises(ValueError, match="indices must be in"):
        m.get_value_at_indices(DISCHARGE, np.empty(1), np.array([len(net)]))
    with pytest.raises(FileNotFoundError):
        BmiRiverGraph().initialize(str(tmp_path / "missing.yaml"))
    (tmp_path / "typo.yaml").write_text("network: lower_colorado\ndt: 60\n")
    with pytest.raises(ValidationError, match="dt"):
        BmiRiverGraph().initialize(str(tmp_path / "typo.yaml"))
    (tmp_path / "nofile.yaml").write_text("network: nowhere.npz\n")
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        BmiRiverGraph().initialize(str(tmp_path / "nofile.yaml"))
    with pytest.raises(ValueError, match="'n' outside its physical bounds"):
        _model(folder, mode="power_law", params={"n": 5.0, "width_coef": 21.0, "width_exp": 0.5})
