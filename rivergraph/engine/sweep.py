"""The wavefront sweep: one vectorised update per anti-diagonal (time + level) of the river graph, for any cell.

Why: the Muskingum family in RAPID/DDR form is implicit in space, Q_i(t) depends on the upstream
outflows at the *same* time t. Solving it with a sparse triangular solve per step (DDR) or a loop over
topological levels inside every step costs T x depth sequential sweeps. Here every reach gets the level
``L_i = depth_max - distance_to_outlet(i)`` ("as late as possible"), so every edge j -> i has
``L_j = L_i - 1`` exactly, and the pair (reach i, step t) is computed on diagonal ``d = t + L_i``.
All dependencies of (i, t) (upstream at t and t-1, itself at t-1) then lie on diagonal d-1 or earlier,
and the simulation takes ``T + depth`` sweeps. With reaches sorted by level, the reaches active on a
diagonal form one contiguous slice, and so do their upstream reaches, so a sweep is a handful of
gather / ``scatter_add_`` (scatter-sum message passing) calls over that slice, identical on CPU and GPU.
What a reach computes is a :class:`~rivergraph.engine.cell.Cell` (:mod:`rivergraph.engine.cells`).

Gradients use a hand-written adjoint: a reverse sweep over the diagonals on the transposed graph
(each reach has one downstream, so the transposed message is a gather), calling the cell's vector-Jacobian
product per band (closed form, or local autograd of the band's update). Memory is the output plus the
state histories [T + 1, N] the adjoint reads; no autograd graph per step is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch

from .cell import Cell
from .checkpoint import Recompute, resolve_checkpoint
from .compiled import compiled_sweep, history_scratch, snapshot_scratch_bytes, use_compiled
from .schedule import Schedule
from .workspace import Forcings, Rows, diagonal_step

__all__ = ["sweep", "SweepResult", "steady_state"]


class _SteadyState(torch.autograd.Function):
    """Q0 = (I - A)^-1 q0 with the transposed sweep as its adjoint."""

    @staticmethod
    def forward(ctx, q0, sched):
        ctx.sched = sched
        return sched.accumulate(q0)

    @staticmethod
    def backward(ctx, g):
        return ctx.sched.accumulate_transposed(g), None


def steady_state(sched: Schedule, q0_sorted: torch.Tensor) -> torch.Tensor:
    """Steady-state discharge (m3/s, sorted order) for constant lateral inflow q0 (m3/s)."""
    return _SteadyState.apply(q0_sorted, sched)


@dataclass
class _Run:
    """The non-tensor arguments of one sweep."""

    sched: Schedule
    cell: Cell
    n_steps: int
    out_pos: torch.Tensor | None  # ascending sorted positions of the output columns, or None (every reach)
    out_sorted: bool  # every reach, in sorted order (else network order)
    keep_history: bool
    checkpoint: int | None = None  # diagonals per checkpoint segment of the adjoint (None: full histories)


class _Sweep(torch.autograd.Function):
    """The cell's recursion on all (reach, step) pairs; inputs ``(run, m0, *s0, *forcings, *params)``; outputs
    ``(out, m_final, *s_final, diagnostics)``. History rows: ``hist[t + 1]`` holds the state after step t and
    ``hist[0]`` the initial state, so every read of "the previous step" is a plain gather."""

    @staticmethod
    def forward(ctx, run: _Run, m0, *tensors):
        sched, cell, T = run.sched, run.cell, run.n_steps
        N, n_s, n_u = sched.n, len(cell.states), len(cell.forcings)
        s0, u, p = tensors[:n_s], tensors[n_s:n_s + n_u], tensors[n_s + n_u:]
        dtype, dev = m0.dtype, m0.device
        need_grad = run.keep_history or any(ctx.needs_input_grad[1:])
        ckpt = run.checkpoint if need_grad else None  # diagonals per checkpoint segment, or None
        hist = need_grad and ckpt is None  # keep the full [T + 1, N] histories
        ws = sched.workspace(T, dtype, (n_s, n_u, len(p), cell.emits_state))
        s0d, pd = [x.detach() for x in s0], [x.detach() for x in p]
        ws.reset(s0d, m0.detach(), pd)
        cell.begin(s0d, pd)
        keep_m = hist and cell.message_history
        S = ws.S
        if hist:  # the adjoint reads the state (and message) histories
            hists = [_empty(T + 1, N, like=m0) for _ in range(n_s)]
            for k in range(n_s):
                hists[k][0] = S[k]
            hfs = [h.view(-1)[N:] for h in hists]
            hist0_rows = hists[0].unbind(0)
            if keep_m:
                mhist = _empty(T + 1, N, like=m0)
                mhist[0] = ws.M[0]
                mhf = mhist.view(-1)[N:]
        full_net = run.out_pos is None and not run.out_sorted
        if run.out_pos is None:
            out = m0.new_empty(T, N)
        else:
            n_out = len(run.out_pos)
            out = m0.new_zeros(T, n_out)
            o_l = torch.searchsorted(run.out_pos, torch.as_tensor(sched.lstart, device=dev)).cpu().numpy()
            obase = torch.arange(n_out, device=dev) - sched.level[run.out_pos] * n_out
        outf = out.view(-1)
        ud = [x.detach() for x in u]
        # network-order forcings: one ring of sorted rows each. With the full network-order output, ``out``
        # is the first forcing's ring: its value at (t, k) is overwritten by the output on the diagonal that
        # reads it, and each row is permuted in place into network order once final.
        fr = Forcings(sched, cell, T, ud, m0, out if full_net else None)
        isel, sorted_pos = torch.index_select, sched.sorted_pos
        last_level = sched.n_levels - 1
        out_rows, row_buf = out.unbind(0), ws.row
        subset = run.out_pos is not None
        flat_out = run.out_sorted or (full_net and not hist)  # the band's outflow written where it is computed
        snaps = []  # checkpoints: (diagonal, sweep state) every ckpt diagonals
        step = diagonal_step(ws, fr, cell, T, N)
        for j, row in enumerate(ws.plan):
            if ckpt is not None and j % ckpt == 0:
                snaps.append(ws.snapshot(j))
            d, lo, hi, a, b, sa, sb, nf, nl, sv, y_up, y_b, m_full, m_new, m_old, down_up, base_b, _, ridx, uv, pv = row
            idx = step(row)
            if flat_out:  # idx: the band's flat [T, N] index; row t + 1 of a history is row t of its [N:] view
                outf.scatter_(0, idx, sv[0])
            if hist:
                for k in range(n_s):
                    hfs[k].scatter_(0, idx, sv[k])
                if keep_m:
                    mhf.scatter_(0, idx, m_new)
            if subset:
                oa, ob = int(o_l[lo]), int(o_l[hi + 1])
                if ob > oa:
                    outf.scatter_(0, obase[oa:ob] + d * n_out, sv[0].index_select(0, run.out_pos[oa:ob] - a))
            elif full_net:
                t_done = d - last_level  # step t is final once its top level has run
                if t_done >= 0:
                    if hist:
                        isel(hist0_rows[t_done + 1], 0, sorted_pos, out=out_rows[t_done])
                    else:
                        row_t = out_rows[t_done]
                        row_t.copy_(isel(row_t, 0, sorted_pos, out=row_buf))
        # reaches finish on different diagonals: take each reach's last message from the history or buffers
        M = ws.M
        if keep_m:
            m_fin = mhist[T].clone()
        else:
            last = (T - 1 + sched.level) % 2  # diagonal parity of each reach's last step
            m_fin = torch.where(last == 0, M[0], M[1])
        s_fin = [S[k].clone() for k in range(n_s)]
        diag = cell.finish(m_fin, s_fin, m0.detach(), s0d, pd)
        ctx.run = run
        if hist:
            ctx.save_for_backward(*u, *p, *hists, mhist if keep_m else None)
        elif need_grad:  # checkpointed: the forcings, parameters, initial states and the sweep state snapshots
            ctx.snaps = snaps
            ctx.save_for_backward(*u, *p, *s0, m0)
        ctx.mark_non_differentiable(diag)
        return (out, m_fin, *s_fin, diag)

    @staticmethod
    def backward(ctx, g_out, g_m, *g_rest):
        run = ctx.run
        sched, cell, T = run.sched, run.cell, run.n_steps
        N, n_s, n_u = sched.n, len(cell.states), len(cell.forcings)
        saved = ctx.saved_tensors
        ckpt = run.checkpoint if hasattr(ctx, "snaps") else None
        u = saved[:n_u]
        if ckpt is None:
            p = saved[n_u:len(saved) - n_s - 1]
            hists, mhist = saved[len(saved) - n_s - 1:-1], saved[-1]
            ref = hists[0]
        else:
            p, s0, m0 = saved[n_u:len(saved) - n_s - 1], saved[len(saved) - n_s - 1:-1], saved[-1]
            ref = m0
        g_s = g_rest[:n_s]
        n_p = len(p)
        dev, dt_ = ref.device, ref.dtype
        base = sched.flat_base()
        pd = [x.detach() for x in p]
        p_bar = torch.zeros(n_p, N, device=dev, dtype=dt_)
        zeros = partial(torch.zeros, N, device=dev, dtype=dt_)
        carry_s = [g.clone() if g is not None else zeros() for g in g_s]  # gradient reaching s(t) from step t+1
        carry_m = g_m.clone() if g_m is not None else zeros()  # gradient reaching m(t) from step t+1 (m_old)
        m_bar = torch.zeros(N + 1, device=dev, dtype=dt_)  # cotangent of the message; [N]: outlets' downstream
        network = cell.forcing_order == "network"
        want_u = [ctx.needs_input_grad[2 + n_s + k] for k in range(n_u)]
        # network-order forcings and their gradients in sorted order (see Rows; in reverse, row t is loaded
        # before diagonal t + depth): the gradient overwrites the value where it is read, each row permuted in
        # place into network order once final (after diagonal t). A forcing whose gradient is not wanted is
        # read through a ring of rows instead (no [T, N] buffer).
        if network:
            u_bar = [torch.empty(T, N, device=dev, dtype=dt_) if want_u[k] else None for k in range(n_u)]
            u_rings = [Rows(sched, T, ref, buf=ub) for ub in u_bar]
        else:
            u_bar = [torch.zeros(T, N, device=dev, dtype=dt_) if want_u[k] else None for k in range(n_u)]
            u_flat = [x.detach().reshape(-1) for x in u]
        g_ring = g_sub = None
        if g_out is not None:
            if run.out_pos is not None:
                n_out = len(run.out_pos)
                g_sub = g_out.contiguous().view(-1)
                o_l = torch.searchsorted(run.out_pos, torch.as_tensor(sched.lstart, device=dev)).cpu().numpy()
                obase = torch.arange(n_out, device=dev) - sched.level[run.out_pos] * n_out
            elif run.out_sorted:
                g_ring = Rows(sched, T, ref, buf=g_out.contiguous())
            else:
                g_ring = Rows(sched, T, ref)
        idx_buf, ridx_buf = (torch.empty(N, dtype=torch.long, device=dev) for _ in range(2))

        last_level = sched.n_levels - 1
        isel = torch.index_select
        need_new = cell.vjp_needs_new_states
        reads = set(range(n_u)) if cell.vjp_forcings is None else set(cell.vjp_forcings)
        if network:
            u_src = [u_rings[k] if k in reads or want_u[k] else None for k in range(n_u)]
        else:
            u_src = [u_flat[k] if k in reads else None for k in range(n_u)]
        pb_rows = p_bar.unbind(0)
        vjp_ = cell.vjp_
        if ckpt is None:
            hfs = [h.reshape(-1) for h in hists]  # row t: the state before step t; of the [N:] views: after it
            hfs1 = [h[N:] for h in hfs]
            mhf = mhist.reshape(-1) if mhist is not None else None
            mhf1 = mhf[N:] if mhf is not None else None
        else:
            rec = Recompute(run, ctx.snaps, [x.detach() for x in u], [x.detach() for x in s0], m0.detach(), pd)
        for d, lo, hi, a, b, _, _ in sched.diagonals(T, reverse=True):
            t_new = d - last_level
            if t_new >= 0:
                if network:
                    for k in range(n_u):
                        if u_src[k] is not None:
                            u_src[k].load(u[k][t_new].detach(), t_new)
                if g_ring is not None and not run.out_sorted:
                    g_ring.load(g_out[t_new], t_new)
            if a == b:
                continue
            m = b - a
            # sorted [T, N] index of step d - level
            idx = torch.add(base[a:b], d * N, out=idx_buf[:m])
            if network:
                uu = [None if r is None or k not in reads else isel(r.flat, 0, r.wrapped(idx, ridx_buf[:m]))
                      for k, r in enumerate(u_src)]
            else:
                uu = [None if src is None else isel(src, 0, idx) for src in u_src]
            if ckpt is None:
                s_old = [isel(h, 0, idx) for h in hfs]
                s_new = [isel(h, 0, idx) for h in hfs1] if need_new else None
                if mhf is not None:
                    m_old, m_new = isel(mhf, 0, idx), isel(mhf1, 0, idx)
                else:
                    m_old = m_new = None
            else:
                s_old, s_new, m_old, m_new = rec.band(d, a, b, need_new)
            y_bar = isel(m_bar, 0, sched.down[a:b])
            sc = [c[a:b] for c in carry_s]
            if g_ring is not None:
                sc[0].add_(isel(g_ring.flat, 0, g_ring.wrapped(idx, ridx_buf[:m])))
            elif g_sub is not None:
                oa, ob = int(o_l[lo]), int(o_l[hi + 1])
                if ob > oa:
                    sc[0].index_add_(0, run.out_pos[oa:ob] - a, isel(g_sub, 0, obase[oa:ob] + d * n_out))
            nf = int(b - sched.lstart[d]) if (hi == d and cell.derive_first) else 0
            uu_bar = vjp_(y_bar, m_bar[a:b], carry_m[a:b], sc, m_new, m_old, s_old, s_new, uu,
                          [x[a:b] for x in pd], nf, [x[a:b] for x in pb_rows])
            for k in range(n_u):
                if u_bar[k] is not None:
                    u_bar[k].view(-1).scatter_(0, idx, uu_bar[k])
            if network and d < T:
                for k in range(n_u):
                    if u_bar[k] is not None:
                        row = u_bar[k][d]
                        row.copy_(isel(row, 0, sched.sorted_pos))
        # what remains is the gradient w.r.t. the initial state; a derived initial state has none
        g_s0 = [None if (k > 0 and cell.derive_first) else carry_s[k] for k in range(n_s)]
        return (None, carry_m, *g_s0, *u_bar, *p_bar.unbind(0))


def _empty(*shape: int, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(*shape, dtype=like.dtype, device=like.device)


@dataclass
class SweepResult:
    """Output of :func:`sweep`: ``out`` (``states[0]`` per step: [T, N] network order, [T, N] sorted, or
    [T, len(outputs)]), the final message (sorted, [N]), the final states (sorted) and the cell's
    diagnostics."""

    out: torch.Tensor
    message: torch.Tensor
    states: tuple[torch.Tensor, ...]
    diagnostics: torch.Tensor


def sweep(sched: Schedule, cell: Cell, forcings: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
          init_states: Sequence[torch.Tensor], init_message: torch.Tensor | None = None, *,
          outputs: str | torch.Tensor = "network", keep_history: bool = False,
          checkpoint_every: int | str | None = None, memory_budget: int | float | str | None = None,
          engine: str = "torch", diagnostics: bool = True) -> SweepResult:
    """Run ``cell`` over every (reach, step) pair of the schedule, differentiable in every tensor argument.

    Args:
        sched: the network's schedule.
        cell: the update (see :class:`~rivergraph.engine.cell.Cell`).
        forcings: one [T, N] tensor per ``cell.forcings``, in network order or, for a cell with
            ``forcing_order = "sorted"``, in the schedule's sorted order.
        params: one [N] tensor (sorted order) per ``cell.params``.
        init_states: one [N] tensor (sorted) per ``cell.states``: the state before the first step.
        init_message: the message before the first step, m(-1) (sorted; default zeros).
        outputs: ``"network"`` ([T, N] in network order), ``"sorted"`` ([T, N] sorted), or ascending sorted
            positions (a long tensor) whose ``states[0]`` is returned as [T, len(outputs)].
        keep_history: keep the histories as when gradients are needed.
        checkpoint_every, memory_budget: checkpointed adjoint, a checkpoint of the sweep state every k
            diagonals instead of the full histories (None / int / ``"auto"``, and a budget in bytes or e.g.
            ``"6GiB"``; see :func:`rivergraph.engine.checkpoint.resolve_checkpoint`). Same gradients, bit for bit.
        engine: ``"torch"`` (this wavefront, CPU and GPU), ``"compiled"`` (the numba CPU loop of
            :mod:`rivergraph.engine.compiled`, for the cells it has kernels for; there a checkpoint counts
            steps), or ``"auto"`` (compiled where it applies).
        diagnostics: whether the caller reads ``SweepResult.diagnostics`` (the cell's mass-balance sums); the
            compiled Muskingum-Cunge kernels skip their per-step storage sums without it (5 % of the trapezoid's
            forward on the 300k tree) and return NaN there.
    """
    if len(forcings) != len(cell.forcings) or len(params) != len(cell.params) or \
            len(init_states) != len(cell.states):
        raise ValueError(f"{type(cell).__name__} takes forcings {cell.forcings}, params {tuple(cell.params)} and "
                         f"states {cell.states}; got {len(forcings)}, {len(params)} and {len(init_states)}")
    N = sched.n
    T = forcings[0].shape[0]
    for name, f in zip(cell.forcings, forcings):
        if f.shape != (T, N):
            raise ValueError(f"forcing '{name}' has shape {tuple(f.shape)}, expected {(T, N)}")
    for name, v in [*zip(cell.params, params), *zip(cell.states, init_states)]:
        if v.shape != (N,):
            raise ValueError(f"'{name}' has shape {tuple(v.shape)}, expected ({N},)")
    m0 = init_message if init_message is not None else init_states[0].new_zeros(N)
    pos = outputs if torch.is_tensor(outputs) else None
    if pos is None and outputs not in ("network", "sorted"):
        raise ValueError("outputs must be 'network', 'sorted' or a tensor of sorted positions")
    needs_grad = keep_history or (torch.is_grad_enabled() and any(
        t.requires_grad for t in (*forcings, *params, *init_states, m0)))
    compiled = use_compiled(sched, cell, engine, needs_grad, m0.dtype)
    ckpt = resolve_checkpoint(sched, cell, T, m0.dtype, checkpoint_every, memory_budget,
                              snapshot_scratch_bytes(cell, m0.dtype) if compiled else 0, per_step=compiled,
                              extra_history=history_scratch(cell) if compiled else 0)
    if compiled:
        out, msg, states, diag = compiled_sweep(sched, cell, forcings, params, init_states, m0, pos,
                                                outputs == "sorted", None if ckpt is None else min(ckpt, T),
                                                keep_history, diagnostics)
        return SweepResult(out, msg, states, diag)
    run = _Run(sched, cell, T, pos, outputs == "sorted" if pos is None else False, keep_history, ckpt)
    res = _Sweep.apply(run, m0, *init_states, *(f.contiguous() for f in forcings), *params)
    return SweepResult(res[0], res[1], tuple(res[2:-1]), res[-1])
