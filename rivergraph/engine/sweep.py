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
from .compiled import compiled_sweep, use_compiled
from .schedule import Schedule

__all__ = ["sweep", "SweepResult", "steady_state"]


class Workspace:
    """Forward-sweep workspace for one schedule, step count, dtype and cell layout: the state, message,
    parameter and scratch buffers, and per diagonal every view the sweep touches. On a small network the
    sweep is bound by Python-side calls (a slice costs as much as an op on a few thousand reaches), so the
    views are built once and reused by every call with the same key (training epochs, chunked runs). Not
    thread-safe: one sweep at a time per schedule.

    ``plan`` rows: ``(d, lo, hi, a, b, sa, sb, n_first, n_last, states[a:b], Y[sa:sb], Y[a:b], M_new (full),
    M_new[a:b], M_old[a:b], down[sa:sb], base[a:b], idx, ridx, idx, forcings (gathered), params[a:b])``, with the
    message M double-buffered by diagonal parity; Y is the emission (``states[0]`` when the cell emits it).
    """

    INDEX_TABLE_MAX = 1 << 23  # entries of the index table (64 MiB)

    def __init__(self, sched: Schedule, n_steps: int, dtype: torch.dtype, layout: tuple[int, int, int, bool]):
        N, dev = sched.n, sched.device
        n_s, n_u, n_p, emits_state = layout
        self.key = (n_steps, dtype, layout)
        vec = partial(torch.empty, N, dtype=dtype, device=dev)
        self.S = torch.empty(n_s, N, dtype=dtype, device=dev)
        self.Y = self.S[0] if emits_state else vec()
        self.M, self.row = (vec(), vec()), vec()
        self.P = torch.empty(n_p, N, dtype=dtype, device=dev)
        U = torch.empty(n_u, N, dtype=dtype, device=dev)
        # the bands' flat [T, N] indices (base[a:b] + d N): computed by the first sweep into a table every
        # later sweep reuses (one op less per diagonal), or into scratch when the table would be large
        self.idx_table = n_steps * N <= self.INDEX_TABLE_MAX
        self.idx_ready = False
        idx = torch.empty(n_steps * N if self.idx_table else N, dtype=torch.long, device=dev)
        ridx = torch.empty(N, dtype=torch.long, device=dev)
        off = 0
        base, down, Y, M, ls = sched.flat_base(), sched.down, self.Y, self.M, sched.lstart
        # rows unbound once and sliced per diagonal: a 1-D slice costs ~1 us, an ``unbind`` ~18 us (measured;
        # the plan of a cold call on the Lower Colorado took 35 ms with one unbind per diagonal, 4 ms without)
        S, U, P = self.S.unbind(0), U.unbind(0), self.P.unbind(0)
        self.plan = []
        for d, lo, hi, a, b, sa, sb in sched.diagonals(n_steps):
            m = b - a
            nf = int(b - ls[d]) if hi == d else 0  # reaches taking their first step: the top of the band
            nl = int(ls[lo + 1] - a) if lo == d - n_steps + 1 else 0  # and their last step: the bottom
            sv = tuple(x[a:b] for x in S)
            ix = idx[off:off + m]
            off += m if self.idx_table else 0
            self.plan.append((d, lo, hi, a, b, sa, sb, nf, nl, sv, Y[sa:sb], sv[0] if emits_state else Y[a:b],
                              M[d & 1], M[d & 1][a:b], M[(d + 1) & 1][a:b], down[sa:sb], base[a:b], ix,
                              ridx[:m], ix, tuple(x[:m] for x in U), tuple(x[a:b] for x in P)))

    def reset(self, s0: Sequence[torch.Tensor], m0: torch.Tensor, p: Sequence[torch.Tensor]) -> None:
        """Initial states, message m(-1) (both parity buffers) and parameters of a sweep."""
        for k, x in enumerate(s0):
            self.S[k].copy_(x)
        self.M[0].copy_(m0)
        self.M[1].copy_(m0)
        if len(p):
            self.P.copy_(torch.stack(list(p)))

    def snapshot(self, d: int) -> tuple:
        """What diagonal d and later read of the earlier diagonals: the states, the message buffer of
        diagonal d - 1 and the emission (O(N); see :mod:`rivergraph.engine.checkpoint`)."""
        return (self.S.clone(), self.M[(d + 1) & 1].clone(), None if self.Y is self.S[0] else self.Y.clone())

    def restore(self, d: int, snap: tuple) -> None:
        S, M_prev, Y = snap
        self.S.copy_(S)
        self.M[(d + 1) & 1].copy_(M_prev)
        if Y is not None:
            self.Y.copy_(Y)


