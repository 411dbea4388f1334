"""The Muskingum / Muskingum-Cunge router (an nn.Module) over a river network; physics in
:mod:`rivergraph.physics.muskingum` and :mod:`rivergraph.physics.channels` (the routing modes are the channel
registry's geometries), the sweep in :mod:`rivergraph.engine` (cells :class:`~rivergraph.engine.cells.StaticMuskingum`
and :class:`~rivergraph.engine.cells.MuskingumCungeCell`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

import numpy as np
import torch

from ..engine.cells import MuskingumCungeCell, StaticMuskingum
from ..engine.checkpoint import parse_memory
from ..engine.compiled import ENGINES
from ..engine.schedule import Schedule
from ..engine.sweep import steady_state, sweep
from ..graph.network import NetworkError, RiverNetwork
from ..physics.channels import ParamSpec, get_channel
from ..physics.muskingum import effective_x, muskingum_coefficients

__all__ = ["MuskingumCunge", "MassBalance", "RoutingState"]


@dataclass
class MassBalance:
    """Network water balance of one routing call (volumes in m3).

    ``residual = inflow - outflow - (storage_end - storage_start)``; ``relative_error`` divides it by
    the larger of the inflow and outflow volumes. Storage is the Muskingum storage S = K [X I + (1 - X) Q] per reach with the
    effective K, X of the first and last step; the lateral inflow, held constant within a step, is not
    part of it (its wedge term telescopes away for static K, X, making the static balance exact). For flow-dependent (variable-parameter) routing, K and X
    change every step, so this storage is not exactly a conserved state (a known property of
    variable-parameter Muskingum-Cunge, Todini 2007, HESS 11): ``parameter_drift_m3`` sums the jumps of
    each reach's storage between the end of one step and the start of the next (same state, new K, X),
    and ``scheme_relative_error = (residual + drift) / volume`` checks that every step conserved water
    exactly given its own K, X (it is at rounding level unless the solver is wrong).
    """

    inflow_m3: float
    outflow_m3: float
    storage_start_m3: float
    storage_end_m3: float
    parameter_drift_m3: float = 0.0
    residual_m3: float = field(init=False)
    relative_error: float = field(init=False)
    scheme_relative_error: float = field(init=False)

    def __post_init__(self):
        self.residual_m3 = self.inflow_m3 - self.outflow_m3 - (self.storage_end_m3 - self.storage_start_m3)
        scale = max(abs(self.inflow_m3), abs(self.outflow_m3), 1e-30)
        self.relative_error = self.residual_m3 / scale
        self.scheme_relative_error = (self.residual_m3 + self.parameter_drift_m3) / scale

    def __str__(self) -> str:
        return (f"inflow {self.inflow_m3:.6g} m3, outflow {self.outflow_m3:.6g} m3, storage change "
                f"{self.storage_end_m3 - self.storage_start_m3:.6g} m3, residual {self.residual_m3:.3g} m3 "
                f"(relative {self.relative_error:.2e}; variable-parameter drift {self.parameter_drift_m3:.3g} m3, "
                f"scheme residual {self.scheme_relative_error:.2e})")


@dataclass
class RoutingState:
    """Carry-over state (original reach order) at the end of the last step: outflow Q (m3/s), upstream
    inflow I (m3/s) and, for flow-dependent routing, the Muskingum storage S (m3) carried as a state."""

    Q: torch.Tensor
    I: torch.Tensor
    S: torch.Tensor | None = None


class MuskingumCunge(torch.nn.Module):
    """Differentiable Muskingum / Muskingum-Cunge router over a :class:`RiverNetwork`.

    Args:
        network: the river network.
        dt: routing step (s).
        forcing_dt: interval of the lateral inflow rows (s), a multiple of ``dt`` (default ``dt``).
            Each row is held constant over its ``forcing_dt / dt`` routing sub-steps.
        mode: a channel geometry of :data:`rivergraph.physics.channels.CHANNELS` (``"trapezoid"``
            default, ``"power_law"``, ``"static"``, ...; parameters, columns and bounds declared there) or ``"nwm"``, the
            National Water Model's Muskingum-Cunge with its lakes and prescribed flows, delegated to
            :class:`rivergraph.models.nwm.NWMRouter` (``nwm`` = its keyword arguments: ``lakes``,
            ``prescribed``, ``coupling``, ``lake_lateral``, ...; ``forward`` then also takes ``Q0``,
            ``prescribed_flow``, ``lake_level0``, ``lake_params``; ``state`` is an ``NWMState``).
        positivity: make every coefficient non-negative (see module docstring). For ``static`` mode
            the number of reaches whose X was lowered is warned about; pass ``False`` for RAPID's exact
            coefficients.
        output: what each output row holds when ``forcing_dt > dt``: ``"mean"`` (time-average of the
            outflow over the interval, trapezoidal in time, consistent with the volume balance),
            ``"end"`` (instantaneous at the end of the interval) or ``"rapid"`` (RAPID2's Qout: the mean
            of the outflows at the start of each sub-step). Identical to ``"end"`` when ``forcing_dt == dt``.
        scheme: update form of the flow-dependent modes: ``"conservative"`` (default) carries each reach's
            storage as a state so water is conserved to rounding while K, X vary; ``"standard"`` is the
            textbook form of the NWM / t-route and DDR, Q(t) = c1 I(t) + c2 I(t-1) + c3 Q(t-1) + c4 q,
            which gains or loses water when K, X change (reported in ``router.balance``); see
            :func:`rivergraph.physics.muskingum.mc_step`. Static mode is the same under both.
        device: ``"cpu"`` or ``"cuda"``; the network schedule lives there.
        checkpoint_every, memory_budget: memory-bounded gradients. ``None`` keeps the full [T + 1, N] state
            histories for the adjoint; an int keeps the sweep state every that many anti-diagonals and
            recomputes one segment at a time in the reverse sweep (O(N sqrt(T)) memory, one more forward
            sweep of time, bit-identical gradients); ``"auto"`` picks it from ``memory_budget`` (bytes or e.g.
            ``"6GiB"``; full histories when they fit). See :mod:`rivergraph.engine.checkpoint`. For
            ``mode="nwm"`` they checkpoint its time loop (an int counts sub-steps; ``"auto"`` measures the first
            sub-step's graph: :func:`rivergraph.engine.lagged.run_lagged`).
        engine: ``"auto"`` (default: the compiled CPU loop of :mod:`rivergraph.engine.compiled` where it has a
            kernel for the mode, on CPU; else the torch wavefront), ``"torch"`` (the wavefront, the GPU path)
            or ``"compiled"`` (an error where it does not apply). For ``mode="nwm"`` it selects the secant depth
            solve (:class:`rivergraph.models.nwm.NWMRouter`).

    Call: ``Q = router(q_lat, **params)`` with q_lat [T, N] m3/s in the network's reach order; params
    (named as the mode's channel declares them, e.g. ``n``, ``width_coef``, ``width_exp``) default to the
    network's attribute columns; returns Q [T, N] (or [T, len(outputs)]) in m3/s.
    ``router.state`` and ``router.balance`` hold the carry-over state and the mass balance.
    """

    def __init__(self, network: RiverNetwork, dt: float = 3600.0, forcing_dt: float | None = None,
                 mode: str = "trapezoid", positivity: bool = True,
                 output: Literal["mean", "end", "rapid"] = "mean",
                 scheme: Literal["conservative", "standard"] = "conservative", device: str | torch.device = "cpu",
                 checkpoint_every: int | Literal["auto"] | None = None, memory_budget: int | str | None = None,
                 engine: Literal["auto", "torch", "compiled"] = "auto", nwm: dict | None = None):
        super().__init__()
        if mode == "nwm":
            from .nwm import NWMRouter
            self.network, self.dt, self.mode, self.output = network, float(dt), mode, output
            self.scheme, self.engine = (nwm or {}).get("coupling", "lagged"), engine
            opts = {"checkpoint_every": checkpoint_every, "memory_budget": memory_budget, **(nwm or {})}
            self.nwm = NWMRouter(network, dt, forcing_dt, output="end" if output == "end" else "mean",
                                 device=device, engine=engine, **opts)
            self.state = self.balance = None
            return
        if nwm is not None:
            raise ValueError("nwm=... options are for mode='nwm'")
        self.channel = get_channel(mode)
        if not dt > 0:
            raise ValueError(f"dt must be positive seconds, got {dt}")
        forcing_dt = dt if forcing_dt is None else forcing_dt
        nsub = forcing_dt / dt
        if abs(nsub - round(nsub)) > 1e-9 or nsub < 1:
            raise ValueError(f"forcing_dt ({forcing_dt} s) must be a whole multiple of dt ({dt} s)")
        if output not in ("mean", "end", "rapid"):
            raise ValueError("output must be 'mean', 'end' or 'rapid'")
        if scheme not in ("conservative", "standard"):
            raise ValueError("scheme must be 'conservative' or 'standard'")
        self.network, self.dt, self.nsub, self.mode = network, float(dt), int(round(nsub)), mode
        self.positivity, self.output, self.scheme = positivity, output, scheme
        self.sched = Schedule.from_network(network, device)
        parse_memory(memory_budget)  # fail early on a malformed budget
        if not (checkpoint_every is None or checkpoint_every == "auto" or
                (isinstance(checkpoint_every, int) and not isinstance(checkpoint_every, bool) and checkpoint_every > 0)):
            raise ValueError(f"checkpoint_every must be None, a positive int or 'auto', got {checkpoint_every!r}")
        self.checkpoint_every, self.memory_budget = checkpoint_every, memory_budget
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.state: RoutingState | None = None
        self.balance: MassBalance | None = None

    @property
    def device(self) -> torch.device:
        return self.nwm._device if self.mode == "nwm" else self.sched.device

    # ---------------------------------------------------------------- params
    def _param(self, spec: ParamSpec, given, dtype) -> torch.Tensor:
        col = spec.column
        if given is None:
            if col is None:
                raise NetworkError(f"routing mode '{self.mode}' needs parameter '{spec.name}' (no network column)")
            if col not in self.network.attrs:
                raise NetworkError(f"routing mode '{self.mode}' needs parameter '{spec.name}': pass it or give the "
                                   f"network a '{col}' column")
            v = self.network.attrs[col].to_numpy(dtype=np.float64)
            bad = ~np.isfinite(v)
            if bad.any():
                raise NetworkError(f"non-finite '{col}' for reaches {self.network.ids[bad][:10].tolist()}")
            given = torch.from_numpy(v.copy())
        t = self.network.reach_vector(given, dtype, self.device, f"parameter '{spec.name}'")
        td = t.detach()
        if not torch.isfinite(td).all():
            bad = (~torch.isfinite(td)).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"parameter '{spec.name}' has non-finite values at reaches "
                             f"{self.network.ids[bad].tolist()}")
        bad = spec.violations(td)
        if bad is not None:
            mask, rule = bad
            ids = self.network.ids[mask.nonzero().flatten()[:10].cpu().numpy()].tolist()
            raise ValueError(f"parameter '{spec.name}' {rule} (min {td.min().item():.4g}, max {td.max().item():.4g}) "
                             f"at reaches {ids}")
        return t.index_select(0, self.sched.order)

    def _canonical(self, params: dict) -> dict:
        """Parameter names of this mode, deprecated aliases (``p``, ``q`` of the power law) resolved."""
        aliases = self.channel.aliases
        out = {}
        for k, v in params.items():
            if k in aliases:
                warnings.warn(f"routing parameter '{k}' is deprecated; call it '{aliases[k]}'", DeprecationWarning,
                              stacklevel=6)  # the caller of router(...)
                if aliases[k] in params:
                    raise TypeError(f"routing parameter '{aliases[k]}' given twice (also as '{k}')")
                k = aliases[k]
            out[k] = v
        unknown = set(out) - set(self.channel.param_names)
        if unknown:
            raise TypeError(f"unknown routing parameter(s) {sorted(unknown)} for mode '{self.mode}'; "
                            f"expected {sorted(self.channel.param_names)}")
        return out

    def sorted_parameters(self, params: Mapping | None = None, dtype: torch.dtype = torch.float64
                          ) -> dict[str, torch.Tensor]:
        """The mode's parameters, checked against their bounds, as [N] tensors in the schedule's sorted
        order: ``params`` (scalars or [N] tensors in network order) or else the network columns."""
        params = self._canonical(dict(params or {}))
        specs = self.channel.params
        missing = [p.column for p in specs
                   if params.get(p.name) is None and p.column is not None and p.column not in self.network.attrs]
        if missing:
            raise NetworkError(f"routing mode '{self.mode}' needs network column(s) "
                               f"{', '.join(repr(c) for c in missing)} (or pass the parameters)")
        return {p.name: self._param(p, params.get(p.name), dtype) for p in specs}

    def _output_positions(self, output_ids, output_positions, outputs):
        """Reach positions to return from the three ways of naming them (see :meth:`forward`)."""
        given = [k for k, v in (("output_ids", output_ids), ("output_positions", output_positions),
                                ("outputs", outputs)) if v is not None]
        if len(given) > 1:
            raise TypeError(f"pass only one of {', '.join(given)}")
        if outputs is not None:
            warnings.warn("MuskingumCunge(..., outputs=) takes reach positions; name them with output_positions= "
                          "(positions) or output_ids= (reach ids): outputs= will be removed", DeprecationWarning,
                          stacklevel=3)
            output_positions = outputs
        if output_ids is not None:
            ids = list(np.asarray(output_ids).tolist()) if not isinstance(output_ids, (list, tuple)) else \
                list(output_ids)
            idx = self.network.index_of
            missing = [r for r in ids if r not in idx]
            if missing:
                hint = ""
                if all(isinstance(r, (int, np.integer)) and 0 <= r < len(self.network) for r in missing):
                    hint = "; these look like reach positions: pass output_positions= for positions"
                raise NetworkError(f"output_ids not in the network: {missing[:10]}"
                                   f"{f' ({len(missing)} in all)' if len(missing) > 10 else ''}{hint}")
            return np.array([idx[r] for r in ids], dtype=np.int64)
        if output_positions is None:
            return None
        pos = np.asarray(list(output_positions) if not torch.is_tensor(output_positions) else
                         output_positions.cpu().numpy())
        if pos.dtype.kind not in "iu":
            raise TypeError(f"output_positions must be integer reach positions, got {pos.dtype}; "
                            "for reach ids use output_ids=")
        pos = pos.astype(np.int64)
        N = len(self.network)
        bad = (pos < 0) | (pos >= N)
        if bad.any():
            ids = set(self.network.index_of)
            hint = ("; they are reach ids: pass output_ids= to select by id" if all(p in ids for p in pos[bad].tolist())
                    else "; to select by reach id use output_ids=")
            raise IndexError(f"output positions must be in [0, {N}), got {pos[bad][:10].tolist()}{hint}")
        return pos

    def _cell(self, th: dict):
        """The engine cell of this mode and its parameter tensors (sorted order)."""
        theta = [th[k] for k in self.channel.param_names]
        if self.channel.flow_dependent:
            return MuskingumCungeCell(self.channel, self.dt, self.positivity, self.scheme == "conservative"), theta
        K, X = self.channel.K_X(None, *theta)
        if self.positivity:
            n_adj = int((effective_x(K.detach(), X.detach(), self.dt) < X.detach()).sum())
            if n_adj:
                warnings.warn(f"positivity: Muskingum X lowered on {n_adj} of {len(K)} reaches so that all "
                              f"coefficients are >= 0 (pass positivity=False for the exact given K, X)",
                              stacklevel=3)
        return StaticMuskingum(self.dt), list(muskingum_coefficients(K, X, self.dt, self.positivity))

    # --------------------------------------------------------------- forward
    def forward(self, q_lat: torch.Tensor, *, state: RoutingState | None = None, hot_start: bool = True,
                output_ids: Iterable | None = None, output_positions: Iterable | None = None,
                outputs: Iterable | None = None, balance: bool = True, **params) -> torch.Tensor:
        """Route lateral inflow.

        Args:
            q_lat: [T, N] lateral inflow (m3/s), columns in network reach order, one row per forcing_dt.
            state: carry-over state from a previous call (``router.state``); overrides ``hot_start``.
            hot_start: start from the steady state of the first row of q_lat (else from zero flow).
            output_ids: reach ids (``network.ids`` values) to return, in that order; default all reaches.
            output_positions: the same by reach position (row in the network); give one or the other.
            outputs: deprecated alias of ``output_positions`` (warns).
            balance: compute ``router.balance``.
            **params: routing parameters ([N] tensors or scalars; default from network columns).
        Returns:
            Q [T, len(outputs)] discharge (m3/s): mean over the interval (``output='mean'``) or at its end.
        """
        outputs = self._output_positions(output_ids, output_positions, outputs)
        if self.mode == "nwm":
            if not hot_start and state is None:
                params.setdefault("Q0", torch.zeros(len(self.network), dtype=torch.float64))
            Q = self.nwm(q_lat, state=state, balance=balance, **params)
            self.state, self.balance = self.nwm.state, self.nwm.balance
            return Q if outputs is None else Q[:, torch.as_tensor(np.asarray(list(outputs), dtype=np.int64))]
        q_lat = self.network.lateral_inflow(q_lat, self.device)
        N = self.sched.n
        dtype = q_lat.dtype
        cell, theta = self._cell(self.sorted_parameters(params, dtype))
        flow_dep = self.channel.flow_dependent
        sched = self.sched
        q_steps = q_lat.repeat_interleave(self.nsub, 0) if self.nsub > 1 else q_lat  # network order
        T = q_steps.shape[0]
        if state is not None:
            if state.Q.shape != (N,):
                raise ValueError(f"state is for {state.Q.shape[0]} reaches, network has {N}")
            Q0 = state.Q.to(self.device, dtype).index_select(0, sched.order)
            I0 = state.I.to(self.device, dtype).index_select(0, sched.order)
            S0 = None if (state.S is None or not flow_dep) else state.S.to(self.device, dtype).index_select(0, sched.order)
        elif hot_start:
            q0 = q_lat[0].index_select(0, sched.order)
            Q0 = steady_state(sched, q0)
            I0 = Q0 - q0
            S0 = None
        else:
            Q0 = q_lat.new_zeros(N)
            I0 = q_lat.new_zeros(N)
            S0 = None
        all_out = outputs is None
        outlets = torch.arange(int(sched.lstart[-2]), N, device=self.device)  # last level = outlets
        if all_out:
            out_pos = None
        else:
            want = torch.as_tensor(outputs, device=self.device)
            pos_user = sched.sorted_pos.index_select(0, want)
            pos_all = torch.unique(torch.cat([pos_user, outlets]))  # sorted ascending
            out_pos = pos_all
        init = (Q0,) if not flow_dep else (Q0, torch.full_like(Q0, float("nan")) if S0 is None else S0)
        res = sweep(sched, cell, (q_steps,), theta, init, I0, outputs="network" if all_out else out_pos,
                    checkpoint_every=self.checkpoint_every, memory_budget=self.memory_budget, engine=self.engine,
                    diagnostics=balance)
        out, If, Qf = res.out, res.message, res.states[0]
        stor = res.diagnostics
        Sf = res.states[1] if flow_dep else cell.S_final
        # out: [T_steps, N] network order (all) or [T_steps, n_out] in out_pos order
        if self.nsub > 1:
            steps = out.reshape(-1, self.nsub, out.shape[1])
            if self.output == "end":
                out_intervals = steps[:, -1]
            else:
                first = Q0.index_select(0, sched.sorted_pos if all_out else out_pos).unsqueeze(0)
                prev = torch.cat([first, out[:-1]], 0).reshape(steps.shape)
                out_intervals = prev.mean(1) if self.output == "rapid" else (0.5 * (prev + steps)).mean(1)
        else:
            out_intervals = out
        if balance:
            outlet_cols = sched.order.index_select(0, outlets) if all_out else torch.searchsorted(out_pos, outlets)
            self.balance = self._mass_balance(q_steps, out.reshape(T, -1).index_select(1, outlet_cols), Q0,
                                              outlets, stor)
        inv = sched.sorted_pos
        self.state = RoutingState(Qf.index_select(0, inv), If.index_select(0, inv), Sf.index_select(0, inv))
        if all_out:
            return out_intervals
        return out_intervals.index_select(1, torch.searchsorted(out_pos, pos_user))

    @torch.no_grad()
    def _mass_balance(self, q_steps, Q_outlet, Q0, outlets, stor) -> MassBalance:
        dt = self.dt
        q_steps, Q_outlet = q_steps.detach().double(), Q_outlet.detach().double()
        Q0o = Q0.detach().double().index_select(0, outlets)
        v_in = dt * q_steps.sum().item()
        prev = torch.cat([Q0o.unsqueeze(0), Q_outlet[:-1]], 0)
        v_out = dt * (0.5 * (prev + Q_outlet)).sum().item()
        all_start, all_end, first, last = stor.tolist()
        drift = (all_start - first) - (all_end - last)
        return MassBalance(v_in, v_out, first, last, drift)
