"""A compiled CPU path for the sweep and its adjoint (numba): which cells have a kernel, and the one driver that
runs any kernel forward and backward with checkpointing.

On a CPU the wavefront's vectorised diagonals (:mod:`rivergraph.engine.sweep`) pay ~11 torch calls per
diagonal and read every value through gathers; a compiled loop needs neither. Per step t the reaches are
visited once in the schedule's level order (every reach after all its upstream reaches, a topological order),
each reach's outflow added into its downstream reach's inflow as soon as it is known; the adjoint is the same
loop in reverse (downstream before upstream, last step first) on the transposed graph. Kernels:

    static Muskingum                        :mod:`rivergraph.engine.compiled_static` (closed-form VJP)
    Muskingum-Cunge, power-law channel      :mod:`rivergraph.engine.compiled_mc` (hand-derived chain rule)
    Muskingum-Cunge, trapezoid channel      :mod:`rivergraph.engine.compiled_trapezoid` (Newton depth, IFT)
    linear heat transport                   :mod:`rivergraph.engine.compiled_heat` (closed-form VJP)

(Outside the sweep, mode "nwm"'s secant depth solve has a compiled twin, :mod:`rivergraph.engine.compiled_nwm`,
picked by :class:`rivergraph.models.nwm.NWMRouter` with the same ``engine`` rule.)

Memory-bounded gradients: with ``checkpoint_every = k`` (steps here, not diagonals) the forward keeps the states
and the inflow every k steps and the reverse sweep recomputes one k-step segment at a time with the same kernel,
so the gradients are bit-identical to the full-history ones.

``engine="auto"`` (the router's default) takes this path on a CPU for the cells with a kernel, with or without
gradients, when numba is importable; ``"compiled"`` requires it, ``"torch"`` always runs the wavefront (the
GPU path). numba and the kernel modules are imported on first use: ``import rivergraph`` and the torch engine
load neither (numba and its LLVM take ~0.25 s and ~55 MB).
"""
from __future__ import annotations

import importlib.util
from functools import cache

import numpy as np
import torch

from .cell import Cell
from .cells import LinearHeat, MuskingumCungeCell, StaticMuskingum
from .schedule import Schedule

__all__ = ["available", "use_compiled", "snapshot_scratch_bytes", "history_scratch", "compiled_sweep", "CompiledSweep",
           "ENGINES"]

ENGINES = ("auto", "torch", "compiled")


@cache
def available() -> bool:
    """Whether numba is installed (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def _kernel(cell: Cell):
    """The compiled kernel class of a cell, or None: static Muskingum, Muskingum-Cunge on the power-law and the
    trapezoid channels."""
    if type(cell) is StaticMuskingum:
        from .compiled_static import StaticKernel

        return StaticKernel
    if type(cell) is MuskingumCungeCell and cell.channel.name == "power_law":
        from .compiled_mc import MCKernel

        return MCKernel
    if type(cell) is MuskingumCungeCell and cell.channel.name == "trapezoid":
        from .compiled_trapezoid import TrapezoidKernel

        return TrapezoidKernel
    if type(cell) is LinearHeat:
        from .compiled_heat import HeatKernel

        return HeatKernel
    return None


KERNEL_DTYPES = (torch.float32, torch.float64)
"""The states' dtypes the compiled kernels run (their arithmetic is float64 either way)."""


