"""Basic Model Interface (BMI 2.0, CSDMS) wrapper of the Muskingum-Cunge router.

Lets BMI frameworks (NextGen, pymt, ...) step the router: ``initialize(config.yaml)``, set the lateral
inflow, ``update()`` one time step (or ``update_until(t)``), read the discharge, ``finalize()``.
Stepping through BMI is the same computation as one :class:`~rivergraph.models.router.MuskingumCunge` call over
all steps (the routing state is carried between updates).

Variables (one value per reach, float64, reach order of the network, grid 0, location ``node``):

=================================================  ========  ======  ============================================
``channel_water__lateral_inflow_volume_flow_rate``  m3 s-1    in      lateral inflow held over the next step(s)
``channel_water__volume_flow_rate``                 m3 s-1    in/out  routed discharge of the last step; setting
                                                                      it replaces the carried flow state
=================================================  ========  ======  ============================================

Grid 0 is ``unstructured``: one node per reach (x = ``lon``, y = ``lat``, z = ``elevation_m`` where the
network has them) and one edge per upstream -> downstream link; it has no faces.

Config (YAML; see ``examples/bmi_lower_colorado.yaml``): ``network`` (``lower_colorado`` or a file for
:func:`rivergraph.read_network`, relative to the YAML file), ``dt_s`` (routing step, s), ``time_step_s``
(BMI step = lateral-inflow interval, a multiple of ``dt_s``), ``mode``, ``scheme``, ``positivity``,
``output``, ``hot_start``, ``end_time_s``, ``params`` (scalar routing parameters, e.g. ``{p: 21, q: 0.5}``),
``dtype``, ``device``, ``output_file`` (stream every update's discharge to a CF file, :mod:`rivergraph.io.cf`);
see docs/config.md.

Reference: Hutton, E. W. H., Piper, M. D. and Tucker, G. E. (2020), The Basic Model Interface 2.0,
J. Open Source Softw. 5(51), 2317.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bmipy import Bmi

from .config.base import read_yaml_mapping
from .config.bmi import BmiConfig
from .graph.algorithms import upstream_sum
from .models.router import MuskingumCunge, RoutingState

__all__ = ["BmiRiverGraph", "BmiConfig", "LATERAL_INFLOW", "DISCHARGE"]

LATERAL_INFLOW = "channel_water__lateral_inflow_volume_flow_rate"
DISCHARGE = "channel_water__volume_flow_rate"
_UNITS = {LATERAL_INFLOW: "m3 s-1", DISCHARGE: "m3 s-1"}


def _load_network(spec: str, base: Path):
    from .datasets import is_dataset, resolve_network

    if not is_dataset(spec) and not (Path(spec).expanduser() if Path(spec).is_absolute() else base / spec).exists():
        raise FileNotFoundError(f"BMI config: network file {base / spec} does not exist")
    return resolve_network(spec, base)[0]


class BmiRiverGraph(Bmi):
    """BMI 2.0 for :class:`rivergraph.models.router.MuskingumCunge`; see the module docstring."""

    def __init__(self) -> None:
        self._router: MuskingumCunge | None = None

    # ------------------------------------------------------------ control
    def initialize(self, config_file: str) -> None:
        """Build the network and router from a YAML config file (see :class:`BmiConfig`)."""
        path = Path(config_file)
        cfg = BmiConfig(**read_yaml_mapping(path))
        net = _load_network(cfg.network, path.resolve().parent)
        self._cfg = cfg
        self._router = MuskingumCunge(net, dt=cfg.dt_s, forcing_dt=cfg.time_step_s, mode=cfg.mode,
                                      positivity=cfg.positivity, output=cfg.output, scheme=cfg.scheme,
                                      device=cfg.device)
        self._params = {k: torch.tensor(v) for k, v in cfg.params.items()}
        self._router.sorted_parameters(self._params)  # fail now on unknown or out-of-bounds parameters
        self._dtype = getattr(torch, cfg.dtype)
        n = len(net)
        self._values = {LATERAL_INFLOW: np.zeros(n), DISCHARGE: np.zeros(n)}
        self._state: RoutingState | None = None
        self._time = 0.0
        self._step = cfg.dt_s * self._router.nsub
        self._writer = None
        if cfg.output_file:
            from .io.cf import CFWriter

            out = Path(cfg.output_file).expanduser()
            out = out if out.is_absolute() else path.resolve().parent / out
            self._writer = CFWriter(out, net, ["streamflow"], attrs={"title": "rivergraph BMI discharge"},
                                    variable_attrs={"streamflow": {"cell_methods": "time: mean" if cfg.output != "end"
                                                                   else "time: point"}}).__enter__()
            self._t0 = pd.Timestamp("1970-01-01", tz="UTC")
        ds = net.downstream
        self._edges = np.stack([np.flatnonzero(ds >= 0), ds[ds >= 0]], axis=1).astype(np.int64)

    def _r(self) -> MuskingumCunge:
        if self._router is None:
            raise RuntimeError("BMI model is not initialized (call initialize(config_file) first)")
        return self._router

    def update(self) -> None:
        """Advance one time step with the current lateral inflow."""
        self._advance(1)

    def update_until(self, time: float) -> None:
        """Advance to ``time`` (s), a whole number of steps ahead, holding the current lateral inflow."""
        k = (float(time) - self._time) / self._step
        if k < -1e-9 or abs(k - round(k)) > 1e-6:
            raise ValueError(f"update_until({time}): must be a whole number of {self._step} s steps after the "
                             f"current time {self._time} s")
        if round(k) > 0:
            self._advance(int(round(k)))

    def _advance(self, k: int) -> None:
        r = self._r()
        q = torch.from_numpy(self._values[LATERAL_INFLOW]).to(self._dtype).unsqueeze(0).expand(k, -1)
        with torch.no_grad():
            Q = r(q, state=self._state, hot_start=self._cfg.hot_start, balance=False, **self._params)
        self._state = r.state
        self._values[DISCHARGE][:] = Q[-1].double().cpu().numpy()
        if self._writer is not None:
            times = self._t0 + pd.to_timedelta(self._time + self._step * np.arange(k), unit="s")
            self._writer.append(times, streamflow=Q)
        self._time += k * self._step

    def finalize(self) -> None:
        """Close the output file (if any); release the router and state."""
        if getattr(self, "_writer", None) is not None:
            self._writer.__exit__(None, None, None)
            self._writer = None
        self._router = None
        self._state = None

    # ---------------------------------------------------------- info/time
    def get_component_name(self) -> str:
        return "rivergraph Muskingum-Cunge river routing"

    def get_input_item_count(self) -> int:
        return len(self.get_input_var_names())

    def get_output_item_count(self) -> int:
        return len(self.get_output_var_names())

    def get_input_var_names(self) -> tuple[str, ...]:
        return (LATERAL_INFLOW, DISCHARGE)

    def get_output_var_names(self) -> tuple[str, ...]:
        return (DISCHARGE,)

    def get_start_time(self) -> float:
        return 0.0

    def get_current_time(self) -> float:
        return self._time

    def get_end_time(self) -> float:
        end = self._cfg.end_time_s
        return float(np.finfo(np.float64).max) if end is None else float(end)

    def get_time_units(self) -> str:
        return "s"

    def get_time_step(self) -> float:
        return float(self._step)

    # ------------------------------------------------------------ variables
    def _var(self, name: str) -> np.ndarray:
        self._r()
        if name not in self._values:
            raise ValueError(f"unknown BMI variable '{name}'; known: {sorted(self._values)}")
        return self._values[name]

    def get_var_type(self, name: str) -> str:
        return str(self._var(name).dtype)

    def get_var_units(self, name: str) -> str:
        self._var(name)
        return _UNITS[name]

    def get_var_itemsize(self, name: str) -> int:
        return int(self._var(name).itemsize)

    def get_var_nbytes(self, name: str) -> int:
        return int(self._var(name).nbytes)

    def get_var_location(self, name: str) -> str:
        self._var(name)
        return "node"

    def get_var_grid(self, name: str) -> int:
        self._var(name)
        return 0

    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        dest[:] = self._var(name)
        return dest

    def get_value_ptr(self, name: str) -> np.ndarray:
        return self._var(name)

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        dest[:] = self._var(name)[self._indices(inds)]
        return dest

    def set_value(self, name: str, src: np.ndarray) -> None:
        v = self._var(name)
        src = np.asarray(src, dtype=np.float64).reshape(-1)
        if src.shape != v.shape:
            raise ValueError(f"set_value('{name}'): expected {v.size} values (one per reach), got {src.size}")
        self._set(name, slice(None), src)

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        self._var(name)
        inds = self._indices(inds)
        src = np.asarray(src, dtype=np.float64).reshape(-1)
        if src.shape != inds.shape:
            raise ValueError(f"set_value_at_indices('{name}'): {inds.size} indices but {src.size} values")
        self._set(name, inds, src)

    def _indices(self, inds) -> np.ndarray:
        inds = np.asarray(inds, dtype=np.int64).reshape(-1)
        n = self._values[DISCHARGE].size
        if inds.size and (inds.min() < 0 or inds.max() >= n):
            raise ValueError(f"reach indices must be in [0, {n}), got {inds.min()}..{inds.max()}")
        return inds

    def _set(self, name: str, where, src: np.ndarray) -> None:
        bad = ~np.isfinite(src) | (src < 0)
        if bad.any():
            ids = self._r().network.ids[np.arange(self._values[name].size)[where][bad]][:10]
            raise ValueError(f"set '{name}': negative or non-finite values at reaches {ids.tolist()}")
        self._values[name][where] = src
        if name == DISCHARGE:
            self._reset_flow_state()

    def _reset_flow_state(self) -> None:
        """Carry the set discharge as the flow state: inflow I = sum of upstream Q; storage re-derived."""
        Q = self._values[DISCHARGE]
        I = upstream_sum(Q, self._r().network)
        self._state = RoutingState(torch.from_numpy(Q.copy()), torch.from_numpy(I), None)

    # ----------------------------------------------------------------- grid
    def _grid(self, grid: int) -> None:
        self._r()
        if grid != 0:
            raise ValueError(f"unknown grid {grid}; this model has grid 0 only")

    def get_grid_type(self, grid: int) -> str:
        self._grid(grid)
        return "unstructured"

    def get_grid_rank(self, grid: int) -> int:
        self._grid(grid)
        return 2

    def get_grid_size(self, grid: int) -> int:
        self._grid(grid)
        return int(self._values[DISCHARGE].size)

    def get_grid_node_count(self, grid: int) -> int:
        return self.get_grid_size(grid)

    def get_grid_edge_count(self, grid: int) -> int:
        self._grid(grid)
        return int(len(self._edges))

    def get_grid_face_count(self, grid: int) -> int:
        self._grid(grid)
        return 0

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        edge_nodes[:] = self._edges.reshape(-1)
        return edge_nodes

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_edges

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_nodes

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return nodes_per_face

    def _coord(self, grid: int, column: str, dest: np.ndarray) -> np.ndarray:
        self._grid(grid)
        attrs = self._r().network.attrs
        if column not in attrs:
            raise NotImplementedError(f"the network has no '{column}' column for this grid coordinate")
        dest[:] = attrs[column].to_numpy(np.float64)
        return dest

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        return self._coord(grid, "lon", x)

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        return self._coord(grid, "lat", y)

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        return self._coord(grid, "elevation_m", z)

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        raise NotImplementedError("grid 0 is unstructured: it has no shape")

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        raise NotImplementedError("grid 0 is unstructured: it has no spacing")

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        raise NotImplementedError("grid 0 is unstructured: it has no origin")
