"""The cell: what the wavefront sweep computes for one band of reaches on one anti-diagonal.

A cell is the per-reach update of a recursion on the river graph

    m_i(t) = sum_{j -> i} y_j(t)                                   (the message: upstream emissions at step t)
    s_i(t) = step(m_i(t), m_i(t-1), s_i(t-1), u_i(t), p_i)         (the update)
    y_i(t) = emit(s_i(t), u_i(t))                                  (what reach i sends downstream; default s[0])

with states ``s`` (per-reach vectors carried from step to step; ``states[0]`` is the cell's output), per-step
forcings ``u`` ([T, N] inputs) and per-reach parameters ``p``. :func:`rivergraph.engine.sweep.sweep` runs it on
every (reach, step) pair, forward and with a reverse-sweep adjoint, as torch-geometric's ``MessagePassing``
runs its ``message`` / ``update`` hooks, except that the hot loop calls the hooks directly on prebuilt views.

To write a cell, subclass :class:`Cell`, declare ``states``, ``forcings`` and ``params`` (names), and give
``step`` (a pure function of band tensors). Optional, for speed: ``forward_`` (the update in place on the
band's state views, no allocation), ``vjp_`` (a closed-form vector-Jacobian product; without it the band is
differentiated locally with ``torch.autograd.grad`` on ``step``), ``emit_`` (with ``emits_state = False``),
``begin`` / ``finish`` (per-call set-up and diagnostics). See docs/routing.md, "Engine".
"""
from __future__ import annotations

from typing import ClassVar, Literal, Sequence

import torch

Tensors = Sequence[torch.Tensor]

__all__ = ["Cell"]


