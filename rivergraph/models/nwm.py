"""The National Water Model's channel routing as a differentiable nn.Module: NWM Muskingum-Cunge on compound
channels, level-pool lakes and prescribed flows, on the lagged time loop of :mod:`rivergraph.engine.lagged`.

Physics: :mod:`rivergraph.physics.nwm` (SUBMUSKINGCUNGE) and :mod:`rivergraph.physics.level_pool`
(LEVELPOOL_PHYSICS). Network handling as WRF-Hydro's ``drive_CHANNEL_RSL`` (``module_channel_routing.F90``):
a lake (the reaches sharing one ``waterbody`` id present in the lake table) is one node at its outlet
reach (``TYPEL = 1``): every reach flowing into a member flows into the lake, the lake-internal links
(``TYPEL = 2``) are not routed (NaN in the output, as the NWM's CHRTOUT), the outlet carries the
level-pool outflow. The NWM passes a lake no lateral inflow (``run(Qup, Quc, 0.0, ...)``); here the
members' lateral inflow enters the lake by default (``lake_lateral=True``, water conserved), or is
dropped as the NWM does and reported (``lake_lateral=False``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
import pandas as pd
import torch

from ..engine.compiled import ENGINES, available
from ..engine.checkpoint import parse_memory
from ..engine.lagged import LaggedBalance, LaggedGraph, check_every, run_lagged
from ..graph.network import NetworkError, RiverNetwork, _fmt_ids
from ..physics.level_pool import LevelPool, level_from_outflow, level_pool_step
from ..physics.nwm import DEPTH_RTOL, MIN_DEPTH, NWMChannel, mc_step, normal_depth, secant_depth

__all__ = ["NWMRouter", "NWMState", "NWM_PARAMS"]

NWM_PARAMS = {"dx": "length_m", "n": "n", "ncc": "n_floodplain", "s0": "slope", "bw": "bottom_width_m",
              "tw": "top_width_m", "twcc": "top_width_floodplain_m", "z": "side_slope"}
"""NWM channel parameter -> network column (Route_Link Length, n, nCC, So, BtmWdth, TopWdth, TopWdthCC,
1/ChSlp)."""


@dataclass
class NWMState:
    """Carry-over state (network order): outflow Q [N] (m3/s; 0 on lake-internal reaches), channel depth
    [N] (m; the secant's start), lake water elevation H [L] (m)."""

    Q: torch.Tensor
    depth: torch.Tensor
    H: torch.Tensor


class NWMRouter(torch.nn.Module):
    """The NWM's channel routing over a :class:`RiverNetwork`.

    Args:
        network: the network, with the :data:`NWM_PARAMS` columns (``read_route_link`` gives them) and, for
            lakes, ``waterbody``.
        dt: routing sub-step (s); the NWM's 300.
        forcing_dt: interval of the lateral-inflow rows (s), a multiple of dt; row r is held over its
            sub-steps (the NWM holds each hour's inflow constant).
        lakes: level-pool lakes, a LAKEPARM table (``read_lakeparm``; index = waterbody ids of the
            network); ``None`` routes every reach as a channel.
        prescribed: reach positions whose outflow is given to ``forward`` (``prescribed_flow``); a
            prescribed lake outlet replaces that lake's level pool.
        coupling: ``"lagged"`` (the NWM's: upstream outflow of the previous sub-step for both inflow
            terms) or ``"implicit"`` (same-step upstream outflow for the current inflow; loops over levels).
        lake_lateral: lake members' lateral inflow enters the lake (True) or is dropped as the NWM does.
        output: ``"end"``: each row the flow at the end of its interval (the NWM's CHRTOUT streamflow, an
            instantaneous value); ``"mean"``: the time mean over the interval.
        depth_rtol, depth_atol: the secant's tolerances (the NWM's 0.01 and 0.01 m).
        engine: the secant depth solve: ``"auto"`` (default: compiled on a CPU where numba is installed,
            :mod:`rivergraph.engine.compiled_nwm`, else torch), ``"torch"`` (the vectorised
            :func:`~rivergraph.physics.nwm.secant_depth`, the GPU path) or ``"compiled"`` (an error where it does
            not apply). The same values to rounding; the rest of the step is torch either way.
        checkpoint_every: with gradients, keep autograd's graph of this many sub-steps at a time and recompute
            each segment in the backward pass (:func:`rivergraph.engine.lagged.run_lagged`): memory of k
            sub-steps instead of T, the same gradients, about one more forward's time. None (default): the
            whole graph. ``"auto"``: k from the graph of the first sub-step, measured
            (:func:`~rivergraph.engine.lagged.auto_every`): the whole graph where it fits ``memory_budget``
            (bytes or e.g. ``"6GiB"``), else the memory-minimising k.
    """

    def __init__(self, network: RiverNetwork, dt: float = 300.0, forcing_dt: float | None = None,
                 lakes: pd.DataFrame | None = None, prescribed: Iterable[int] | None = None,
                 coupling: Literal["lagged", "implicit"] = "lagged", lake_lateral: bool = True,
                 output: Literal["end", "mean"] = "end", depth_rtol: float = DEPTH_RTOL,
                 depth_atol: float = MIN_DEPTH, device: str | torch.device = "cpu",
                 engine: Literal["auto", "torch", "compiled"] = "auto",
                 checkpoint_every: int | Literal["auto"] | None = None, memory_budget: int | str | None = None):
        super().__init__()
        self.checkpoint_every = check_every(checkpoint_every)
        parse_memory(memory_budget)  # fail early on a malformed budget
        self.memory_budget = memory_budget
        forcing_dt = dt if forcing_dt is None else forcing_dt
        nsub = forcing_dt / dt
        if not dt > 0 or abs(nsub - round(nsub)) > 1e-9 or nsub < 1:
            raise ValueError(f"forcing_dt ({forcing_dt} s) must be a whole multiple of dt ({dt} s > 0)")
        if coupling not in ("lagged", "implicit") or output not in ("end", "mean"):
            raise ValueError("coupling must be 'lagged' or 'implicit', output 'end' or 'mean'")
        self.network, self.dt, self.nsub = network, float(dt), int(round(nsub))
        self.coupling, self.lake_lateral, self.output = coupling, lake_lateral, output
        self.rtol, self.atol, self._device = depth_rtol, depth_atol, torch.device(device)
        self.engine = _check_engine(engine, self._device)
        N = len(network)
        pres = np.unique(np.asarray([] if prescribed is None else list(prescribed), dtype=np.int64))
        if len(pres) and (pres.min() < 0 or pres.max() >= N):
            raise IndexError(f"prescribed positions must be in [0, {N})")
        self.prescribed = np.asarray([] if prescribed is None else list(prescribed), dtype=np.int64)
        if len(np.unique(self.prescribed)) != len(self.prescribed):
            raise ValueError("prescribed positions repeat")
        down, member_outlet, lake_ids, outlets = self._collapse_lakes(lakes)
        self.lake_ids = lake_ids                        # every lake collapsed (level pool or prescribed)
        self.lake_outlets = outlets                     # their outlet positions
        self.internal = member_outlet >= 0              # lake-internal (not routed) reaches
        self.internal[outlets] = False
        self._member_outlet = member_outlet
        bad = self.internal[self.prescribed]
        if bad.any():
            raise NetworkError(f"prescribed reaches {_fmt_ids(network.ids[self.prescribed[bad]])} are lake-internal "
                               "links (not routed); prescribe the lake's outlet")
        pooled = ~np.isin(outlets, self.prescribed)
        self.pool_outlets = outlets[pooled]
        self.lakeparm = None if lakes is None else lakes.loc[lake_ids[pooled]]
        routed = ~self.internal
        channel = np.nonzero(routed & ~np.isin(np.arange(N), np.concatenate([self.pool_outlets, self.prescribed])))[0]
        self.graph = LaggedGraph.build(np.where(self.internal, -2, down), channel, self.pool_outlets, self.prescribed,
                                       self._device)
        self.state: NWMState | None = None
        self.balance: LaggedBalance | None = None

    # ----------------------------------------------------------------- lakes
    def _collapse_lakes(self, lakes):
        net = self.network
        N = len(net)
        down = net.downstream.astype(np.int64).copy()
        member_outlet = -np.ones(N, dtype=np.int64)
        if lakes is None or len(lakes) == 0:
            return down, member_outlet, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if "waterbody" not in net.attrs:
            raise NetworkError("lakes given but the network has no 'waterbody' column (Route_Link NHDWaterbodyComID)")
        wb = np.nan_to_num(net.attrs["waterbody"].to_numpy(dtype=np.float64), nan=-9999).astype(np.int64)
        ids = np.asarray(lakes.index, dtype=np.int64)
        absent = ids[~np.isin(ids, wb)]
        if len(absent):
            raise NetworkError(f"lakes {_fmt_ids(absent)} have no member reach in the network's 'waterbody' column")
        outlets = np.empty(len(ids), dtype=np.int64)
        for k, lid in enumerate(ids):
            mem = np.nonzero(wb == lid)[0]
            d = down[mem]
            leaves = mem[(d < 0) | ~np.isin(d, mem)]
            if len(leaves) != 1:
                raise NetworkError(f"lake {lid}: {len(leaves)} member reaches leave it "
                                   f"({_fmt_ids(net.ids[leaves])}); a level-pool lake needs exactly one outlet")
            outlets[k] = leaves[0]
            member_outlet[mem] = leaves[0]
        # every edge into a member of a lake goes to that lake's outlet (drive_CHANNEL_RSL's revised TO_NODEs)
        tgt = np.where(down >= 0, member_outlet[np.maximum(down, 0)], -1)
        inner = (member_outlet >= 0) & (tgt == member_outlet)
        down = np.where((down >= 0) & (tgt >= 0) & ~inner, tgt, down)
        return down, member_outlet, ids, outlets

    # ---------------------------------------------------------------- params
    def _channel(self, params: dict, dtype) -> NWMChannel:
        unknown = set(params) - set(NWM_PARAMS)
        if unknown:
            raise TypeError(f"unknown NWM channel parameter(s) {sorted(unknown)}; expected {sorted(NWM_PARAMS)}")
        net, N, ch = self.network, len(self.network), self.graph.channel
        vals = {}
        for k, col in NWM_PARAMS.items():
            v = params.get(k)
            if v is None:
                if col not in net.attrs:
                    raise NetworkError(f"the nwm channel needs network column '{col}' (or pass '{k}')")
                v = torch.tensor(net.attrs[col].to_numpy(dtype=np.float64), dtype=dtype)
            t = torch.as_tensor(v, dtype=dtype).to(self._device)
            t = t.expand(N) if t.ndim == 0 else t
            if t.shape != (N,):
                raise ValueError(f"parameter '{k}' has shape {tuple(t.shape)}, expected ({N},) or a scalar")
            t = t.index_select(0, ch)
            bad = ~torch.isfinite(t.detach())
            if k in ("dx", "n", "s0", "bw", "z"):
                bad |= t.detach() <= 0
            if k in ("twcc", "ncc", "tw"):
                bad |= t.detach() < 0
            if bad.any():
                where = net.ids[ch.cpu().numpy()[bad.cpu().numpy()]]
                raise NetworkError(f"NWM channel parameter '{k}' ({col}) non-finite or out of range at reaches "
                                   f"{_fmt_ids(where)} (the NWM stops on n, So, z, BtmWdth <= 0)")
            vals[k] = t
        return NWMChannel(**vals)

    def _lakes(self, lake_params: dict | None, dtype) -> LevelPool | None:
        if self.lakeparm is None or len(self.pool_outlets) == 0:
            return None
        lp = LevelPool.from_lakeparm(self.lakeparm, dtype, self._device)
        for k, v in (lake_params or {}).items():
            if k not in LevelPool.FIELDS:
                raise TypeError(f"unknown lake parameter '{k}'; expected {sorted(LevelPool.FIELDS)}")
            t = torch.as_tensor(v, dtype=dtype).to(self._device)
            setattr(lp, k, t.expand(len(self.pool_outlets)) if t.ndim == 0 else t)
        return lp

    # --------------------------------------------------------------- forward
    def forward(self, q_lat: torch.Tensor, *, Q0: torch.Tensor | None = None, state: NWMState | None = None,
                prescribed_flow: torch.Tensor | None = None, lake_level0: torch.Tensor | None = None,
                lake_params: dict | None = None, balance: bool = True, **params) -> torch.Tensor:
        """Route lateral inflow ``q_lat`` [T, N] (m3/s, network order, row r used during interval r).

        Args:
            Q0: initial outflow [N] (e.g. the NWM's streamflow at the start; NaN read as 0); default the
                steady state of ``q_lat[0]``. Ignored when ``state`` is given.
            prescribed_flow: [T, P] outflow of the ``prescribed`` reaches at the end of each interval
                (instantaneous, like CHRTOUT streamflow); sub-steps interpolate linearly from the
                previous value.
            lake_level0: initial lake elevations [L] (m); default inverted from the outlets' initial
                outflow (:func:`rivergraph.physics.level_pool.level_from_outflow`).
            lake_params: level-pool parameter overrides (:class:`LevelPool` field -> [L] tensor).
            **params: channel parameter overrides (:data:`NWM_PARAMS` keys -> [N] tensors or scalars).
        Returns:
            Q [T, N] (m3/s), NaN on lake-internal reaches. ``self.state``, ``self.balance`` are updated.
        """
        q_lat = self.network.lateral_inflow(q_lat, self._device, negative_ok=True)  # the NWM routes its losses
        N, dtype = len(self.network), q_lat.dtype
        chn = self._channel(params, dtype)
        lp = self._lakes(lake_params, dtype)
        g, P = self.graph, len(self.prescribed)
        if P and (prescribed_flow is None or tuple(prescribed_flow.shape) != (q_lat.shape[0], P)):
            raise ValueError(f"prescribed_flow must be [{q_lat.shape[0]}, {P}] for the {P} prescribed reaches")
        # lateral inflow: lake members' inflow moves to the outlet column (or is dropped, as the NWM)
        member = torch.as_tensor(self._member_outlet, device=self._device)
        is_mem = member >= 0
        q_eff = q_lat * (~is_mem).to(dtype)
        dropped = 0.0
        if is_mem.any():
            m_idx = is_mem.nonzero().flatten()
            if self.lake_lateral:
                q_eff = q_eff.index_add(1, member.index_select(0, m_idx), q_lat.index_select(1, m_idx))
            else:
                dropped = float(q_lat.detach().index_select(1, m_idx).double().sum()) * self.dt * self.nsub
        # initial state
        if state is not None:
            Qs, depth0, H0 = (v.to(self._device, dtype) for v in (state.Q, state.depth, state.H))
            depth0 = depth0.index_select(0, g.channel)
        else:
            if Q0 is None:
                Q0 = torch.as_tensor(self.network.accumulate(q_lat[0].detach().double().cpu().numpy()))
            Qs = torch.nan_to_num(torch.as_tensor(Q0).to(self._device, dtype), nan=0.0)
            Qs = torch.where(torch.as_tensor(self.internal, device=self._device), torch.zeros_like(Qs), Qs)
            depth0 = normal_depth(Qs.detach().index_select(0, g.channel), chn)
            H0 = None
        if lp is not None:
            if lake_level0 is not None:
                H0 = torch.as_tensor(lake_level0).to(self._device, dtype)
            elif H0 is None:
                H0 = level_from_outflow(Qs.index_select(0, g.lake_outlet), lp)
        else:
            H0 = Qs.new_zeros(0)
        nsub, dt = self.nsub, self.dt
        q_steps = q_eff.repeat_interleave(nsub, 0) if nsub > 1 else q_eff
        pres_steps = None
        if P:
            pf = torch.as_tensor(prescribed_flow).to(self._device, dtype)
            prev = torch.cat([Qs.index_select(0, g.prescribed).unsqueeze(0), pf[:-1]], 0)
            w = torch.arange(1, nsub + 1, device=self._device, dtype=dtype) / nsub
            pres_steps = (prev.unsqueeze(1) + (pf - prev).unsqueeze(1) * w.view(1, -1, 1)).reshape(-1, P)

        solver, finish = _depth_solver(self.engine, self._device)

        every_channel = torch.arange(len(chn.n), device=chn.n.device)

        def channel_cell(idx, qup, quc, qdp, ql, depth):
            # every channel reach in order (the lagged coupling's one group): the channel itself, not a copy per
            # step (the compiled kernels then keep its float64 arrays across the steps)
            whole = idx.shape == every_channel.shape and torch.equal(idx, every_channel)
            return mc_step(qup, quc, qdp, ql, depth, chn if whole else chn.index(idx), dt, self.rtol, self.atol,
                           solver, finish)

        def lake_cell(lakes, H, qi0, qi1):
            sub = _lake_subset(lp, lakes)
            H_new, out, _ = level_pool_step(H, qi0, qi1, torch.zeros_like(qi0), sub, dt)
            return H_new, out, sub.storage(H_new) - sub.storage(H)

        bal = LaggedBalance() if balance else None
        if bal is not None:
            bal.dropped_m3 = dropped
            if lp is not None:
                bal.lake_start_m3 = float(lp.storage(H0).detach().double().sum())
        Q, Qf, depth_f, Hf = run_lagged(g, q_steps, Qs, depth0, H0, channel_cell, lake_cell if lp is not None else None,
                                        q_steps.index_select(1, g.lake_outlet) if lp is not None else None, pres_steps,
                                        dt, lp.storage if lp is not None else None, self.coupling, bal,
                                        self.checkpoint_every, self.memory_budget)
        if bal is not None and lp is not None and bal.lake_end_m3 == 0.0:
            bal.lake_end_m3 = float(lp.storage(Hf).detach().double().sum())
        self.balance = bal
        depth_full = Qs.new_zeros(N).detach().index_put((g.channel,), depth_f.detach())
        self.state = NWMState(Qf.detach(), depth_full, Hf.detach())
        T = q_lat.shape[0]
        if nsub > 1:
            steps = Q.reshape(T, nsub, N)
            if self.output == "end":
                out = steps[:, -1]
            else:
                prev = torch.cat([Qs.unsqueeze(0), Q[:-1]], 0).reshape(T, nsub, N)
                out = (0.5 * (prev + steps)).mean(1)
        else:
            out = Q if self.output == "end" else 0.5 * (torch.cat([Qs.unsqueeze(0), Q[:-1]], 0) + Q)
        nan = torch.as_tensor(self.internal, device=self._device)
        return torch.where(nan.unsqueeze(0), torch.full_like(out, float("nan")), out)


def _check_engine(engine: str, device: torch.device) -> str:
    """``engine`` if it names an engine that can run on ``device``; an error otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "compiled" and not (available() and device.type == "cpu"):
        why = "numba is not installed" if not available() else f"it runs on CPU only (device {device})"
        raise ValueError(f"engine='compiled' is not available for mode 'nwm': {why}")
    return engine


def _depth_solver(engine: str, device: torch.device):
    """The secant depth solve of :func:`~rivergraph.physics.nwm.mc_step` for ``engine`` and its no-gradient end
    of the step: the compiled ones (numba, imported here on first use) for ``"compiled"`` and for ``"auto"`` on a
    CPU with numba, else torch's (and None: mc_step's own)."""
    if engine == "torch" or not (available() and device.type == "cpu"):
        return secant_depth, None
    from ..engine.compiled_nwm import secant_depth_compiled
    from ..engine.compiled_nwm_adjoint import finish

    return secant_depth_compiled, finish


def _lake_subset(lp: LevelPool, idx: torch.Tensor) -> LevelPool:
    return LevelPool(**{f: getattr(lp, f).index_select(0, idx) for f in LevelPool.FIELDS})
