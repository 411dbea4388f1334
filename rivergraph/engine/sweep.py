"""The wavefront engine: one vectorised sweep per anti-diagonal (time + level) of the river graph.

Why: the Muskingum family in RAPID/DDR form is implicit in space, Q_i(t) depends on the upstream
outflows at the *same* time t. Solving it with a sparse triangular solve per step (DDR) or a loop over
topological levels inside every step costs T x depth sequential sweeps. Here every reach gets the level
``L_i = depth_max - distance_to_outlet(i)`` ("as late as possible"), so every edge j -> i has
``L_j = L_i - 1`` exactly, and the pair (reach i, step t) is computed on diagonal ``d = t + L_i``.
All dependencies of (i, t) (upstream at t and t-1, itself at t-1) then lie on diagonal d-1 or earlier,
and the simulation takes ``T + depth`` sweeps. With reaches sorted by level, the reaches active on a
diagonal form one contiguous slice, and so do the edges entering them, so a sweep is a handful of
gather / ``scatter_add_`` (scatter-sum message passing) calls over that slice, identical on CPU and GPU.

Gradients use a hand-written adjoint: a reverse sweep over the diagonals on the transposed graph
(each reach has one downstream, so the transposed message is a gather). Memory is the discharge
history [T, N] (the output) plus O(N) state: no autograd graph per step is kept. Per-step coefficient
functions that depend on flow (Muskingum-Cunge) are differentiated locally on each diagonal with
``torch.autograd.grad`` on the elementwise coefficient graph only.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch

from ..physics.muskingum import mc_step
from .schedule import Schedule

CoeffFn = Callable[..., tuple]


class _Sweep:
    """Forward-sweep workspace for one schedule, step count and dtype: the state vectors, scratch buffers,
    and per diagonal every slice the sweep touches. On a small network the sweep is bound by Python-side
    calls (a slice costs as much as an op on a few thousand reaches), so the views are built once and
    reused by every call with the same step count (training epochs, chunked runs). Not thread-safe: one
    sweep at a time per schedule.

    ``plan`` rows: ``(d, lo, hi, a, b, sa, sb, Q[a:b], Q[sa:sb], I_new (full), I_new[a:b], I_old[a:b],
    down[sa:sb], base[a:b], ridx, q_d, idx, (c1..c4)[a:b])``, with I double-buffered by diagonal parity.
    """

    def __init__(self, sched: Schedule, n_steps: int, dtype: torch.dtype):
        N, dev = sched.n, sched.device
        self.key = (n_steps, dtype)
        vec = partial(torch.empty, N, dtype=dtype, device=dev)
        self.Q, self.I, self.row = vec(), (vec(), vec()), vec()
        self.coef = torch.empty(4, N, dtype=dtype, device=dev)
        ridx, idx, qd = (torch.empty(N, dtype=torch.long, device=dev), torch.empty(N, dtype=torch.long, device=dev),
                         vec())
        base, down, Q, I, c = sched.flat_base(), sched.down, self.Q, self.I, self.coef
        self.plan = [(d, lo, hi, a, b, sa, sb, Q[a:b], Q[sa:sb], I[d & 1], I[d & 1][a:b], I[(d + 1) & 1][a:b],
                      down[sa:sb], base[a:b], ridx[:b - a], qd[:b - a], idx[:b - a], tuple(c[:, a:b].unbind(0)))
                     for d, lo, hi, a, b, sa, sb in sched.diagonals(n_steps)]


class _Rows:
    """A [T, N] array in network order, seen on the diagonals through a ring of rows in sorted order.

    Reading q (or writing Q) for the active reaches of a diagonal straight in network order is a random
    access into T x N memory, one cache and TLB miss per element, and it dominated the sweep. Row t
    (step t) is read only on diagonals t .. t + depth, so a ring of ``R = min(T, n_levels)`` rows in
    sorted reach order holds everything live: a row is permuted in (or out) once, within a row of N
    values, and every diagonal reads runs of contiguous values, one run per level of its band.
    Forward, row t is loaded before diagonal t and final after diagonal t + depth; in the reverse sweep
    the roles swap. ``buf`` ([T, N]) gives the rows a home of their own instead of a ring (no wrap): the
    routed output, or q's gradient, whose value at (t, k) is written on the diagonal that reads q(t, k).
    """

    def __init__(self, sched: Schedule, n_steps: int, like: torch.Tensor, buf: torch.Tensor | None = None):
        self.sched = sched
        self.R = n_steps if buf is not None else min(n_steps, sched.n_levels)
        self.buf = buf if buf is not None else like.new_empty(self.R, sched.n)
        self.flat = self.buf.view(-1)
        self.wrap = self.R < n_steps

    def index(self, base: torch.Tensor, d: int, out: torch.Tensor) -> torch.Tensor:
        """Flat ring index of (step d - level, sorted reach) for ``base`` = a slice of ``flat_base()``."""
        idx = torch.add(base, d * self.sched.n, out=out)
        return idx.remainder_(self.R * self.sched.n) if self.wrap else idx

    def load(self, row: torch.Tensor, t: int) -> None:
        """Permute row t ([N], network order) into the ring."""
        torch.index_select(row, 0, self.sched.order, out=self.buf[t % self.R])


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


class _Wavefront(torch.autograd.Function):
    """Muskingum recursion Q(t) = c1 I(t) + c2 I(t-1) + c3 Q(t-1) + c4 q(t) on all (reach, step) pairs.

    Inputs: q [T, N] in network order; Q0 [N], I0 [N] and ``theta`` tensors [N] in sorted order. If ``step_fn`` is
    None, theta are the coefficients (c1, c2, c3, c4) themselves (static Muskingum); otherwise
    ``step_fn(dt, I_new, I_old, Q_old, S_prev, q, n_first, *theta_slices)`` is a partial of
    :func:`mc_step`, with the storage S [N] as a third state (``S0``: NaN = derive it from the
    first step's coefficients).
    Returns (Q_out, Q_final [N], I_final [N], S_final [N], storage sums [4]); Q_out is [T, n_out] in ``out_col`` order, or, with
    ``out_pos=None``, [T, N] for every reach in network order (the order of q).

    History rows: ``hist[t + 1]`` holds Q at step t and ``hist[0]`` the initial state (same for I), so
    every read of "the previous step" is a plain gather.
    """

    @staticmethod
    def forward(ctx, q, Q0, I0, S0, sched, step_fn, out_pos, out_col, keep_history, dt, *theta):
        T, N = q.shape
        n_out = len(out_col)
        need_grad = keep_history or any(ctx.needs_input_grad[i] for i in (0, 1, 2, 3)) or \
            any(ctx.needs_input_grad[10:])
        mc = step_fn is not None
        s0_given = mc and not bool(torch.isnan(S0).any())
        S = S0.detach().clone() if mc else None
        theta_d = [t.detach() for t in theta]
        ws = sched.sweep(T, q.dtype)
        Q, I_buf = ws.Q, ws.I  # I double-buffered: this and the last diagonal
        Q.copy_(Q0.detach())
        I_buf[0].copy_(I0.detach())
        I_buf[1].copy_(I0.detach())
        if not mc:
            ws.coef.copy_(torch.stack(theta_d))
        if need_grad:  # discharge, upstream inflow and storage histories: only the adjoint reads them
            hist = q.new_empty(T + 1, N)
            hist[0] = Q
            hf = hist.view(-1)
            ihist = q.new_empty(T + 1, N)
            ihist[0] = I_buf[0]
            ihf = ihist.view(-1)
            if mc:
                shist = q.new_empty(T + 1, N)
                shist[0] = S
                shf = shist.view(-1)
        full_out = out_pos is None
        out = q.new_empty(T, N) if full_out else q.new_zeros(T, n_out)
        qd_all = q.detach()
        # q in sorted order, row by row. With the full output, ``out`` holds it: Q(t, k) overwrites q(t, k)
        # on the diagonal that reads it, and each row is permuted in place into network order once final
        # (from the history when there is one). Otherwise a ring of rows.
        q_ring = _Rows(sched, T, q, buf=out if full_out else None)
        row_buf = ws.row
        outf = out.view(-1)
        last_level = sched.n_levels - 1
        if out_pos is not None:
            o_l = torch.searchsorted(out_pos, torch.as_tensor(sched.lstart, device=q.device)).cpu().numpy()
            obase = out_col - sched.level[out_pos] * n_out
        # storage sums (m3): all step starts, all step ends, first-step starts, last-step ends
        stor = torch.zeros(4, dtype=torch.float64, device=q.device)
        storage_sums = dt > 0  # static: only when asked (dt given); flow-dependent: always
        # the sweep is Python-bound on small networks: ops inlined, views prebuilt (see _Sweep), no allocations;
        # the flat [T, N] index of (step t, sorted reach k) is base[k] + d * N on diagonal d = t + level_k
        isel, order, sorted_pos = torch.index_select, sched.order, sched.sorted_pos
        ring_flat, R, wrap, RN = q_ring.flat, q_ring.R, q_ring.wrap, q_ring.R * N
        q_rows, ring_rows, out_rows = qd_all.unbind(0), q_ring.buf.unbind(0), out.unbind(0)
        hist_rows = hist.unbind(0) if need_grad else None
        for d, lo, hi, a, b, sa, sb, Qs, Q_up, I_new_full, I_new, I_old, down_up, base_b, ridx, qd, idx, cb \
                in ws.plan:
            if d < T:
                isel(q_rows[d], 0, order, out=ring_rows[d % R])
            I_new.zero_()  # message passing: upstream outflow at the same step, summed at the reach
            if sb > sa:
                I_new_full.scatter_add_(0, down_up, Q_up)
            torch.add(base_b, d * N, out=ridx)
            if wrap:
                ridx.remainder_(RN)
            isel(ring_flat, 0, ridx, out=qd)
            n_first = int(b - sched.lstart[d]) if (hi == d and not s0_given) else 0
            if mc:
                Q_new, S_new, s_start = step_fn(dt, I_new, I_old, Qs, S[a:b], qd, n_first,
                                                *(t[a:b] for t in theta_d))
                s_start = s_start.clone()  # may be a view of S, overwritten below
                Qs.copy_(Q_new)
                S[a:b] = S_new
                s_end = S_new
            else:
                Qs.mul_(cb[2]).addcmul_(cb[0], I_new).addcmul_(cb[1], I_old).addcmul_(cb[3], qd)
            if storage_sums and mc:
                stor[0] += s_start.sum(dtype=torch.float64)
                stor[1] += s_end.sum(dtype=torch.float64)
                if hi == d:  # reaches taking their first step (level d) are the top of the band
                    stor[2] += s_start[int(sched.lstart[d]) - a:].sum(dtype=torch.float64)
                if lo == d - T + 1:  # reaches taking their last step are the bottom of the band
                    stor[3] += s_end[: int(sched.lstart[lo + 1]) - a].sum(dtype=torch.float64)
            if need_grad:
                torch.add(base_b, (d + 1) * N, out=idx)
                hf.scatter_(0, idx, Qs)
                ihf.scatter_(0, idx, I_new)
                if mc:
                    shf.scatter_(0, idx, S_new)
            if full_out:
                if not need_grad:
                    outf.scatter_(0, ridx, Qs)
                t_done = d - last_level  # step t is final once its top level has run
                if t_done >= 0:
                    if need_grad:
                        isel(hist_rows[t_done + 1], 0, sorted_pos, out=out_rows[t_done])
                    else:
                        row = out_rows[t_done]
                        row.copy_(isel(row, 0, sorted_pos, out=row_buf))
            else:
                oa, ob = int(o_l[lo]), int(o_l[hi + 1])
                if ob > oa:
                    outf.scatter_(0, obase[oa:ob] + d * n_out, Qs.index_select(0, out_pos[oa:ob] - a))
        # reaches finish on different diagonals: take each reach's last I from the history or buffers
        if need_grad:
            I = ihist[T].clone()
        else:
            last = (T - 1 + sched.level) % 2  # diagonal parity of each reach's last step
            I = torch.where(last == 0, I_buf[0], I_buf[1])
        if storage_sums and not mc:
            # constant K, X: one step's end storage is the next step's start storage, so only the initial
            # and final storages enter the balance (no drift). S = K X I + K (1-X) Q from the coefficients:
            # D = 2 dt / c4, 2 K X = (c2 - c1) D / 2, 2 K (1-X) = c3 D + dt
            c1, c2, c3, c4 = theta_d
            Dn = 2.0 * dt / c4
            kx, k1x = (c2 - c1) * Dn / 4.0, (c3 * Dn + dt) / 2.0
            first = (kx * I0.detach() + k1x * Q0.detach()).sum(dtype=torch.float64)
            last = (kx * I + k1x * Q).sum(dtype=torch.float64)
            stor = torch.stack([first, last, first, last])
        ctx.sched, ctx.step_fn, ctx.dt, ctx.s0_given = sched, step_fn, dt, s0_given
        ctx.out_pos, ctx.out_col = out_pos, out_col
        if need_grad:
            ctx.save_for_backward(q, hist, ihist, shist if mc else None, *theta)
        ctx.mark_non_differentiable(stor)
        S_fin = S if mc else torch.full_like(Q, float("nan"))
        return out, Q.clone(), I, S_fin, stor

    @staticmethod
    def backward(ctx, g_out, g_Qf, g_If, g_Sf, _g_stor):
        q, hist, ihist, shist, *theta = ctx.saved_tensors
        mc, dt = ctx.step_fn is not None, ctx.dt
        sched, step_fn = ctx.sched, ctx.step_fn
        T, N = q.shape
        dev, dt_ = q.device, q.dtype
        base = sched.flat_base()
        hf, ihf = hist.reshape(-1), ihist.reshape(-1)
        theta_d = [t.detach() for t in theta]
        th_bar = [torch.zeros_like(t) for t in theta]
        # q and the output's gradient in sorted order (see _Rows; in reverse, row t is loaded before
        # diagonal t + depth): q's gradient overwrites q where it is read, each row permuted in place into
        # network order once final (after diagonal t)
        q_bar = torch.empty(T, N, device=dev, dtype=dt_)
        qbf = q_bar.view(-1)
        q_ring = _Rows(sched, T, q, buf=q_bar)
        zeros = lambda: torch.zeros(N, device=dev, dtype=dt_)  # noqa: E731
        carry_Q = g_Qf.clone() if g_Qf is not None else zeros()  # gradient reaching Q(t) from step t+1
        carry_I2 = g_If.clone() if g_If is not None else zeros()  # gradient reaching I(t) from step t+1
        carry_S = g_Sf.clone() if (mc and g_Sf is not None) else zeros()  # gradient reaching S(t)
        I_bar = torch.zeros(N + 1, device=dev, dtype=dt_)  # total gradient of I at the last reverse step
        g_direct = g_ring = None
        if g_out is not None:
            if ctx.out_pos is None:
                g_ring = _Rows(sched, T, q)
            else:
                g_direct = torch.zeros(T, N, device=dev, dtype=dt_)
                g_direct[:, ctx.out_pos] = g_out
                g_direct = g_direct.view(-1)
        idx_buf = torch.empty(N, dtype=torch.long, device=dev)
        ridx_buf = torch.empty(N, dtype=torch.long, device=dev)
        bufs = [torch.empty(N, device=dev, dtype=dt_) for _ in range(6)]
        last_level = sched.n_levels - 1
        for d, _, _, a, b, _, _ in sched.diagonals(T, reverse=True):
            t_new = d - last_level
            if t_new >= 0:
                q_ring.load(q[t_new], t_new)
                if g_ring is not None:
                    g_ring.load(g_out[t_new], t_new)
            m = b - a
            Q_old_b, I_old_b, I_new_b, q_b, Qbar_b, tmp_b = (x[:m] for x in bufs)
            idx = torch.add(base[a:b], d * N, out=idx_buf[:m])  # sorted [T, N] index of step d - level
            qd = torch.index_select(qbf, 0, idx, out=q_b)
            Q_old = torch.index_select(hf, 0, idx, out=Q_old_b)  # row t (= step t-1, or the initial state)
            I_old = torch.index_select(ihf, 0, idx, out=I_old_b)
            Q_bar = torch.index_select(I_bar, 0, sched.down[a:b], out=Qbar_b).add_(carry_Q[a:b])
            if g_ring is not None:
                ridx = g_ring.index(base[a:b], d, ridx_buf[:m])
                Q_bar.add_(torch.index_select(g_ring.flat, 0, ridx, out=tmp_b))
            elif g_direct is not None:
                Q_bar.add_(torch.index_select(g_direct, 0, idx, out=tmp_b))
            idx.add_(N)
            I_new = torch.index_select(ihf, 0, idx, out=I_new_b)
            idx.sub_(N)
            Xs = (I_new, I_old, Q_old, qd)
            if step_fn is None:
                c1, c2, c3, c4 = (t[a:b] for t in theta_d)
                for j, X in enumerate(Xs):
                    th_bar[j][a:b].addcmul_(Q_bar, X)
                torch.addcmul(carry_I2[a:b], Q_bar, c1, out=I_bar[a:b])
                torch.mul(Q_bar, c3, out=carry_Q[a:b])
                torch.mul(Q_bar, c2, out=carry_I2[a:b])
                qbf.scatter_(0, idx, torch.mul(Q_bar, c4, out=tmp_b))
            else:
                n_first = int(b - sched.lstart[d]) if (d < sched.n_levels and not ctx.s0_given) else 0
                S_prev = shist.view(-1).index_select(0, idx)
                with torch.enable_grad():
                    ins = [x.detach().clone().requires_grad_(True) for x in (I_new, I_old, Q_old, S_prev, qd)]
                    th = [t[a:b].detach().clone().requires_grad_(True) for t in theta_d]
                    Q_new, S_new, _ = step_fn(dt, *ins, n_first, *th)
                    grads = torch.autograd.grad((Q_new, S_new), ins + th, (Q_bar, carry_S[a:b].clone()),
                                                allow_unused=True)
                g = [torch.zeros_like(x) if gx is None else gx for gx, x in zip(grads, ins + th)]
                I_bar[a:b] = g[0] + carry_I2[a:b]
                carry_I2[a:b] = g[1]
                carry_Q[a:b] = g[2]
                carry_S[a:b] = g[3]
                qbf.scatter_(0, idx, g[4])
                for j, gth in enumerate(g[5:]):
                    th_bar[j][a:b] += gth
            if d < T:
                q_bar[d].copy_(torch.index_select(q_bar[d], 0, sched.sorted_pos, out=bufs[0]))
        # what remains is the gradient w.r.t. the initial state (Q0, I0)
        g_S0 = carry_S if (mc and ctx.s0_given) else None
        return (q_bar, carry_Q, carry_I2, g_S0, None, None, None, None, None, None, *th_bar)


def run_wavefront(sched: Schedule, q: torch.Tensor, Q0: torch.Tensor, I0: torch.Tensor,
                  theta: Sequence[torch.Tensor], coeff_fn: CoeffFn | None = None,
                  out_pos: torch.Tensor | None = None, out_col: torch.Tensor | None = None,
                  keep_history: bool = False, dt: float = 0.0, S0: torch.Tensor | None = None,
                  conservative: bool = True):
    """Run the recursion over all steps (see :class:`_Wavefront`): q [T, N] in network order, the rest sorted.

    ``out_pos`` (ascending sorted positions) and ``out_col`` (their output columns) select the reaches
    written to the output; with ``out_pos=None`` the output is every reach, [T, N] in network order.
    """
    if out_col is None:
        out_col = torch.empty(0, dtype=torch.long, device=q.device)
    if coeff_fn is not None and not dt > 0:
        raise ValueError("flow-dependent routing needs the step dt (s)")
    if S0 is None:
        S0 = torch.full_like(Q0, float("nan"))
    step_fn = None if coeff_fn is None else partial(mc_step, coeff_fn, conservative)
    return _Wavefront.apply(q, Q0, I0, S0, sched, step_fn, out_pos, out_col, keep_history, dt, *theta)
