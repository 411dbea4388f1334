"""Losses at gauged reaches: 1 - NSE, 1 - KGE or relative L1, hourly or on daily means, after a warm-up, with
missing observations masked.

NSE: Nash & Sutcliffe (1970), J. Hydrol. 10; KGE: Gupta et al. (2009), J. Hydrol. 377 (both from the
differentiable :mod:`rivergraph.metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..metrics import kge, nse

__all__ = ["LossSpec", "gauge_loss", "LOSS_KINDS"]

LOSS_KINDS = ("nse", "kge", "l1")
"""Loss kinds :class:`LossSpec` accepts."""


@dataclass(frozen=True)
class LossSpec:
    """What the loss compares.

    kind: ``"nse"`` (mean over gauges of 1 - NSE, i.e. squared error normalised by each gauge's observed
        variance), ``"kge"`` (mean of 1 - KGE, Gupta et al. 2009) or ``"l1"`` (mean absolute error
        divided by each gauge's mean observed flow).
    aggregate: ``"hourly"`` (every forcing step) or ``"daily"`` (means over 24 h blocks counted from the first
        scored step; needs the forcing step to divide a day).
    warmup_steps: leading forcing steps discarded from the loss (spin-up of the routing state).
    NaN observations are masked; a daily block with any NaN observation is masked.
    """

    kind: Literal["nse", "kge", "l1"] = "nse"
    aggregate: Literal["hourly", "daily"] = "hourly"
    warmup_steps: int = 0

    def __post_init__(self):
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be 'nse', 'kge' or 'l1', got '{self.kind}'")
        if self.aggregate not in ("hourly", "daily"):
            raise ValueError(f"loss aggregate must be 'hourly' or 'daily', got '{self.aggregate}'")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")


def _daily(x: torch.Tensor, steps_per_day: int) -> torch.Tensor:
    """Means over complete blocks of ``steps_per_day`` rows; a block with any NaN observation is NaN."""
    T = (x.shape[0] // steps_per_day) * steps_per_day
    return x[:T].reshape(T // steps_per_day, steps_per_day, *x.shape[1:]).mean(1)


def _relative_l1(sim: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Per gauge: mean |sim - obs| / mean obs over valid observations (NaN for a gauge without any)."""
    m = ~torch.isnan(obs)
    o = torch.where(m, obs, torch.zeros_like(obs))
    err = torch.where(m, (sim - o).abs(), torch.zeros_like(sim)).sum(0)
    cnt = m.sum(0).clamp_min(1)
    per = (err / cnt) / (o.sum(0) / cnt).clamp_min(1e-6)
    return torch.where(m.sum(0) > 0, per, torch.full_like(per, float("nan")))


_PER_GAUGE = {"nse": lambda s, o: 1.0 - nse(s, o), "kge": lambda s, o: 1.0 - kge(s, o), "l1": _relative_l1}


def gauge_loss(sim: torch.Tensor, obs: torch.Tensor, spec: LossSpec, dt_s: float = 3600.0) -> torch.Tensor:
    """Scalar loss of sim vs obs [T, G] (m3/s) after warm-up; gauges without a usable score are skipped."""
    sim, obs = sim[spec.warmup_steps:], obs[spec.warmup_steps:]
    if spec.aggregate == "daily":
        spd = 86400.0 / dt_s
        if abs(spd - round(spd)) > 1e-9:
            raise ValueError(f"daily aggregation needs a forcing step that divides a day, got {dt_s} s")
        sim, obs = _daily(sim, int(round(spd))), _daily(obs, int(round(spd)))
    per = _PER_GAUGE[spec.kind](sim, obs)
    ok = ~torch.isnan(per)
    if not bool(ok.any()):
        raise ValueError("no gauge in this batch has a usable score (too few valid observations after warm-up?)")
    return per[ok].mean()
