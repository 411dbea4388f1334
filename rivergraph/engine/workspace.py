"""The forward sweep's workspace: prebuilt per-diagonal views, rings of sorted forcing rows, one diagonal's update.

On a small network the wavefront sweep (:mod:`rivergraph.engine.sweep`) is bound by Python-side calls, so
everything a diagonal touches is built once per schedule, step count, dtype and cell layout (:class:`Workspace`)
and read through closures (:func:`diagonal_step`); [T, N] inputs in the network's order are read through rings of
rows permuted once into the schedule's sorted order (:class:`Rows`, :class:`Forcings`).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch

from .cell import Cell
from .schedule import Schedule

__all__ = ["Workspace", "Rows", "Forcings", "diagonal_step"]


class Workspace:
    """Forward-sweep workspace for one schedule, step count, dtype and cell layout: the state, message,
    parameter and scratch buffers, and per diagonal every view the sweep touches. On a small network the
    sweep is bound by Python-side calls (a slice costs as much as an op on a few thousand reaches), so the
    views are built once and reused by every call with the same key (training epochs, chunked runs). Not
    thread-safe: one sweep at a time per schedule.

    ``plan`` rows: ``(d, lo, hi, a, b, sa, sb, n_first, n_last, states[a:b], Y[sa:sb], Y[a:b], M_new (full),
    M_new[a:b], M_old[a:b], down[sa:sb], base[a:b], idx, ridx (None when no ring wraps), forcings (gathered),
    params[a:b])``, with the message M double-buffered by diagonal parity; Y is the emission (``states[0]`` when
    the cell emits it); ``idx`` is scratch for the band's flat [T, N] index ``base[a:b] + d N``.
    """

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
        idx = torch.empty(N, dtype=torch.long, device=dev)
        ridx = torch.empty(N, dtype=torch.long, device=dev) if n_steps > sched.n_levels else None  # rings wrap
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
            self.plan.append((d, lo, hi, a, b, sa, sb, nf, nl, sv, Y[sa:sb], sv[0] if emits_state else Y[a:b],
                              M[d & 1], M[d & 1][a:b], M[(d + 1) & 1][a:b], down[sa:sb], base[a:b], idx[:m],
                              None if ridx is None else ridx[:m], tuple(x[:m] for x in U),
                              tuple(x[a:b] for x in P)))

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


class Rows:
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


class Forcings:
    """The forcings of one forward sweep as the diagonals read them: network-order forcings through a ring of
    sorted rows each (:class:`Rows`; ``out``, when given, is the first one's ring), sorted ones directly.
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
        rings = [Rows(sched, T, like, buf=out if k == 0 else None, rows=R) for k in range(len(ud))] \
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


def diagonal_step(ws: Workspace, fr: Forcings, cell: Cell, T: int, N: int):
    """The forward update of one diagonal, ``step(row)`` for a ``Workspace.plan`` row: load the rows, pass the
    messages, gather the band's forcings, update the band's states in place (and its emission); returns the
    band's flat [T, N] index (valid until the next call). A closure
    over everything a diagonal reads but the row (the sweep is bound by Python-side calls on small networks:
    the common single-forcing case is unrolled, no per-diagonal attribute lookups)."""
    isel, add = torch.index_select, torch.add
    forward_, emit_ = cell.forward_, (None if cell.emits_state else cell.emit_)
    order = fr.order
    one, progressive = fr.one, fr.progressive
    if one:
        g_src, g_mod = fr.g_src, fr.g_mod
        l_rows, l_ring, l_R = fr.l_rows, fr.l_ring, fr.l_R
        load = progressive and l_R
    else:
        load, gather = progressive, fr.gather

    def step(row: tuple) -> torch.Tensor:
        d, lo, hi, a, b, sa, sb, nf, nl, sv, y_up, y_b, m_full, m_new, m_old, down_up, base_b, idx, ridx, uv, pv = row
        if load and d < T:
            if one:
                isel(l_rows[d], 0, order, out=l_ring[d % l_R])
            else:
                fr._load(d)
        m_new.zero_()  # message passing: upstream emissions at the same step, summed at the reach
        if sb > sa:
            m_full.scatter_add_(0, down_up, y_up)
        add(base_b, d * N, out=idx)
        if one:
            isel(g_src, 0, torch.remainder(idx, g_mod, out=ridx) if g_mod else idx, out=uv[0])
        else:
            gather(idx, ridx, uv)
        forward_(m_new, m_old, sv, uv, pv, nf, nl)
        if emit_ is not None:
            emit_(y_b, sv, uv)
        return idx

    return step
