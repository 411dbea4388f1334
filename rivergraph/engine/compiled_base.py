"""Shared pieces of the compiled (numba) CPU kernels: the jit decorator, the row permutations between the
user's reach order and the schedule's level order, and the Muskingum update of one reach (forward and its
vector-Jacobian product), written once for every compiled kernel (:mod:`rivergraph.engine.compiled_static`,
:mod:`rivergraph.engine.compiled_mc`).

The Muskingum update is that of :func:`rivergraph.physics.muskingum.mc_step` written with the storage weights
P = K X and R = K (1 - X) (s) instead of the four coefficients: with D = 2 R + dt,

    standard:      Q(t) = [(dt - 2P) I(t) + (dt + 2P) I(t-1) + (2R - dt) Q(t-1) + 2 dt q] / D
    conservative:  Q(t) = [(dt - 2P) I(t) + 2 dt q + 2 S(t-1) + dt (I(t-1) - Q(t-1))] / D

(c1 = (dt - 2P)/D, c2 = (dt + 2P)/D, c3 = (2R - dt)/D, c4 = 2 dt/D: Cunge 1969; RAPID, David et al. 2011,
eq. 4; the conservative form Todini 2007) and the storage S(t) = P I(t) + R Q(t). One division per
reach-step; the same values as the coefficient form to rounding.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def drop_stale_kernel_caches(here: Path = Path(__file__).parent) -> bool:
    """Delete numba's on-disk caches of the compiled kernels when any ``compiled*.py`` source changed; returns
    whether it did. numba keys a function's cache on its own file only, but the kernels inline helpers from
    other files (this one, ``compiled_math``, ``compiled_mc``): after a change to a helper alone a stale cache
    would run the old machine code (wrong results or a crash on changed array layouts). A digest of all kernel
    sources is kept beside the caches; a read-only install (its caches elsewhere, replaced on upgrade) is left
    alone."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("compiled*.py")))).hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "rivergraph_kernels.sha256"
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in [*cache.glob("compiled*.nbi"), *cache.glob("compiled*.nbc")]:
            f.unlink(missing_ok=True)
        tmp = cache / f".{stamp.name}.{os.getpid()}"
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:
        return False
    return True


try:  # numba is a dependency; without it (or on an exotic platform) the torch wavefront runs
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None
else:
    # LLVM's loop vectoriser gives up on a loop needing more than 128 runtime checks that its arrays do not
    # overlap (``-vectorize-memory-check-threshold``); the adjoints' per-level passes read and write ~20 arrays and
    # need more. A process-wide LLVM setting of numba's compiler: it changes which loops may be vectorised (the
    # cost model still decides), not what any code computes. Measured: the power law's adjoint pass vectorised,
    # 2x faster on the 300k tree.
    import llvmlite.binding as _llvm

    _llvm.set_option("rivergraph", "-vectorize-memory-check-threshold=1024")
    drop_stale_kernel_caches()

__all__ = ["numba", "jit", "jit_with", "inline", "prange", "kernel_threads", "send", "end_step", "read_row", "grad_row", "muskingum_update", "muskingum_update_vjp",
           "NO_GRAD", "as_numpy", "in_precision", "drop_stale_kernel_caches"]

NO_GRAD = 3
"""``g_mode`` of :func:`grad_row` when the output has no cotangent."""


def _identity(f):  # pragma: no cover - without numba nothing is compiled
    return f


# error_model="numpy": a float division by zero gives inf/nan instead of a Python ZeroDivisionError, so no
# test-and-branch per division (the kernels divide only by quantities bounded away from 0: celerity, 2R + dt, Qr)
_OPTS = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy", fastmath={"contract"})


def jit_with(**overrides):
    """numba's ``njit`` with the kernels' options (above) and ``overrides`` (e.g. ``fastmath=False``,
    ``inline="always"``); the identity without numba."""
    return numba.njit(**{**_OPTS, **overrides}) if numba is not None else _identity


jit = jit_with()
prange = numba.prange if numba is not None else range
"""The reach loop of a kernel compiled with ``parallel=True`` (independent reaches: mode "nwm"'s)."""


