"""The engine's cells: static Muskingum, Muskingum-Cunge on a channel geometry, linear heat transport.

Each is a thin :class:`~rivergraph.engine.cell.Cell`; the physics lives in :mod:`rivergraph.physics`.
"""
from __future__ import annotations

import torch

from ..physics.channels import Channel
from ..physics.muskingum import mc_step, muskingum_storage, storage_weights
from .cell import Cell

__all__ = ["StaticMuskingum", "MuskingumCungeCell", "LinearHeat", "linear_transport"]


class StaticMuskingum(Cell):
    """Q(t) = c1 I(t) + c2 I(t-1) + c3 Q(t-1) + c4 q(t) with per-reach coefficients (c1..c4) (static K, X;
    :func:`rivergraph.physics.muskingum.muskingum_coefficients`). Closed-form VJP.

    ``dt`` (s) > 0: :meth:`finish` returns the Muskingum storage sums [first, last, first, last] (m3) and
    keeps the final storage per reach in ``S_final``; dt = 0 skips them.
    """

    states = ("Q",)
    forcings = ("q_lat",)
    params = ("c1", "c2", "c3", "c4")

    def __init__(self, dt: float = 0.0):
        self.dt = dt
        self.S_final: torch.Tensor | None = None

    def step(self, m_new, m_old, s_old, u, p, n_first):
        c1, c2, c3, c4 = p
        return (c1 * m_new + c2 * m_old + c3 * s_old[0] + c4 * u[0],)

    def forward_(self, m_new, m_old, s, u, p, n_first, n_last):
        s[0].mul_(p[2]).addcmul_(p[0], m_new).addcmul_(p[1], m_old).addcmul_(p[3], u[0])

    vjp_forcings = (0,)

    def vjp_(self, y_bar, m_bar, m_carry, s_carry, m_new, m_old, s_old, s_new, u, p, n_first, p_bar):
        c1, c2, c3, c4 = p
        Q_bar = s_carry[0].add(y_bar)
        for acc, x in zip(p_bar, (m_new, m_old, s_old[0], u[0])):
            acc.addcmul_(Q_bar, x)
        torch.addcmul(m_carry, Q_bar, c1, out=m_bar)
        torch.mul(Q_bar, c2, out=m_carry)
        torch.mul(Q_bar, c3, out=s_carry[0])
        return (Q_bar.mul_(c4),)

    def finish(self, m_final, s_final, m0, s0, p):
        if not self.dt > 0:
            return super().finish(m_final, s_final, m0, s0, p)
        # constant K, X: one step's end storage is the next step's start storage, so only the initial and
        # final storages enter the balance (no drift)
        kx, k1x = storage_weights(*p, self.dt)
        self.S_final = muskingum_storage(kx, k1x, m_final, s_final[0])
        first = muskingum_storage(kx, k1x, m0, s0[0]).sum(dtype=torch.float64)
        last = self.S_final.sum(dtype=torch.float64)
        return torch.stack([first, last, first, last])


