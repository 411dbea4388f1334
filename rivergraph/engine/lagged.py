"""The lagged-coupling time loop: every reach of a step computed at once from the previous step's flows.

The NWM's reach-based channel driver (WRF-Hydro ``module_channel_routing.F90``, ``drive_CHANNEL_RSL``)
gives each link, for both the previous and the current upstream inflow (``Qup``, ``Quc``), the sum of its
upstream links' outflow of the *previous* routing sub-step (``QLINK(:,1) = QLINK(:,2)`` after every
sub-step; under MPI ``gQLINK`` is broadcast once per sub-step: "Global array never sees current"). The
reaches of one sub-step are then independent: each step here is ONE vectorised update over all reaches
(a scatter-add of the upstream flows, the channel cell, the lake cell, the prescribed flows), with no
level or anti-diagonal loop. torch autograd differentiates the loop (a plain time loop of elementwise
ops), so memory grows with steps x reaches, unless ``checkpoint_every`` bounds it (:func:`run_lagged`).

``coupling="implicit"`` instead gives each reach its upstream outflow of the *same* step for the current
inflow (the textbook Muskingum network form, as RAPID / rivergraph's wavefront): the step then loops over
topological levels of the graph, one group per level (slow on deep networks; an option for comparisons).

The engine knows no physics: the channel and lake cells are callables (see
:mod:`rivergraph.models.nwm` for the NWM's). Mass bookkeeping (float64, detached) per step:

- lagged: a channel reach receives dt (U(t-1) + q) and passes dt Q(t-1) on; its Muskingum storage is
  S = D Q with D = K(1 - X) + dt/2 (for constant K, X the change of S is exactly that net volume: the
  Muskingum identity K(1-X)(Q(t) - Q(t-1)) = dt (U + q - (Q(t) + Q(t-1))/2) with Qup = Quc = U).
- implicit: trapezoidal fluxes dt (U(t-1) + U(t))/2, dt (Q(t-1) + Q(t))/2 and S = K (1 - X) Q + K X U.
- variable K, X make the Muskingum storage drift from the net volume kept: reported, not hidden.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
import torch.utils.checkpoint

from .checkpoint import parse_memory

__all__ = ["LaggedGraph", "LaggedBalance", "run_lagged", "check_every", "auto_every", "saved_bytes"]


@dataclass
class LaggedGraph:
    """The routed graph in positions 0..N-1 after lakes are collapsed.

    Attributes:
        src, dst: edges j -> i along which outflow passes (a lake's inflow reaches point at its outlet).
        channel: reaches routed by the channel cell; lake_outlet [L]: each lake's outlet reach;
        prescribed [P]: reaches whose outflow is given; outlets: reaches whose water leaves the network.
        groups: for implicit coupling, the reaches of each topological level (upstream first).
    """

    n: int
    src: torch.Tensor
    dst: torch.Tensor
    channel: torch.Tensor
    lake_outlet: torch.Tensor
    prescribed: torch.Tensor
    outlets: torch.Tensor
    groups: list[torch.Tensor] = field(default_factory=list)

    @staticmethod
    def build(down: np.ndarray, channel: np.ndarray, lake_outlet: np.ndarray, prescribed: np.ndarray,
              device=None) -> "LaggedGraph":
        """From an effective downstream array (``down[j]`` = position receiving j's outflow, -1 where it
        leaves the network, -2 for reaches that carry nothing, e.g. lake-internal links)."""
        down = np.asarray(down, dtype=np.int64)
        n = len(down)
        e = down >= 0
        src, dst = np.nonzero(e)[0], down[e]
        lvl = np.zeros(n, dtype=np.int64)          # level from headwaters on the routed edges
        order = _topo_order(n, src, dst)
        for j in order:
            if down[j] >= 0:
                lvl[down[j]] = max(lvl[down[j]], lvl[j] + 1)
        routed = down > -2
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        groups = [t(np.nonzero(routed & (lvl == k))[0]) for k in range(int(lvl[routed].max()) + 1)] if routed.any() else []
        return LaggedGraph(n, t(src), t(dst), t(channel), t(lake_outlet), t(prescribed), t(np.nonzero(down == -1)[0]),
                           groups)


def _topo_order(n, src, dst) -> np.ndarray:
    indeg = np.bincount(dst, minlength=n)
    nxt = -np.ones(n, dtype=np.int64)
    nxt[src] = dst
    stack = list(np.nonzero(indeg == 0)[0])
    out = []
    while stack:
        j = stack.pop()
        out.append(j)
        k = nxt[j]
        if k >= 0:
            indeg[k] -= 1
            if indeg[k] == 0:
                stack.append(k)
    return np.asarray(out, dtype=np.int64)


@dataclass
class LaggedBalance:
    """Water volumes (m3) of one run (float64, detached).

    ``channel_change_m3``: the net volume the channel reaches kept, the sum over steps of what each received
    minus what it passed on (exactly what the coupling moves). ``residual = inflow + prescribed_net -
    outflow - channel_change - lake_change + lake_imbalance`` checks that bookkeeping (rounding only).
    The NWM scheme's own departures are reported, not hidden: ``created_m3``, the water the NWM's
    negative-outflow rule adds; ``lake_imbalance_m3``, what the level pools passed on (Q(H') dt per step) and
    stored minus what they received (the NWM's Runge-Kutta takes out dt (Q1/4 + 3 Q3/4), not Q(H') dt,
    and weighs the inflow 0.33 / 0.67); ``muskingum_drift_m3``, ``channel_change``
    minus the change of the Muskingum storage sum(K (1-X) Q + ...) (variable K, X); ``dropped_m3``: lake
    members' lateral inflow dropped (``lake_lateral=False``, as the NWM); ``prescribed_net_m3``: water
    the prescribed flows added (their outflow minus what reached them)."""

    inflow_m3: float = 0.0
    outflow_m3: float = 0.0
    channel_change_m3: float = 0.0
    muskingum_start_m3: float = 0.0
    muskingum_end_m3: float = 0.0
    lake_start_m3: float = 0.0
    lake_end_m3: float = 0.0
    created_m3: float = 0.0
    prescribed_net_m3: float = 0.0
    lake_imbalance_m3: float = 0.0
    dropped_m3: float = 0.0

    @property
    def residual_m3(self) -> float:
        return (self.inflow_m3 + self.prescribed_net_m3 - self.outflow_m3 - self.channel_change_m3
                - (self.lake_end_m3 - self.lake_start_m3) + self.lake_imbalance_m3)

    @property
    def muskingum_drift_m3(self) -> float:
        return self.channel_change_m3 - (self.muskingum_end_m3 - self.muskingum_start_m3)

    @property
    def relative_error(self) -> float:
        return self.residual_m3 / max(abs(self.inflow_m3), abs(self.outflow_m3), 1e-30)

    def __str__(self) -> str:
        return (f"inflow {self.inflow_m3:.6g} m3, outflow {self.outflow_m3:.6g} m3, kept in channels "
                f"{self.channel_change_m3:.6g} m3, lake storage change {self.lake_end_m3 - self.lake_start_m3:.6g} m3, "
                f"prescribed net {self.prescribed_net_m3:.6g} m3; residual {self.residual_m3:.3g} m3 (relative "
                f"{self.relative_error:.1e}). NWM scheme: created by the negative-outflow rule {self.created_m3:.6g} "
                f"m3, level-pool imbalance {self.lake_imbalance_m3:.6g} m3, Muskingum storage drift "
                f"{self.muskingum_drift_m3:.6g} m3, lake lateral inflow dropped {self.dropped_m3:.6g} m3")


ChannelCell = Callable[..., tuple]
"""``cell(idx, qup, quc, qdp, ql, depth) -> (Q, depth, created, K, X)`` for channel positions ``idx``
(all tensors [len(idx)]); see :func:`rivergraph.physics.nwm.mc_step`."""
LakeCell = Callable[..., tuple]
"""``lake(lakes, H, qi0, qi1) -> (H_new, outflow, storage_change_m3)`` for lake numbers ``lakes`` ([k] long)."""


def run_lagged(g: LaggedGraph, q_steps: torch.Tensor, Q0: torch.Tensor, depth0: torch.Tensor, H0: torch.Tensor,
               channel_cell: ChannelCell, lake_cell: LakeCell | None, lake_lateral: torch.Tensor | None,
               prescribed_steps: torch.Tensor | None, dt: float, lake_storage: Callable | None = None,
               coupling: Literal["lagged", "implicit"] = "lagged", balance: LaggedBalance | None = None,
               checkpoint_every: int | Literal["auto"] | None = None, memory_budget: int | str | None = None):
    """Route T sub-steps. ``q_steps`` [T, N] lateral inflow per channel reach (lake reaches' columns are
    ignored; ``lake_lateral`` [T, L] is each lake's lateral inflow); ``prescribed_steps`` [T, P] the
    prescribed outflow at the end of each sub-step. Returns ``(Q [T, N], Q_end, depth_end, H_end)``.

    ``checkpoint_every = k`` bounds the gradient memory: with gradients on, each k-step segment runs under
    :func:`torch.utils.checkpoint.checkpoint` (non-reentrant), which keeps only the segment's inputs (the flows,
    depths and lake levels at its start) and recomputes its steps in the backward pass: autograd's graph of
    k steps at a time instead of T (Chen et al. 2016, arXiv:1604.06174). The recomputation repeats the same
    operations on the same inputs, so the values are those of the plain loop exactly and the gradients to
    rounding: an input several sub-steps use (a parameter, a forcing row spread over sub-steps) gets its parts
    summed segment by segment, i.e. in another order (<= 1.3e-14 of the largest, measured). The mass
    bookkeeping runs in the first pass only. ``"auto"``: the first sub-step runs plainly while the bytes autograd
    saves for it are counted, then k comes from :func:`auto_every` (the whole graph where ``memory_budget``
    holds it)."""
    N, T = g.n, q_steps.shape[0]
    check_every(checkpoint_every)
    budget = parse_memory(memory_budget)
    ch, lo, pr = g.channel, g.lake_outlet, g.prescribed
    L = len(lo)
    pos_in_ch = torch.full((N,), -1, dtype=torch.long, device=Q0.device)
    pos_in_ch[ch] = torch.arange(len(ch), device=Q0.device)
    lake_of = torch.full((N,), -1, dtype=torch.long, device=Q0.device)
    lake_of[lo] = torch.arange(L, device=Q0.device)
    groups = [torch.arange(N, device=Q0.device)] if coupling == "lagged" else g.groups
    sub = [_group_parts(grp, pos_in_ch, lake_of, pr) for grp in groups]
    # every position a channel reach, in order (no lakes, nothing prescribed, one group): no gathers, no scatters
    whole = _every_channel(g, coupling)
    take = (lambda x, idx: x) if whole else (lambda x, idx: x.index_select(0, idx))  # noqa: E731
    D_prev = [None]  # the bookkeeping's storage factors of the step before

    def step(t, Q_prev, depth, H, bal):
        U_prev = Q0.new_zeros(N).index_add(0, g.dst, Q_prev.index_select(0, g.src))
        Q_cur = Q0.new_zeros(N)
        depth_new = depth.detach().clone() if len(ch) and not whole else depth
        H_new = H
        created_t = 0.0
        K_all = X_all = None
        for (c_pos, c_idx, l_idx, p_loc) in sub:
            U_cur = U_prev if coupling == "lagged" else Q0.new_zeros(N).index_add(0, g.dst, Q_cur.index_select(0, g.src))
            parts = []
            if len(c_pos):
                q_c, d_c, cr, K, X = channel_cell(c_idx, take(U_prev, c_pos), take(U_cur, c_pos), take(Q_prev, c_pos),
                                                 take(q_steps[t], c_pos), take(depth, c_idx))
                parts.append((c_pos, q_c))
                depth_new = d_c.detach() if whole else depth_new.index_put((c_idx,), d_c.detach())
                if bal is not None:
                    created_t += float((cr.detach().double() * _storage_D(K, X, dt, coupling)).sum())
                    K_all = _put(K_all, c_idx, K.detach(), len(ch))
                    X_all = _put(X_all, c_idx, X.detach(), len(ch))
            if len(l_idx) and lake_cell is not None:
                lat = lake_lateral[t].index_select(0, l_idx)
                qi0 = U_prev.index_select(0, lo.index_select(0, l_idx)) + lat
                qi1 = U_cur.index_select(0, lo.index_select(0, l_idx)) + lat
                Hl, ql_out, dS = lake_cell(l_idx, H.index_select(0, l_idx), qi0, qi1)
                H_new = H_new.index_put((l_idx,), Hl)
                parts.append((lo.index_select(0, l_idx), ql_out))
                if bal is not None:
                    bal.lake_imbalance_m3 += float(dS.detach().double().sum())
            if len(p_loc):
                parts.append((pr.index_select(0, p_loc), prescribed_steps[t].index_select(0, p_loc)))
            for pos, val in parts:
                Q_cur = val if whole else Q_cur.index_put((pos,), val)
        if bal is not None:
            _account(bal, g, t, dt, q_steps[t], lake_lateral[t] if lake_lateral is not None else None, U_prev, Q_prev,
                     Q_cur, K_all, X_all, created_t, coupling, D_prev[0])
            D_prev[0] = (K_all, X_all)
        return Q_cur, depth_new, H_new

    ran = set()  # segments whose first pass ran: a recomputation keeps no books

    def segment(t0, t1, Q_prev, depth, H):
        bal = balance if t0 not in ran else None
        ran.add(t0)
        rows = []
        for t in range(t0, t1):
            Q_prev, depth, H = step(t, Q_prev, depth, H, bal)
            rows.append(Q_prev)
        return torch.stack(rows, 0), Q_prev, depth, H

    Q_prev, depth, H = Q0, depth0, H0
    parts, start = [], 0
    if checkpoint_every is None or not torch.is_grad_enabled():
        k = max(T, 1)
    elif checkpoint_every == "auto":
        k = max(T, 1)
        if T > 1:
            (rows, Q_prev, depth, H), step_bytes = saved_bytes(segment, 0, 1, Q_prev, depth, H)
            parts, start = [rows], 1
            k = auto_every(T - 1, step_bytes, sum(x.numel() * x.element_size() for x in (Q_prev, depth, H)), budget)
    else:
        k = min(checkpoint_every, max(T, 1))
    for t0 in range(start, T, k):
        args = (t0, min(t0 + k, T), Q_prev, depth, H)
        rows, Q_prev, depth, H = (segment(*args) if k >= T - start else
                                  torch.utils.checkpoint.checkpoint(segment, *args, use_reentrant=False))
        parts.append(rows)
    if balance is not None and lake_storage is not None and L:
        balance.lake_end_m3 = float(lake_storage(H).detach().double().sum())
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 0)), Q_prev, depth, H


def check_every(checkpoint_every) -> int | str | None:
    """``checkpoint_every`` of :func:`run_lagged` if it is None, a positive int (sub-steps) or ``"auto"``, else an
    error."""
    if checkpoint_every is not None and checkpoint_every != "auto" and (
            isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be None, a positive int (sub-steps) or 'auto', got "
                         f"{checkpoint_every!r}")
    return checkpoint_every


def saved_bytes(fn: Callable, *args):
    """``(fn(*args), bytes)``: the bytes of the tensors autograd saves for the backward of ``fn``, each tensor
    once (by its data pointer and size)."""
    seen = set()

    def pack(x):
        seen.add((x.data_ptr(), x.numel() * x.element_size()))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn(*args)
    return out, sum(b for _, b in seen)


def auto_every(n_steps: int, step_bytes: int, carry_bytes: int, budget: int | None) -> int:
    """Sub-steps per checkpointed segment for ``checkpoint_every="auto"``: all of them (no recomputation) where
    the whole graph, ``n_steps`` x ``step_bytes``, fits ``budget`` (bytes); else the k minimising
    (n_steps / k) ``carry_bytes`` + k ``step_bytes`` (the segments' kept inputs and one segment's graph),
    k = sqrt(n_steps carry / step) (Chen et al. 2016), with a warning where that exceeds the budget."""
    if budget is not None and n_steps * step_bytes <= budget:
        return max(n_steps, 1)
    k = max(1, min(n_steps, round(math.sqrt(n_steps * carry_bytes / max(step_bytes, 1)))))
    need = math.ceil(n_steps / k) * carry_bytes + k * step_bytes
    if budget is not None and need > budget:
        warnings.warn(f"checkpointed time loop needs ~{need / 2 ** 30:.2f} GiB of autograd graph for {n_steps} "
                      f"sub-steps, over the memory budget of {budget / 2 ** 30:.2f} GiB; route in shorter chunks",
                      stacklevel=3)
    return k


def _every_channel(g: LaggedGraph, coupling: str) -> bool:
    """Whether a lagged step is one group of every position, each a channel reach in order (no lakes, nothing
    prescribed): its gathers and scatters are then the identity."""
    return (coupling == "lagged" and len(g.channel) == g.n and not len(g.lake_outlet) and not len(g.prescribed)
            and torch.equal(g.channel, torch.arange(g.n, device=g.channel.device)))


def _put(buf, idx, val, n):
    buf = torch.zeros(n, dtype=torch.float64, device=val.device) if buf is None else buf
    buf[idx] = val.double()
    return buf


def _group_parts(grp, pos_in_ch, lake_of, pr):
    """Split a group of positions into (channel positions, their channel numbers, lake numbers, prescribed numbers)."""
    in_ch = pos_in_ch.index_select(0, grp)
    c_pos = grp[in_ch >= 0]
    lk = lake_of.index_select(0, grp)
    l_idx = lk[lk >= 0]
    p_mask = torch.isin(pr, grp)
    return c_pos, in_ch[in_ch >= 0], l_idx, p_mask.nonzero().flatten()


def _storage_D(K, X, dt, coupling):
    K, X = K.detach().double(), X.detach().double()
    return K * (1.0 - X) + (0.5 * dt if coupling == "lagged" else 0.0)


@torch.no_grad()
def _account(bal, g, t, dt, q, lake_lat, U_prev, Q_prev, Q_cur, K, X, created_t, coupling, D_prev):
    """Add one step's volumes to ``bal`` (float64)."""
    q, U_prev, Q_prev, Q_cur = (v.detach().double() for v in (q, U_prev, Q_prev, Q_cur))
    ch, lo, pr, out = g.channel, g.lake_outlet, g.prescribed, g.outlets
    lat = float(lake_lat.double().sum()) if lake_lat is not None else 0.0
    bal.inflow_m3 += dt * (float(q.index_select(0, ch).sum()) + float(q.index_select(0, pr).sum()) + lat)
    if coupling == "lagged":     # in during the step: U(t-1) + q; passed on: Q(t-1)
        u_in, q_out = U_prev, Q_prev
    else:                        # trapezoidal in time on both sides
        U_cur = torch.zeros_like(Q_cur).index_add(0, g.dst, Q_cur.index_select(0, g.src))
        u_in, q_out = 0.5 * (U_prev + U_cur), 0.5 * (Q_prev + Q_cur)
    bal.outflow_m3 += dt * float(q_out.index_select(0, out).sum())
    bal.lake_imbalance_m3 += dt * (float((q_out - u_in).index_select(0, lo).sum()) - lat)
    bal.channel_change_m3 += dt * float((u_in + q - q_out).index_select(0, ch).sum())
    if len(pr):
        bal.prescribed_net_m3 += dt * float((q_out - u_in - q).index_select(0, pr).sum())
    if K is not None:
        Dn = _storage_D(K, X, dt, coupling)
        S = Dn * Q_cur.index_select(0, ch)
        S0 = Dn * Q_prev.index_select(0, ch)
        if coupling == "implicit":
            U_cur = torch.zeros_like(Q_cur).index_add(0, g.dst, Q_cur.index_select(0, g.src))
            S = S + K.double() * X.double() * U_cur.index_select(0, ch)
            S0 = S0 + K.double() * X.double() * U_prev.index_select(0, ch)
        if t == 0:   # the start storage with the first step's coefficients
            bal.muskingum_start_m3 = float(S0.sum())
        bal.muskingum_end_m3 = float(S.sum())
    bal.created_m3 += created_t
