"""Memory-bounded gradients: how often the wavefront sweep keeps its state for the checkpointed adjoint.

Without checkpointing the adjoint reads the full state histories, ``(n_states + 1) x (T + 1) x N`` values
(Muskingum-Cunge: Q, S and the inflow I). With a checkpoint every k diagonals the forward sweep keeps only
its O(N) state at each segment start (``n_states + 1`` vectors, plus the emission for cells that emit
something other than their first state) and the reverse sweep recomputes one segment at a time from its
checkpoint, keeping that segment's ``[k + 1, N]`` band histories (:class:`Recompute`):

    memory ~ N x [c_snap x D / k + c_hist x (k + 1)],   D = T + depth diagonals

minimised at ``k* = sqrt(c_snap D / c_hist)``, i.e. O(N sqrt(T)) instead of O(N T). Every diagonal is
recomputed exactly once whatever k is, so the cost is one more forward sweep (time does not depend on k);
the recomputed values are the forward's own (same operations, same inputs), so the gradients are
bit-identical to the full-history adjoint. Gradient checkpointing: Griewank & Walther 2000,
"Algorithm 799: revolve", ACM TOMS 26(1); Chen et al. 2016, "Training deep nets with sublinear memory cost",
arXiv:1604.06174 (the sqrt(T) segment rule used here).
"""
from __future__ import annotations

import math
import warnings

import torch

from .cell import Cell
from .schedule import Schedule
from .workspace import Forcings, diagonal_step

__all__ = ["Recompute", "resolve_checkpoint", "history_bytes", "checkpoint_bytes", "parse_memory"]


def _counts(cell: Cell, dtype: torch.dtype, scratch_bytes: int = 0, extra_history: int = 0) -> tuple[float, int]:
    """(vectors per checkpoint, vectors per kept diagonal) of a cell; ``scratch_bytes`` per reach that an engine
    keeps beside the states at each checkpoint (the compiled trapezoid's depths) count as vectors of ``dtype``,
    ``extra_history`` vectors per kept step beside the states' histories (the compiled trapezoid's depths)."""
    n_s = len(cell.states)
    return (n_s + 1 + (0 if cell.emits_state else 1) + scratch_bytes / _itemsize(dtype),
            n_s + (1 if cell.message_history else 0) + extra_history)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def history_bytes(sched: Schedule, cell: Cell, n_steps: int, dtype: torch.dtype, extra_history: int = 0) -> int:
    """Bytes of the full-history adjoint's histories: ``[T + 1, N]`` per state (and the message, and
    ``extra_history`` vectors an engine keeps per step)."""
    return _counts(cell, dtype, 0, extra_history)[1] * (n_steps + 1) * sched.n * _itemsize(dtype)


def checkpoint_bytes(sched: Schedule, cell: Cell, n_steps: int, dtype: torch.dtype, every: int,
                     scratch_bytes: int = 0, per_step: bool = False, extra_history: int = 0) -> int:
    """Bytes of the checkpoints and the recomputed segment with a checkpoint every ``every`` diagonals (steps with
    ``per_step``; ``scratch_bytes`` per reach kept beside the states at each checkpoint, ``extra_history``
    vectors per kept step; see :func:`resolve_checkpoint`)."""
    c_snap, c_hist = _counts(cell, dtype, scratch_bytes, extra_history)
    n_diag = _segments_of(sched, n_steps, per_step)
    return round((c_snap * math.ceil(n_diag / every) + c_hist * (every + 1)) * sched.n * _itemsize(dtype))


def _segments_of(sched: Schedule, n_steps: int, per_step: bool) -> int:
    """The units a checkpoint interval counts: T steps, or the wavefront's T + depth - 1 diagonals."""
    return n_steps if per_step else n_steps + sched.n_levels - 1


def parse_memory(budget: int | float | str | None) -> int | None:
    """A memory budget in bytes from a number (bytes) or a string such as ``"6GiB"``, ``"500MB"``."""
    if budget is None or isinstance(budget, (int, float)):
        return None if budget is None else int(budget)
    s = budget.strip().upper().replace(" ", "")
    units = {"KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40, "KB": 1e3, "MB": 1e6, "GB": 1e9,
             "TB": 1e12, "B": 1}
    for u, f in units.items():
        if s.endswith(u):
            return int(float(s[:-len(u)]) * f)
    return int(float(s))