class _Rows:
    """A [T, N] array in network order, seen on the diagonals through a ring of rows in sorted order.

    Reading q (or writing Q) for the active reaches of a diagonal straight in network order is a random
    access into T x N memory, one cache and TLB miss per element, and it dominated the sweep. Row t
    (step t) is read only on diagonals t .. t + depth, so a ring of ``R = min(T, n_levels)`` rows in
    sorted reach order holds everything live: a row is permuted in (or out) once, within a row of N
    values, and every diagonal reads runs of contiguous values, one run per level of its band.
    Forward, row t is loaded before diagonal t and final after diagonal t + depth; in the reverse sweep
    the roles swap. ``buf`` ([T, N]) gives the rows a home of their own instead of a ring (no wrap): the
    routed output, or a forcing's gradient, whose value at (t, k) is written on the diagonal that reads it.
    """

    def __init__(self, sched: Schedule, n_steps: int, like: torch.Tensor, buf: torch.Tensor | None = None,
                 rows: int | None = None):
        self.sched = sched
        self.R = n_steps if buf is not None else min(n_steps, rows or sched.n_levels)
        self.buf = buf if buf is not None else like.new_empty(self.R, sched.n)
        self.flat = self.buf.view(-1)
        self.rows = self.buf.unbind(0)
        self.wrap = self.R < n_steps

    def wrapped(self, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The ring's flat index of a [T, N] flat index ``idx`` (``out``: scratch of its size)."""
        return torch.remainder(idx, self.R * self.sched.n, out=out) if self.wrap else idx

    def load(self, row: torch.Tensor, t: int) -> None:
        """Permute row t ([N], network order) into the ring."""
        torch.index_select(row, 0, self.sched.order, out=self.rows[t % self.R])


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
        fr = _Forcings(sched, cell, T, ud, m0, out if full_net else None)
        isel, sorted_pos = torch.index_select, sched.sorted_pos
        last_level = sched.n_levels - 1
        out_rows, row_buf = out.unbind(0), ws.row
        subset = run.out_pos is not None
        flat_out = run.out_sorted or (full_net and not hist)  # the band's outflow written where it is computed
        snaps = []  # checkpoints: (diagonal, sweep state) every ckpt diagonals
        step = _diagonal_step(ws, fr, cell, T, N)
        for j, row in enumerate(ws.plan):
            if ckpt is not None and j % ckpt == 0:
                snaps.append(ws.snapshot(j))
            d, lo, hi, a, b, sa, sb, nf, nl, sv, y_up, y_b, m_full, m_new, m_old, down_up, base_b, idx, ridx, _, \
                uv, pv = row
            step(row)
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
        ws.idx_ready = ws.idx_table  # the table is filled: later sweeps (and this one's adjoint) read it
        # reaches finish on different diagonals: take each reach's last message from the history or buffers
        M = ws.M
        if keep_m:
            m_fin = mhist[T].clone()
        else:
            last = (T - 1 + sched.level) % 2  # diagonal parity of each reach's last step
            m_fin = torch.where(last == 0, M[0], M[1])
        s_fin = [S[k].clone() for k in range(n_s)]
        diag = cell.finish(m_fin, s_fin, m0.detach(), s0d, pd)
        ctx.run, ctx.ws = run, ws
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
        # network-order forcings and their gradients in sorted order (see _Rows; in reverse, row t is loaded
        # before diagonal t + depth): the gradient overwrites the value where it is read, each row permuted in
        # place into network order once final (after diagonal t). A forcing whose gradient is not wanted is
        # read through a ring of rows instead (no [T, N] buffer).
        if network:
            u_bar = [torch.empty(T, N, device=dev, dtype=dt_) if want_u[k] else None for k in range(n_u)]
            u_rings = [_Rows(sched, T, ref, buf=ub) for ub in u_bar]
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
                g_ring = _Rows(sched, T, ref, buf=g_out.contiguous())
            else:
                g_ring = _Rows(sched, T, ref)
        idx_buf, ridx_buf = (torch.empty(N, dtype=torch.long, device=dev) for _ in range(2))
        table = ctx.ws.plan if ctx.ws.idx_ready else None  # the bands' flat indices, filled by the forward sweep

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
            idx = table[d][17] if table is not None else torch.add(base[a:b], d * N, out=idx_buf[:m])
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


class _Forcings:
    """The forcings of one forward sweep as the diagonals read them: network-order forcings through a ring of
    sorted rows each (:class:`_Rows`; ``out``, when given, is the first one's ring), sorted ones directly.
    ``segment`` = k: the rings of the checkpointed adjoint's recomputation, ``depth + k`` rows, loaded by
    :meth:`ensure` once per segment (the segments run backwards and share all but k rows with the next one),
    not diagonal by diagonal."""

    def __init__(self, sched: Schedule, cell: Cell, T: int, ud: Sequence[torch.Tensor], like: torch.Tensor,
                 out: torch.Tensor | None = None, segment: int | None = None):
        N = sched.n
        self.network = network = cell.forcing_order == "network"
        self.progressive = segment is None
        self.lo = self.hi = T  # rows [lo, hi) are loaded (segment mode)
        R = None if segment is None else sched.n_levels + segment
        rings = [_Rows(sched, T, like, buf=out if k == 0 else None, rows=R) for k in range(len(ud))] \
            if network else []
        # per forcing: (row loads: source rows, ring rows, ring length) and (gathers: flat source, wrap modulus
        # or 0); the common single-forcing case is unrolled in load / gather
        self.loads = [(x.unbind(0), r.rows, r.R) for x, r in zip(ud, rings)]
        self.gathers = [(r.flat, r.R * N if r.wrap else 0) for r in rings] if network else \
            [(x.reshape(-1), 0) for x in ud]
        self.order = sched.order
        self.one = len(self.gathers) == 1 and len(self.loads) <= 1
        if self.one:
            self.g_src, self.g_mod = self.gathers[0]
            self.l_rows, self.l_ring, self.l_R = self.loads[0] if self.loads else (None, None, 0)
    def ensure(self, lo: int, hi: int, T: int) -> None:
        """Segment mode: rows [lo, hi) loaded (hi <= the previous segment's end; only the new rows are permuted)."""
        lo, hi = max(0, lo), min(hi, T)
        for t in range(lo, min(hi, self.lo)):
            self._load(t)
        self.lo, self.hi = lo, hi

    def load(self, d: int, T: int) -> None:
        """Permute row d into the rings (before diagonal d, the first that reads it)."""
        if d >= T or not self.progressive:
            return
        self._load(d)

    def _load(self, d: int) -> None:
        if self.one:
            if self.l_R:
                torch.index_select(self.l_rows[d], 0, self.order, out=self.l_ring[d % self.l_R])
        else:
            for rows, ring, R in self.loads:
                torch.index_select(rows[d], 0, self.order, out=ring[d % R])

    def gather(self, idx: torch.Tensor, ridx: torch.Tensor, uv: Sequence[torch.Tensor]) -> None:
        """The band's forcings at flat [T, N] index ``idx`` into ``uv``."""
        isel = torch.index_select
        if self.one:
            isel(self.g_src, 0, torch.remainder(idx, self.g_mod, out=ridx) if self.g_mod else idx, out=uv[0])
        else:
            for k, (src, mod) in enumerate(self.gathers):
                isel(src, 0, torch.remainder(idx, mod, out=ridx) if mod else idx, out=uv[k])


def _diagonal_step(ws: Workspace, fr: _Forcings, cell: Cell, T: int, N: int):
    """The forward update of one diagonal, ``step(row)`` for a ``Workspace.plan`` row: load the rows, pass the
    messages, gather the band's forcings, update the band's states in place (and its emission). A closure
    over everything a diagonal reads but the row (the sweep is bound by Python-side calls on small networks:
    the common single-forcing case is unrolled, no per-diagonal attribute lookups)."""
    isel, add = torch.index_select, torch.add
    fresh = not ws.idx_ready  # compute the bands' flat indices (else read from the workspace's table)
    forward_, emit_ = cell.forward_, (None if cell.emits_state else cell.emit_)
    order = fr.order
    one, progressive = fr.one, fr.progressive
    if one:
        g_src, g_mod = fr.g_src, fr.g_mod
        l_rows, l_ring, l_R = fr.l_rows, fr.l_ring, fr.l_R
        load = progressive and l_R
    else:
        load, gather = progressive, fr.gather

    def step(row: tuple) -> None:
        d, lo, hi, a, b, sa, sb, nf, nl, sv, y_up, y_b, m_full, m_new, m_old, down_up, base_b, idx, ridx, _, \
            uv, pv = row
        if load and d < T:
            if one:
                isel(l_rows[d], 0, order, out=l_ring[d % l_R])
            else:
                fr._load(d)
        m_new.zero_()  # message passing: upstream emissions at the same step, summed at the reach
        if sb > sa:
            m_full.scatter_add_(0, down_up, y_up)
        if fresh:
            add(base_b, d * N, out=idx)
        if one:
            isel(g_src, 0, torch.remainder(idx, g_mod, out=ridx) if g_mod else idx, out=uv[0])
        else:
            gather(idx, ridx, uv)
        forward_(m_new, m_old, sv, uv, pv, nf, nl)
        if emit_ is not None:
            emit_(y_b, sv, uv)

    return step


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
          engine: str = "torch") -> SweepResult:
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
    ckpt = resolve_checkpoint(sched, cell, T, m0.dtype, checkpoint_every, memory_budget)
    needs_grad = keep_history or (torch.is_grad_enabled() and any(
        t.requires_grad for t in (*forcings, *params, *init_states, m0)))
    if use_compiled(sched, cell, engine, needs_grad):
        out, msg, states, diag = compiled_sweep(sched, cell, forcings, params, init_states, m0, pos,
                                                outputs == "sorted", None if ckpt is None else min(ckpt, T),
                                                keep_history)
        return SweepResult(out, msg, states, diag)
    run = _Run(sched, cell, T, pos, outputs == "sorted" if pos is None else False, keep_history, ckpt)
    res = _Sweep.apply(run, m0, *init_states, *(f.contiguous() for f in forcings), *params)
    return SweepResult(res[0], res[1], tuple(res[2:-1]), res[-1])
