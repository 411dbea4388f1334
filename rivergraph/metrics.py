"""Hydrological skill scores as pure, differentiable torch functions.

Every function takes simulated and observed series with time on ``dim`` (default 0, i.e. ``[T]`` or
``[T, N]``) and reduces over that dimension. Observations may contain NaN (missing values); those time
steps are masked out per series, in a way that keeps gradients finite, so the functions can be used
as training losses (e.g. ``loss = 1 - nse(sim, obs).mean()``). A series with fewer than two valid
observations, or with constant observations (NSE), gives NaN. NaN in ``sim`` is *not* masked: it
propagates, so a broken simulation cannot score well.

References:
    Nash, J. E. and Sutcliffe, J. V. (1970): River flow forecasting through conceptual models part I,
    J. Hydrol. 10(3), 282-290.
    Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009): Decomposition of the mean
    squared error and NSE performance criteria, J. Hydrol. 377(1-2), 80-91.
"""
from __future__ import annotations

import torch

__all__ = ["nse", "kge", "kge_components"]


def _masked(sim: torch.Tensor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Broadcast, build the valid-observation mask and zero-fill missing observations (and the matching
    simulated values) so that masked entries contribute neither values nor NaN gradients."""
    sim = torch.as_tensor(sim)
    obs = torch.as_tensor(obs, dtype=sim.dtype, device=sim.device)
    sim, obs = torch.broadcast_tensors(sim, obs)
    mask = ~torch.isnan(obs)
    zero = torch.zeros((), dtype=sim.dtype, device=sim.device)
    return torch.where(mask, sim, zero), torch.where(mask, obs, zero), mask


def _nan_where(cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.where(cond, torch.full_like(x, float("nan")), x)


def nse(sim: torch.Tensor, obs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Nash-Sutcliffe efficiency, ``1 - sum((sim - obs)^2) / sum((obs - mean(obs))^2)``.

    Args:
        sim: simulated values (any units, same as ``obs``), e.g. ``[T]`` or ``[T, N]``.
        obs: observed values; NaN marks missing observations, which are ignored.
        dim: the time dimension, reduced over.

    Returns:
        NSE per series (1 is perfect, 0 equals the observed mean, unbounded below); NaN where fewer
        than two observations are valid or the observations are constant.
    """
    s, o, m = _masked(sim, obs)
    n = m.sum(dim=dim, keepdim=True).to(s.dtype)
    mean_o = o.sum(dim=dim, keepdim=True) / n.clamp_min(1)
    num = ((s - o) ** 2).sum(dim=dim)
    den = (torch.where(m, o - mean_o, torch.zeros_like(o)) ** 2).sum(dim=dim)
    bad = (n.squeeze(dim) < 2) | (den <= 0)
    out = 1.0 - num / torch.where(bad, torch.ones_like(den), den)
    return _nan_where(bad, out)


def kge_components(sim: torch.Tensor, obs: torch.Tensor, dim: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three KGE components over valid (non-NaN) observations: Pearson correlation ``r``,
    variability ratio ``alpha = std(sim) / std(obs)`` and bias ratio ``beta = mean(sim) / mean(obs)``."""
    s, o, m = _masked(sim, obs)
    n = m.sum(dim=dim, keepdim=True).to(s.dtype)
    nn_ = n.clamp_min(1)
    mean_s = s.sum(dim=dim, keepdim=True) / nn_
    mean_o = o.sum(dim=dim, keepdim=True) / nn_
    zero = torch.zeros_like(s)
    ds = torch.where(m, s - mean_s, zero)
    do = torch.where(m, o - mean_o, zero)
    var_s = (ds ** 2).sum(dim=dim)
    var_o = (do ** 2).sum(dim=dim)
    cov = (ds * do).sum(dim=dim)
    bad = (n.squeeze(dim) < 2) | (var_o <= 0) | (var_s <= 0)
    one = torch.ones_like(var_o)
    # sqrt of a clamped value keeps the gradient finite at zero variance (those entries are NaN anyway)
    std_s = torch.sqrt(torch.where(bad, one, var_s))
    std_o = torch.sqrt(torch.where(bad, one, var_o))
    r = _nan_where(bad, cov / (std_s * std_o))
    alpha = _nan_where(bad, std_s / std_o)
    mo = mean_o.squeeze(dim)
    beta = _nan_where(bad | (mo == 0), mean_s.squeeze(dim) / torch.where(mo == 0, one, mo))
    return r, alpha, beta


def kge(sim: torch.Tensor, obs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Kling-Gupta efficiency (Gupta et al. 2009),
    ``1 - sqrt((r - 1)^2 + (alpha - 1)^2 + (beta - 1)^2)``; see :func:`kge_components`.

    Args:
        sim: simulated values, e.g. ``[T]`` or ``[T, N]``.
        obs: observed values (same units); NaN marks missing observations, which are ignored.
        dim: the time dimension, reduced over.

    Returns:
        KGE per series (1 is perfect, unbounded below); NaN where fewer than two observations are
        valid or either series is constant (the correlation is undefined).
    """
    r, alpha, beta = kge_components(sim, obs, dim=dim)
    sq = (r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2
    pos = sq > 0  # keep the gradient finite at a perfect fit (d sqrt(x)/dx is infinite at 0)
    ed = torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    return _nan_where(torch.isnan(sq), 1.0 - ed)