def resolve_checkpoint(sched: Schedule, cell: Cell, n_steps: int, dtype: torch.dtype,
                       every: int | str | None, memory_budget: int | float | str | None = None,
                       scratch_bytes: int = 0, per_step: bool = False, extra_history: int = 0) -> int | None:
    """Diagonals per checkpoint segment for a sweep, or None for the full histories.

    ``every``: None (full histories, unless ``memory_budget`` is given and they do not fit it), an int
    (diagonals; >= the run's diagonal count means one segment), or ``"auto"``: the full histories if they
    fit ``memory_budget`` (fastest, no recomputation), else the memory-minimising k* (warns when even that
    exceeds the budget). ``memory_budget`` (bytes or e.g. ``"6GiB"``) bounds the adjoint's own buffers, not
    the forcings, outputs and their gradients; ``scratch_bytes`` per reach are what the engine keeps at each
    checkpoint beside the states (the compiled trapezoid's depth scratch, ``compiled.snapshot_scratch_bytes``)
    and ``extra_history`` the vectors per kept step beside the states' histories (its depths,
    ``compiled.history_scratch``);
    ``per_step``: the engine checkpoints steps, not diagonals (the compiled path: T units, not T + depth).
    """
    budget = parse_memory(memory_budget)
    if every is None and budget is None:
        return None
    n_diag = _segments_of(sched, n_steps, per_step)
    if isinstance(every, str):
        if every != "auto":
            raise ValueError(f"checkpoint_every must be None, a positive int or 'auto', got {every!r}")
    elif every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be None, a positive int or 'auto', got {every!r}")
        return min(every, n_diag)
    if budget is not None and history_bytes(sched, cell, n_steps, dtype, extra_history) <= budget:
        return None
    c_snap, c_hist = _counts(cell, dtype, scratch_bytes, extra_history)
    k = max(1, min(n_diag, round(math.sqrt(c_snap * n_diag / c_hist))))
    if budget is not None:
        need = checkpoint_bytes(sched, cell, n_steps, dtype, k, scratch_bytes, per_step, extra_history)
        if need > budget:
            warnings.warn(f"checkpointed adjoint needs ~{need / 2 ** 30:.2f} GiB for {n_steps} steps on {sched.n} "
                          f"reaches, over the memory budget of {budget / 2 ** 30:.2f} GiB; route in shorter chunks",
                          stacklevel=3)
    return k


class Recompute:
    """Checkpointed adjoint: the forward sweep's state was kept every ``run.checkpoint`` diagonals; before the
    reverse sweep enters a segment of diagonals, the segment is recomputed from its checkpoint, keeping its
    band states and messages diagonal by diagonal (``[k + 1, N]`` rows: row j is the state before the
    segment's diagonal j). Every value is computed by the same operations on the same inputs as in the
    forward sweep, so the gradients are bit-identical to those of the full histories."""

    def __init__(self, run, snaps: list, ud, s0d, m0d, pd):

        sched, cell, T = run.sched, run.cell, run.n_steps
        self.run, self.snaps, self.ud, self.s0d, self.m0d, self.pd = run, snaps, ud, s0d, m0d, pd
        k, N, n_s = run.checkpoint, sched.n, len(cell.states)
        self.ws = sched.workspace(T, m0d.dtype, (n_s, len(cell.forcings), len(pd), cell.emits_state))
        self.fr = Forcings(sched, cell, T, ud, m0d, segment=k)
        self.H = m0d.new_empty(n_s, k + 1, N)
        self.Mh = m0d.new_empty(k + 1, N) if cell.message_history else None
        self.seg = -1

    def _recompute(self, seg: int) -> None:
        run, ws, cell = self.run, self.ws, self.run.cell
        sched, T, k = run.sched, run.n_steps, run.checkpoint
        d0 = seg * k
        rows = ws.plan[d0:d0 + k]
        ws.reset(self.s0d, self.m0d, self.pd)  # parameters (and the buffers' untouched parts)
        ws.restore(d0, self.snaps[seg])
        cell.begin(self.s0d, self.pd)  # per-call set-up; its diagnostics are not returned again
        fr = self.fr
        step = diagonal_step(ws, fr, cell, T, sched.n)
        fr.ensure(d0 - sched.n_levels + 1, d0 + k, T)  # the rows read by diagonals d0 .. d0 + k - 1
        H, Mh, n_s = self.H, self.Mh, len(cell.states)
        H[:, 0] = ws.S
        if Mh is not None:
            Mh[0] = ws.M[(d0 + 1) & 1]
        for j, row in enumerate(rows):
            a, b, nf, sv, m_new, m_old = row[3], row[4], row[7], row[9], row[13], row[14]
            if nf and j:  # reaches taking their first step: their initial state and message
                m = b - a
                for s in range(n_s):
                    H[s, j, b - nf:b] = sv[s][m - nf:]
                if Mh is not None:
                    Mh[j, b - nf:b] = m_old[m - nf:]
            step(row)
            for s in range(n_s):
                H[s, j + 1, a:b] = sv[s]
            if Mh is not None:
                Mh[j + 1, a:b] = m_new
        self.seg = seg

    def band(self, d: int, a: int, b: int, need_new: bool):
        """(s(t-1), s(t) or None, m(t-1), m(t)) of the band [a, b) on diagonal d (m None without message history)."""
        seg = d // self.run.checkpoint
        if seg != self.seg:
            self._recompute(seg)
        j = d - seg * self.run.checkpoint
        H, Mh = self.H, self.Mh
        s_old = [H[s, j, a:b] for s in range(H.shape[0])]
        s_new = [H[s, j + 1, a:b] for s in range(H.shape[0])] if need_new else None
        if Mh is None:
            return s_old, s_new, None, None
        return s_old, s_new, Mh[j, a:b], Mh[j + 1, a:b]