def kernel_threads() -> int:
    """Set, for the calling thread, how many threads the parallel kernels use: torch's (``torch.get_num_threads()``,
    so ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` bound both), at most numba's pool (``NUMBA_NUM_THREADS``);
    returns it."""
    import torch

    want = torch.get_num_threads()
    k = max(1, min(want, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(k)
    if torch.get_num_threads() != want:  # numba's first call starts its OpenMP pool, which resets torch's count
        torch.set_num_threads(want)
    return k


inline = jit_with(inline="always")
"""For the per-reach helpers called in the hot loops: inlined into the caller by numba (a call returning the
many intermediates of a reach-step through memory was ~2x slower)."""


@jit
def read_row(qt, order, row):  # pragma: no cover - compiled
    """row[k] = qt[order[k]]: one row of a [T, N] forcing from network order into level order (a loop of its
    own: independent loads the CPU overlaps, measured 1.3-2x faster than inside the recursion)."""
    for k in range(row.shape[0]):
        row[k] = qt[order[k]]


@inline
def send(Q, I_new, down, k, Qk):  # pragma: no cover - compiled
    """Q[k] = Qk, added to the inflow of reach k's downstream reach (down[k] = N: an outlet)."""
    Q[k] = Qk
    dk = down[k]
    if dk < Q.shape[0]:
        I_new[dk] += Qk


@jit
def end_step(ot, Q, I_old, I_new, order, out_pos, out_mode):  # pragma: no cover - compiled
    """Write step t's outflow Q (sorted order) to its output row (0: network order, 1: sorted, 2: the
    selected positions) and make this step's upstream inflow the next step's previous one."""
    N = Q.shape[0]
    if out_mode == 0:
        for k in range(N):
            ot[order[k]] = Q[k]
    elif out_mode == 1:
        for k in range(N):
            ot[k] = Q[k]
    else:
        for j in range(out_pos.shape[0]):
            ot[j] = Q[out_pos[j]]
    for k in range(N):
        I_old[k] = I_new[k]
        I_new[k] = 0.0


@jit
def grad_row(g, t, g_mode, g_col, order, grow):  # pragma: no cover - compiled
    """grow = the output cotangent of step t in level order: g_mode 0: g[t, order[k]], 1: g[t, k],
    2: g[t, j] added at the output positions g_col[j] (level order; zeros elsewhere), 3 (``NO_GRAD``): zeros."""
    N = grow.shape[0]
    if g_mode == 0:
        gt = g[t]
        for k in range(N):
            grow[k] = gt[order[k]]
    elif g_mode == 1:
        gt = g[t]
        for k in range(N):
            grow[k] = gt[k]
    else:
        for k in range(N):
            grow[k] = 0.0
        if g_mode == 2:
            gt = g[t]
            for j in range(g_col.shape[0]):
                grow[g_col[j]] += gt[j]


@inline
def muskingum_update(P, R, Ii, Io, Qo, Sp, ql, dt, conservative):  # pragma: no cover - compiled
    """(Q(t), S(t), 1/D) of one reach-step (module docstring) from the storage weights P = K X, R = K (1-X) (s),
    the inflows I(t) = Ii, I(t-1) = Io, the outflow Q(t-1) = Qo (m3/s), the storage S(t-1) = Sp (m3; read by
    the conservative form only) and the lateral inflow ql (m3/s)."""
    iD = 1.0 / (2.0 * R + dt)
    if conservative:
        Qn = ((dt - 2.0 * P) * Ii + 2.0 * dt * ql + 2.0 * Sp + dt * (Io - Qo)) * iD
    else:
        Qn = ((dt - 2.0 * P) * Ii + (dt + 2.0 * P) * Io + (2.0 * R - dt) * Qo + 2.0 * dt * ql) * iD
    return Qn, P * Ii + R * Qn, iD


@inline
def muskingum_update_vjp(Qn_bar, Sn_bar, Qn, iD, P, R, Ii, Io, Qo, dt, conservative):  # pragma: no cover
    """Vector-Jacobian product of :func:`muskingum_update` for the cotangents of Q(t), S(t): returns those of
    (P, R, Ii, Io, Qo, Sp, ql)."""
    Qt = Qn_bar + Sn_bar * R  # S(t) = P I(t) + R Q(t)
    P_bar = Sn_bar * Ii
    Ii_bar = Sn_bar * P
    Nb = Qt * iD  # Q(t) = num / D, D = 2R + dt
    R_bar = Sn_bar * Qn - 2.0 * Qt * Qn * iD
    Ii_bar += Nb * (dt - 2.0 * P)
    if conservative:
        P_bar -= 2.0 * Ii * Nb
        Io_bar = dt * Nb
        Qo_bar = -dt * Nb
        Sp_bar = 2.0 * Nb
    else:
        P_bar += 2.0 * Nb * (Io - Ii)
        R_bar += 2.0 * Nb * Qo
        Io_bar = Nb * (dt + 2.0 * P)
        Qo_bar = Nb * (2.0 * R - dt)
        Sp_bar = 0.0
    return P_bar, R_bar, Ii_bar, Io_bar, Qo_bar, Sp_bar, 2.0 * dt * Nb


def in_precision(arrays, dtype) -> tuple:
    """Per-reach parameter arrays as a kernel reads them: with float32 states (``dtype``) the float64 ones rounded to
    float32 (the precision the torch path computes in; half the memory a reach-step reads, measured ~5% faster on
    the 300k tree), else unchanged. The arithmetic stays float64 either way."""
    if dtype != np.float32:
        return tuple(arrays)
    return tuple(a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays)


def as_numpy(x) -> np.ndarray:
    """The numpy view of a (detached, CPU) tensor."""
    return x.detach().numpy()