class Cell:
    """Base class of the engine's cells; see the module docstring.

    Class attributes:
        states: names of the state vectors; ``states[0]`` is what the sweep outputs.
        forcings: names of the per-step inputs.
        forcing_order: ``"network"`` (forcings [T, N] in the network's reach order, read through a ring of
            level-sorted rows) or ``"sorted"`` (already in the schedule's sorted order).
        emits_state: the emission y is ``states[0]`` itself (no ``emit_`` call, no extra buffer).
        message_history: the adjoint reads the message m(t), m(t-1) (kept as a [T + 1, N] history).
        vjp_needs_new_states: the adjoint reads the states after the step (s(t)) as well as before.
        vjp_forcings: positions of the forcings the adjoint reads (None: all); the others are not gathered.
    Instance attribute ``params``: names of the per-reach parameters (may depend on the instance, e.g.
    on the channel geometry). ``derive_first``: set by :meth:`begin` when the initial state is not given
    and the reaches taking their first step derive it (``step`` then gets their count as ``n_first``, and so
    does the adjoint).
    """

    states: ClassVar[tuple[str, ...]] = ()
    forcings: ClassVar[tuple[str, ...]] = ()
    forcing_order: ClassVar[Literal["network", "sorted"]] = "network"
    emits_state: ClassVar[bool] = True
    message_history: ClassVar[bool] = True
    vjp_needs_new_states: ClassVar[bool] = False
    vjp_forcings: ClassVar[tuple[int, ...] | None] = None
    params: tuple[str, ...] = ()
    derive_first: bool = False

    # ------------------------------------------------------------------ the update
    def step(self, m_new: torch.Tensor, m_old: torch.Tensor, s_old: Tensors, u: Tensors, p: Tensors,
             n_first: int) -> tuple[torch.Tensor, ...]:
        """New states of one band (pure: inputs are not modified). ``n_first``: the last n_first reaches of
        the band take their first step and have no given initial state (only with ``derive_first``)."""
        raise NotImplementedError

    def emit(self, s_new: Tensors, u: Tensors) -> torch.Tensor:
        """What each reach sends downstream (differentiable; used by the autograd adjoint)."""
        return s_new[0]

    def forward_(self, m_new, m_old, s: Tensors, u: Tensors, p: Tensors, n_first: int, n_last: int) -> None:
        """In-place update: ``s`` are views of the state buffers (s(t-1) on entry, s(t) on exit).
        ``n_first`` / ``n_last``: the last n_first band reaches take their first step, the first n_last
        their last (always given, for diagnostics; pass n_first on to :meth:`step` only with
        ``derive_first``). Default: :meth:`step`, copied in."""
        nf = n_first if self.derive_first else 0
        for x, v in zip(s, self.step(m_new, m_old, s, u, p, nf)):
            x.copy_(v)

    def emit_(self, y: torch.Tensor, s: Tensors, u: Tensors) -> None:
        """Write the emission into ``y`` (only called when ``emits_state`` is False)."""
        y.copy_(self.emit(s, u))

    # ------------------------------------------------------------------ per call
    def begin(self, s0: Tensors, p: Tensors) -> None:
        """Called once per forward sweep with the (detached) initial states and parameters."""

    def finish(self, m_final: torch.Tensor, s_final: Tensors, m0: torch.Tensor, s0: Tensors,
               p: Tensors) -> torch.Tensor:
        """Diagnostics of the sweep (a non-differentiable tensor), e.g. storage sums; default empty."""
        return torch.zeros(0, dtype=torch.float64, device=m_final.device)

    # ------------------------------------------------------------------ the adjoint
    def vjp_(self, y_bar, m_bar, m_carry, s_carry: Tensors, m_new, m_old, s_old: Tensors, s_new: Tensors | None,
             u: Tensors, p: Tensors, n_first: int, p_bar: Tensors) -> tuple[torch.Tensor, ...]:
        """Vector-Jacobian product of one band's update, in place on the adjoint's band views.

        Inputs: ``y_bar`` the cotangent of the emission y(t); the values ``m_new`` = m(t), ``m_old`` = m(t-1)
        (None without ``message_history``), ``s_old`` = s(t-1), ``s_new`` = s(t) (only with
        ``vjp_needs_new_states``), the forcings ``u`` (None for those not in ``vjp_forcings``), the parameters
        ``p``. In/out views:

            s_carry[k]  on entry the cotangent of s_k(t) (from step t+1 and the output); on exit that of s_k(t-1)
            m_carry     on entry the cotangent of m(t) from step t+1; on exit that of m(t-1) from this step
            m_bar       write the total cotangent of m(t) (m_carry on entry + this step's)
            p_bar[j]    add the cotangent of parameter j

        Returns the forcings' cotangents (consumed before the next band). Default: local autograd of
        :meth:`step` (and :meth:`emit`) on this band only.
        """
        with torch.enable_grad():
            # step() is pure: leaves sharing the inputs' memory, no copies
            ins = [x.detach().requires_grad_(True) for x in (m_new, m_old, *s_old, *u, *p)]
            ns, nu = len(s_old), len(u)
            mn, mo, so, uu, pp = ins[0], ins[1], ins[2:2 + ns], ins[2 + ns:2 + ns + nu], ins[2 + ns + nu:]
            new = self.step(mn, mo, so, uu, pp, n_first)
            outs, cots = list(new), [x.clone() for x in s_carry]
            if self.emits_state:
                cots[0] = cots[0] + y_bar
            else:
                outs.append(self.emit(new, uu))
                cots.append(y_bar)
            grads = torch.autograd.grad(outs, ins, cots, allow_unused=True)
        g = [torch.zeros_like(x) if gx is None else gx for gx, x in zip(grads, ins)]
        torch.add(m_carry, g[0], out=m_bar)
        m_carry.copy_(g[1])
        for c, gs in zip(s_carry, g[2:2 + ns]):
            c.copy_(gs)
        for acc, gp in zip(p_bar, g[2 + ns + nu:]):
            acc.add_(gp)
        return tuple(g[2 + ns:2 + ns + nu])