def use_compiled(sched: Schedule, cell: Cell, engine: str, needs_grad: bool = False,
                 dtype: torch.dtype = torch.float64) -> bool:
    """Whether a sweep of ``cell`` with states of ``dtype`` runs compiled: ``engine`` is ``"compiled"`` (an error
    if it cannot), or ``"auto"`` on a CPU for a cell with a compiled kernel and a dtype of ``KERNEL_DTYPES``
    (forward and adjoint: ``needs_grad`` does not matter; other dtypes run the torch wavefront)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "torch":
        return False
    ok = (available() and sched.device.type == "cpu" and dtype in KERNEL_DTYPES and _kernel(cell) is not None)
    if engine == "compiled" and not ok:
        what = type(cell).__name__ + (f" ({cell.channel.name})" if hasattr(cell, "channel") else "")
        why = ("numba is not installed" if not available() else
               f"it runs on CPU only (device {sched.device})" if sched.device.type != "cpu" else
               f"it runs float32 and float64, not {dtype} (cast, or engine='torch')" if dtype not in KERNEL_DTYPES else
               f"no compiled kernel for {what} (compiled: static Muskingum, Muskingum-Cunge on the power-law and trapezoid "
               "channels, linear heat)")
        raise ValueError(f"engine='compiled' is not available: {why}")
    return ok


def history_scratch(cell: Cell) -> int:
    """Vectors per step the cell's compiled kernel keeps beside the states' histories for its adjoint (the
    trapezoid's depths), for the memory estimate."""
    return getattr(_kernel(cell), "HISTORY_SCRATCH", 0)


def snapshot_scratch_bytes(cell: Cell, dtype: torch.dtype) -> int:
    """Bytes per reach the cell's compiled kernel keeps at each checkpoint beside the states and the inflow (the
    trapezoid's warm-start depths, in the states' ``dtype``), for the checkpoint memory estimate."""
    return _kernel(cell).SNAPSHOT_SCRATCH * torch.finfo(dtype).bits // 8


def _output_layout(q, out_pos, out_sorted):
    """The output buffer and its (mode, positions) for ``end_step``."""
    from .compiled_base import as_numpy

    T, N = q.shape[-2:]
    if out_pos is None:
        return q.new_empty(T, N), (1 if out_sorted else 0), np.zeros(0, dtype=np.int64)
    return q.new_empty(T, len(out_pos)), 2, as_numpy(out_pos)


def _grad_layout(g_out, N, out_pos, out_sorted, dtype):
    """The output cotangent as ``grad_row`` reads it: (array, g_mode, g_col)."""
    from .compiled_base import NO_GRAD, as_numpy

    g_col = np.zeros(0, dtype=np.int64)
    if g_out is None:
        return np.zeros((1, 1), dtype=dtype), NO_GRAD, g_col
    if out_pos is None:
        return as_numpy(g_out.contiguous()), (1 if out_sorted else 0), g_col
    return as_numpy(g_out.contiguous()), 2, as_numpy(out_pos.to(torch.long).contiguous())


class CompiledSweep(torch.autograd.Function):
    """A compiled kernel on all (reach, step) pairs; inputs ``(args, I0, *states0, q, *params)`` with
    ``args = (kernel, out_pos, out_sorted, checkpoint_every, keep_history)``, outputs
    ``(out, I_final, *states_final, diagnostics)`` as :class:`rivergraph.engine.sweep._Sweep`'s. The kernel
    (``StaticKernel``, ``MCKernel``) gives ``n_states``, ``history_states()``, ``bind``, ``forward``,
    ``backward`` and ``diagnostics``."""

    @staticmethod
    def forward(ctx, a, I0, *xs):
        from .compiled_base import as_numpy

        kern, out_pos, out_sorted, every, keep_history = a
        ns = kern.n_states
        states0, q, params = xs[:ns], xs[ns], xs[ns + 1:]
        T, N = q.shape[-2:]
        need_grad = keep_history or any(ctx.needs_input_grad[1:])
        kern.bind(q, params, states0)
        states = [s.detach().clone() for s in states0]
        I_old = I0.detach().clone()
        I_new = torch.zeros_like(I_old)
        out, mode, opos = _output_layout(q, out_pos, out_sorted)
        k = max(1, T if every is None else min(every, T))
        keep_full = need_grad and every is None
        hist = _histories(kern, q, T if keep_full else 0, states, I_old)
        snaps = []
        for t0 in range(0, T, k):
            if need_grad and not keep_full:
                snaps.append([x.clone() for x in (*states, I_old)])
            kern.forward(t0, min(t0 + k, T), [as_numpy(s) for s in states], as_numpy(I_old), as_numpy(I_new),
                         as_numpy(out), mode, opos, [as_numpy(h) for h in hist], keep_full, True)
        diag = kern.diagnostics(I_old.clone(), [s.clone() for s in states], I0.detach(),
                                [s.detach() for s in states0], params)
        ctx.a, ctx.k, ctx.snaps, ctx.keep_full, ctx.n_params = a, k, snaps, keep_full, len(params)
        if need_grad:
            ctx.save_for_backward(q, *params, *hist)
        ctx.mark_non_differentiable(diag)
        return out, I_old, *states, diag

    @staticmethod
    def backward(ctx, g_out, g_I, *g_rest):
        from .compiled_base import as_numpy

        kern, out_pos, out_sorted, every, _ = ctx.a
        ns = kern.n_states
        saved = ctx.saved_tensors
        q, params, hist = saved[0], saved[1:1 + ctx.n_params], list(saved[1 + ctx.n_params:])
        T, N = q.shape[-2:]
        dt_ = q.dtype
        zeros = lambda: torch.zeros(N, dtype=dt_)  # noqa: E731
        carries = [zeros() if g is None else g.clone() for g in g_rest[:ns]]
        carry_m = zeros() if g_I is None else g_I.clone()
        m_bar = torch.zeros(N + 1, dtype=dt_)
        p_bar = torch.zeros(len(params), N, dtype=params[0].dtype if params else dt_)
        want_u = ctx.needs_input_grad[2 + ns]
        # every kernel's backward writes each row t of u_bar once, all N entries (write_row): no zero fill
        u_bar = torch.empty_like(q) if want_u else q.new_zeros(*q.shape[:-2], 1, N)
        g, g_mode, g_col = _grad_layout(g_out, N, out_pos, out_sorted, as_numpy(q).dtype)
        tail = (g, g_mode, g_col, [as_numpy(c) for c in carries], as_numpy(carry_m), as_numpy(m_bar),
                as_numpy(p_bar), as_numpy(u_bar), want_u)
        k = ctx.k
        if ctx.keep_full:
            kern.backward(0, T, [as_numpy(h) for h in hist], *tail)
        else:
            I_new = torch.zeros(N, dtype=dt_)
            dummy, opos = q.new_empty(T, 1), np.zeros(0, dtype=np.int64)
            for seg in range(len(ctx.snaps) - 1, -1, -1):
                t0, t1 = seg * k, min(seg * k + k, T)
                *states, I_old = (x.clone() for x in ctx.snaps[seg])
                seg_hist = [as_numpy(h) for h in _histories(kern, q, k, states, I_old)]
                I_new.zero_()
                kern.forward(t0, t1, [as_numpy(s) for s in states], as_numpy(I_old), as_numpy(I_new),
                             as_numpy(dummy), 2, opos, seg_hist, True, False)
                kern.backward(t0, t1, seg_hist, *tail)
        return (None, carry_m, *carries, u_bar if want_u else None, *p_bar.unbind(0))


def _histories(kern, q, rows: int, states, I_old):
    """The kept histories of a kernel, [rows + 1, N] per kept state and the inflow (row 0 = the given state;
    1-row scratch for the states not kept, and for all with ``rows = 0``)."""
    N = q.shape[-1]
    kept = kern.history_states()
    hist = []
    for i, x in [*enumerate(states), (None, I_old)]:
        if rows and (kern.INFLOW_HISTORY if i is None else i in kept):
            h = q.new_empty(rows + 1, N)
            h[0] = x
        else:
            h = q.new_empty(1, N)
        hist.append(h)
    return hist


def compiled_sweep(sched: Schedule, cell: Cell, forcings, params, init_states, init_message, out_pos, out_sorted,
                   checkpoint_every: int | None, keep_history: bool, diagnostics: bool = True):
    """The compiled sweep's ``(out, message, states, diagnostics)``; ``checkpoint_every`` counts steps;
    without ``diagnostics`` a kernel may skip them (``kern.books``: NaN then)."""
    kind = _kernel(cell)
    # several forcings (the heat cell's a, beta, gamma) stacked [F, T, N]: one array, one gradient (split by stack)
    q = forcings[0].contiguous() if len(forcings) == 1 else torch.stack([f.contiguous() for f in forcings])
    kern = kind(sched, cell)
    kern.books = diagnostics
    res = CompiledSweep.apply((kern, out_pos, out_sorted, checkpoint_every, keep_history), init_message,
                              *init_states, q, *kind.parameters(params))
    ns = kind.n_states
    return res[0], res[1], tuple(res[2:2 + ns]), res[-1]
