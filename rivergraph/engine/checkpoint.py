"""Memory-bounded gradients: how often the wavefront sweep keeps its state for the checkpointed adjoint.

Without checkpointing the adjoint reads the full state histories, ``(n_states + 1) x (T + 1) x N`` values
(Muskingum-Cunge: Q, S and the inflow I). With a checkpoint every k diagonals the forward sweep keeps only
its O(N) state at each segment start (``n_states + 1`` vectors, plus the emission for cells that emit
something other than their first state) and the reverse sweep recomputes one segment at a time from its
checkpoint, keeping that segment's ``[k + 1, N]`` band histories (:class:`rivergraph.engine.sweep._Recompute`):

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

__all__ = ["resolve_checkpoint", "history_bytes", "checkpoint_bytes", "parse_memory"]


def _counts(cell: Cell) -> tuple[int, int]:
    """(vectors per checkpoint, vectors per kept diagonal) of a cell."""
    n_s = len(cell.states)
    return n_s + 1 + (0 if cell.emits_state else 1), n_s + (1 if cell.message_history else 0)


def history_bytes(sched: Schedule, cell: Cell, n_steps: int, dtype: torch.dtype) -> int:
    """Bytes of the full-history adjoint's histories: ``[T + 1, N]`` per state (and the message)."""
    return _counts(cell)[1] * (n_steps + 1) * sched.n * torch.finfo(dtype).bits // 8


def checkpoint_bytes(sched: Schedule, cell: Cell, n_steps: int, dtype: torch.dtype, every: int) -> int:
    """Bytes of the checkpoints and the recomputed segment with a checkpoint every ``every`` diagonals."""
    c_snap, c_hist = _counts(cell)
    n_diag = n_steps + sched.n_levels - 1
    return (c_snap * math.ceil(n_diag / every) + c_hist * (every + 1)) * sched.n * torch.finfo(dtype).bits // 8


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
                       every: int | str | None, memory_budget: int | float | str | None = None) -> int | None:
    """Diagonals per checkpoint segment for a sweep, or None for the full histories.

    ``every``: None (full histories, unless ``memory_budget`` is given and they do not fit it), an int
    (diagonals; >= the run's diagonal count means one segment), or ``"auto"``: the full histories if they
    fit ``memory_budget`` (fastest, no recomputation), else the memory-minimising k* (warns when even that
    exceeds the budget). ``memory_budget`` (bytes or e.g. ``"6GiB"``) bounds the adjoint's own buffers, not
    the forcings, outputs and their gradients.
    """
    budget = parse_memory(memory_budget)
    if every is None and budget is None:
        return None
    n_diag = n_steps + sched.n_levels - 1
    if isinstance(every, str):
        if every != "auto":
            raise ValueError(f"checkpoint_every must be None, a positive int or 'auto', got {every!r}")
    elif every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be None, a positive int or 'auto', got {every!r}")
        return min(every, n_diag)
    if budget is not None and history_bytes(sched, cell, n_steps, dtype) <= budget:
        return None
    c_snap, c_hist = _counts(cell)
    k = max(1, min(n_diag, round(math.sqrt(c_snap * n_diag / c_hist))))
    if budget is not None:
        need = checkpoint_bytes(sched, cell, n_steps, dtype, k)
        if need > budget:
            warnings.warn(f"checkpointed adjoint needs ~{need / 2 ** 30:.2f} GiB for {n_steps} steps on {sched.n} "
                          f"reaches, over the memory budget of {budget / 2 ** 30:.2f} GiB; route in shorter chunks",
                          stacklevel=3)
    return k