class MuskingumCungeCell(Cell):
    """Variable-parameter Muskingum-Cunge on a channel geometry (:func:`rivergraph.physics.muskingum.mc_step`),
    states Q and the storage S; ``conservative`` picks the update form. Parameters: the channel's, in its
    order. The adjoint differentiates each band locally (autograd of the elementwise coefficient graph).

    An initial S with NaN means "derive it from the first step's coefficients and flows". :meth:`finish`
    returns the storage sums [all step starts, all step ends, first-step starts, last-step ends] (m3).
    """

    states = ("Q", "S")
    forcings = ("q_lat",)

    def __init__(self, channel: Channel, dt: float, positivity: bool = True, conservative: bool = True):
        if not dt > 0:
            raise ValueError("flow-dependent routing needs the step dt (s)")
        self.channel, self.dt, self.conservative, self.positivity = channel, dt, conservative, positivity
        self.params = channel.param_names
        self.coeff_fn = channel.coefficients(dt, positivity)
        self.stor: torch.Tensor | None = None

    def begin(self, s0, p):
        self.derive_first = bool(torch.isnan(s0[1]).any())
        self.stor = torch.zeros(4, dtype=torch.float64, device=s0[0].device)

    def step(self, m_new, m_old, s_old, u, p, n_first):
        Q, S, _ = mc_step(self.coeff_fn, self.conservative, self.dt, m_new, m_old, s_old[0], s_old[1], u[0],
                          n_first, *p)
        return Q, S

    def forward_(self, m_new, m_old, s, u, p, n_first, n_last):
        Q_new, S_new, s_start = mc_step(self.coeff_fn, self.conservative, self.dt, m_new, m_old, s[0], s[1], u[0],
                                        n_first if self.derive_first else 0, *p)
        st = self.stor
        st[0] += s_start.sum(dtype=torch.float64)  # before S is overwritten (s_start may be a view of it)
        st[1] += S_new.sum(dtype=torch.float64)
        if n_first:  # reaches taking their first step are the top of the band
            st[2] += s_start[s_start.shape[0] - n_first:].sum(dtype=torch.float64)
        if n_last:  # reaches taking their last step are the bottom of the band
            st[3] += S_new[:n_last].sum(dtype=torch.float64)
        s[0].copy_(Q_new)
        s[1].copy_(S_new)

    def finish(self, m_final, s_final, m0, s0, p):
        return self.stor


class LinearHeat(Cell):
    """Linear transport of a tracer (heat) on the routed water, forcings in the schedule's sorted order:

        x_i(t) = sum_{j -> i} a_j(t) x_j(t) + beta_i(t) x_i(t-1) + gamma_i(t)

    ``a_j(t)`` is the weight of reach j's value in its downstream reach (the emission is y = a x), ``beta``
    the weight of the reach's previous value, ``gamma`` the source. With non-negative weights summing to
    <= 1 per reach, x(t) is a convex combination of its sources (implicit upwind transport, see
    :mod:`rivergraph.models.temperature`). Closed-form adjoint on the transposed graph:

        lam_j(t) = g_j(t) + beta_j(t+1) lam_j(t+1) + a_j(t) lam_down(j)(t)
        dL/da_j(t) = lam_down(j)(t) x_j(t),  dL/dbeta_i(t) = lam_i(t) x_i(t-1),  dL/dgamma_i(t) = lam_i(t).
    """

    states = ("x",)
    forcings = ("a", "beta", "gamma")
    forcing_order = "sorted"
    emits_state = False
    message_history = False
    vjp_needs_new_states = True

    def step(self, m_new, m_old, s_old, u, p, n_first):
        return (m_new + u[1] * s_old[0] + u[2],)

    def emit(self, s_new, u):
        return u[0] * s_new[0]

    def forward_(self, m_new, m_old, s, u, p, n_first, n_last):
        s[0].mul_(u[1]).add_(m_new).add_(u[2])

    def emit_(self, y, s, u):
        torch.mul(u[0], s[0], out=y)

    vjp_forcings = (0, 1)

    def vjp_(self, y_bar, m_bar, m_carry, s_carry, m_new, m_old, s_old, s_new, u, p, n_first, p_bar):
        lam = torch.addcmul(s_carry[0], u[0], y_bar)  # the cotangent of x(t)
        torch.add(m_carry, lam, out=m_bar)  # m(t): through x(t), and as the returned final message (m_carry)
        m_carry.zero_()  # m(t-1) is not read
        torch.mul(u[1], lam, out=s_carry[0])
        return (y_bar.mul_(s_new[0]), lam * s_old[0], lam)


def linear_transport(sched, a: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor,
                     x0: torch.Tensor, engine: str = "auto") -> torch.Tensor:
    """x [T, N] of the :class:`LinearHeat` recursion, every tensor in the schedule's sorted order (a, beta,
    gamma [T, N], x0 [N] the value before the first step); differentiable in all four. ``engine``: ``"auto"``
    (the compiled kernel :mod:`rivergraph.engine.compiled_heat` on a CPU, float32 / float64; forward+backward
    1.8-2.2x the torch wavefront's on the 300k tree, forward 1.1-1.6x), ``"torch"`` or ``"compiled"``."""
    from .sweep import sweep

    return sweep(sched, LinearHeat(), (a, beta, gamma), (), (x0,), outputs="sorted", engine=engine).out
