"""The Muskingum / Muskingum-Cunge router (an nn.Module) over a river network; physics in
:mod:`rivergraph.physics.muskingum` and :mod:`rivergraph.physics.channels`, sweep in :mod:`rivergraph.engine`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np
import torch

from ..engine.schedule import Schedule
from ..engine.sweep import run_wavefront, steady_state
from ..graph.network import NetworkError, RiverNetwork
from ..physics.channels import BOUNDS, power_law_celerity, trapezoid_celerity
from ..physics.muskingum import cunge_coefficient_fn, muskingum_coefficients

__all__ = ["MuskingumCunge", "MassBalance", "RoutingState", "ROUTING_MODES", "mode_parameters"]


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


_PARAMS = {
    "static": {"k": "musk_s", "x": "musx"},
    "trapezoid": {"n": "n", "slope": "slope", "bottom_width": "bottom_width_m", "side_slope": "side_slope",
                  "length": "length_m"},
    "power_law": {"n": "n", "slope": "slope", "p": None, "q": None, "length": "length_m"},
}
ROUTING_MODES: tuple[str, ...] = tuple(_PARAMS)
"""The routing modes (config, BMI and CLI take their choices from here)."""


def mode_parameters(mode: str) -> dict[str, str | None]:
    """Routing parameter name -> default network column (None: no column, must be given) of ``mode``."""
    if mode not in _PARAMS:
        raise ValueError(f"unknown routing mode '{mode}'; choose from {list(_PARAMS)}")
    return dict(_PARAMS[mode])


class MuskingumCunge(torch.nn.Module):
    """Differentiable Muskingum / Muskingum-Cunge router over a :class:`RiverNetwork`.

    Args:
        network: the river network.
        dt: routing step (s).
        forcing_dt: interval of the lateral inflow rows (s), a multiple of ``dt`` (default ``dt``).
            Each row is held constant over its ``forcing_dt / dt`` routing sub-steps.
        mode: ``"trapezoid"`` (default), ``"power_law"`` or ``"static"``; see module docstring.
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
            :func:`rivergraph.engine.mc_step`. Static mode is the same under both.
        device: ``"cpu"`` or ``"cuda"``; the network schedule lives there.

    Call: ``Q = router(q_lat, **params)`` with q_lat [T, N] m3/s in the network's reach order; params
    default to the network's attribute columns; returns Q [T, N] (or [T, len(outputs)]) in m3/s.
    ``router.state`` and ``router.balance`` hold the carry-over state and the mass balance.
    """

    def __init__(self, network: RiverNetwork, dt: float = 3600.0, forcing_dt: float | None = None,
                 mode: Literal["trapezoid", "power_law", "static"] = "trapezoid", positivity: bool = True,
                 output: Literal["mean", "end", "rapid"] = "mean",
                 scheme: Literal["conservative", "standard"] = "conservative", device: str | torch.device = "cpu"):
        super().__init__()
        if mode not in _PARAMS:
            raise ValueError(f"unknown routing mode '{mode}'; choose from {list(_PARAMS)}")
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
        self.state: RoutingState | None = None
        self.balance: MassBalance | None = None

    @property
    def device(self) -> torch.device:
        return self.sched.device

    # ---------------------------------------------------------------- params
    def _param(self, name: str, given, dtype) -> torch.Tensor:
        col = _PARAMS[self.mode][name]
        if given is None:
            if col is None:
                raise NetworkError(f"routing mode '{self.mode}' needs parameter '{name}' (no network column)")
            if col not in self.network.attrs:
                raise NetworkError(f"routing mode '{self.mode}' needs parameter '{name}': pass it or give the "
                                   f"network a '{col}' column")
            v = self.network.attrs[col].to_numpy(dtype=np.float64)
            bad = ~np.isfinite(v)
            if bad.any():
                raise NetworkError(f"non-finite '{col}' for reaches {self.network.ids[bad][:10].tolist()}")
            given = torch.from_numpy(v.copy())
        t = torch.as_tensor(given, dtype=dtype, device=self.device) if not torch.is_tensor(given) else \
            given.to(device=self.device, dtype=dtype)
        N = self.sched.n
        if t.ndim == 0:
            t = t.expand(N)
        if t.shape != (N,):
            raise ValueError(f"parameter '{name}' has shape {tuple(t.shape)}, expected ({N},) or a scalar")
        if not torch.isfinite(t.detach()).all():
            raise ValueError(f"parameter '{name}' has non-finite values")
        return t.index_select(0, self.sched.order)

    def _theta(self, params: dict, dtype):
        unknown = set(params) - set(_PARAMS[self.mode])
        if unknown:
            raise TypeError(f"unknown routing parameter(s) {sorted(unknown)} for mode '{self.mode}'; "
                            f"expected {sorted(_PARAMS[self.mode])}")
        missing = [col for k, col in _PARAMS[self.mode].items()
                   if params.get(k) is None and col is not None and col not in self.network.attrs]
        if missing:
            raise NetworkError(f"routing mode '{self.mode}' needs network column(s) "
                               f"{', '.join(repr(c) for c in missing)} (or pass the parameters)")
        th = {k: self._param(k, params.get(k), dtype) for k in _PARAMS[self.mode]}
        for name, (lo, hi) in (("n", BOUNDS["n"]), ("p", BOUNDS["p"]), ("q", BOUNDS["q"])):
            if name in th:
                v = th[name].detach()
                if (v < lo).any() or (v > hi).any():
                    raise ValueError(f"parameter '{name}' outside its physical bounds [{lo}, {hi}] "
                                     f"(min {v.min().item():.4g}, max {v.max().item():.4g})")
        for name in ("slope", "length", "bottom_width", "k"):
            if name in th and (th[name].detach() <= 0).any():
                raise ValueError(f"parameter '{name}' must be positive")
        if "side_slope" in th and (th["side_slope"].detach() < 0).any():
            raise ValueError("parameter 'side_slope' must be >= 0")
        return th

    def coefficient_fn(self):
        if self.mode == "trapezoid":
            return cunge_coefficient_fn(trapezoid_celerity, self.dt, self.positivity)
        if self.mode == "power_law":
            return cunge_coefficient_fn(power_law_celerity, self.dt, self.positivity)
        return None

    def _theta_list(self, th: dict) -> list[torch.Tensor]:
        if self.mode == "trapezoid":
            return [th["n"], th["slope"], th["bottom_width"], th["side_slope"], th["length"]]
        if self.mode == "power_law":
            return [th["n"], th["slope"], th["p"], th["q"], th["length"]]
        K, X = th["k"], th["x"]
        self._static_KX = (K.detach(), X.detach())
        if self.positivity:
            h = self.dt / (2.0 * K.detach())
            n_adj = int((X.detach() > torch.minimum(h, 1.0 - h)).sum())
            if n_adj:
                warnings.warn(f"positivity: Muskingum X lowered on {n_adj} of {len(K)} reaches so that all "
                              f"coefficients are >= 0 (pass positivity=False for the exact given K, X)",
                              stacklevel=3)
        return list(muskingum_coefficients(K, X, self.dt, self.positivity))

    # --------------------------------------------------------------- forward
    def forward(self, q_lat: torch.Tensor, *, state: RoutingState | None = None, hot_start: bool = True,
                outputs: Iterable | None = None, balance: bool = True, **params) -> torch.Tensor:
        """Route lateral inflow.

        Args:
            q_lat: [T, N] lateral inflow (m3/s), columns in network reach order, one row per forcing_dt.
            state: carry-over state from a previous call (``router.state``); overrides ``hot_start``.
            hot_start: start from the steady state of the first row of q_lat (else from zero flow).
            outputs: reach positions (ints) to return; default all reaches.
            balance: compute ``router.balance``.
            **params: routing parameters ([N] tensors or scalars; default from network columns).
        Returns:
            Q [T, len(outputs)] discharge (m3/s): mean over the interval (``output='mean'``) or at its end.
        """
        q_lat = torch.as_tensor(q_lat)
        if not q_lat.is_floating_point():
            q_lat = q_lat.double()
        q_lat = q_lat.to(self.device)
        N = self.sched.n
        if q_lat.ndim != 2 or q_lat.shape[1] != N:
            raise ValueError(f"q_lat must be [T, {N}] (time x reach, network order), got {tuple(q_lat.shape)}")
        qd = q_lat.detach()
        lo, hi = (float(v) for v in torch.aminmax(qd))  # one pass; NaN propagates to both
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = (~torch.isfinite(qd)).any(0).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"q_lat has NaN/inf values at reaches {self.network.ids[bad].tolist()}")
        if lo < 0:
            bad = (qd < 0).any(0).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"q_lat has negative lateral inflow at reaches {self.network.ids[bad].tolist()}; "
                             "rivergraph does not route negative inflow (losing reaches are not modelled)")
        dtype = q_lat.dtype
        th = self._theta(params, dtype)
        theta = self._theta_list(th)
        sched = self.sched
        q_steps = q_lat.repeat_interleave(self.nsub, 0) if self.nsub > 1 else q_lat  # network order
        T = q_steps.shape[0]
        if state is not None:
            if state.Q.shape != (N,):
                raise ValueError(f"state is for {state.Q.shape[0]} reaches, network has {N}")
            Q0 = state.Q.to(self.device, dtype).index_select(0, sched.order)
            I0 = state.I.to(self.device, dtype).index_select(0, sched.order)
            S0 = None if state.S is None else state.S.to(self.device, dtype).index_select(0, sched.order)
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
            out_col = None
        else:
            want = torch.as_tensor(np.asarray(list(outputs), dtype=np.int64), device=self.device)
            if len(want) and (int(want.min()) < 0 or int(want.max()) >= N):
                raise IndexError(f"output positions must be in [0, {N})")
            pos_user = sched.sorted_pos.index_select(0, want)
            pos_all = torch.unique(torch.cat([pos_user, outlets]))  # sorted ascending
            out_pos = pos_all
            out_col = torch.arange(len(pos_all), device=self.device)
        coeff_fn = self.coefficient_fn()
        out, Qf, If, Sf, stor = run_wavefront(sched, q_steps, Q0, I0, theta, coeff_fn, out_pos, out_col,
                                              dt=self.dt if (balance or coeff_fn is not None) else 0.0, S0=S0,
                                              conservative=self.scheme == "conservative")
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
        self.state = RoutingState(Qf.index_select(0, inv), If.index_select(0, inv),
                                  None if coeff_fn is None else Sf.index_select(0, inv))
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
