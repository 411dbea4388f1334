"""Training a ParameterNet on gauged discharge: training windows, validation gauges and period, :func:`train`.

Learning routing parameters from reach attributes through the differentiable router follows Tsai et al.
(2021, Nat. Commun. 12, "From calibration to parameter learning") and, for Muskingum-Cunge Manning's n,
dMC / DDR (Bindas et al. 2024, Water Resour. Res. 60). :func:`train` builds the gauge batches
(:mod:`rivergraph.training.batches`) and the items of :func:`rivergraph.training.fit` -- one per (batch,
training window) -- and its validation; the loop, data parallelism and checkpoints are ``fit``'s.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..graph.network import RiverNetwork
from ..models.params import ParameterNet
from .batches import GaugeBatch, batch_loss, make_batches, route_batch
from .losses import LossSpec, gauge_loss
from .partition import balance
from .trainer import TrainResult, fit, optimizer_step, rank_and_world

__all__ = ["Period", "train", "train_step"]


@dataclass(frozen=True)
class Period:
    """A time window of the forcing, in steps: rows ``start:stop`` are routed (from the steady state of row
    ``start``) and the loss is scored from ``score_from`` on (default ``start`` + the loss's warm-up)."""

    start: int
    stop: int
    score_from: int | None = None

    def check(self, T: int, name: str) -> None:
        if not 0 <= self.start < self.stop <= T:
            raise ValueError(f"{name} {self} must satisfy 0 <= start < stop <= {T} (forcing steps)")
        if self.score_from is not None and not self.start <= self.score_from < self.stop - 1:
            raise ValueError(f"{name} {self}: score_from must lie in [start, stop - 1)")

    def spec(self, spec: LossSpec) -> LossSpec:
        """The loss spec for this window (warm-up = score_from - start when given)."""
        return spec if self.score_from is None else replace(spec, warmup_steps=self.score_from - self.start)


def _obs_for(batch: GaugeBatch, gauges: np.ndarray, obs: torch.Tensor) -> torch.Tensor:
    return obs[:, np.searchsorted(gauges, batch.gauges)]


def _window_loss(model, batch, q_lat, obs_b, period: Period, spec: LossSpec, dt_s: float) -> torch.Tensor:
    sl = slice(period.start, period.stop)
    loss, _ = batch_loss(model, batch, q_lat[sl], obs_b[sl], period.spec(spec), dt_s)
    return loss


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: GaugeBatch, q_lat: torch.Tensor,
               obs: torch.Tensor, spec: LossSpec, clip: float | None = 1.0, dt_s: float = 3600.0) -> float:
    """One optimiser step on one batch (zero_grad, loss, backward, clip-by-norm, step); returns the loss.
    (The step :func:`fit` takes with ``items_per_step=1``, for custom loops.)"""
    params = [p for p in model.parameters() if p.requires_grad]
    (loss,) = optimizer_step(params, optimizer, [lambda: batch_loss(model, batch, q_lat, obs, spec, dt_s)[0]], 1, clip)
    return loss


def _validation(batches: list[GaugeBatch], gauges: np.ndarray, q_lat: torch.Tensor, obs: torch.Tensor,
                period: Period, spec: LossSpec, dt_s: float):
    """``validate(model)`` for :func:`fit`: the loss over all validation gauges at once in ``period``; under
    torch.distributed each rank routes a share of the batches and one all-reduce gathers the hydrographs."""
    q = q_lat[period.start:period.stop]
    o = obs[period.start:period.stop]
    vspec = period.spec(spec)

    def validate(model) -> float:
        rank, world = rank_and_world()
        mine = balance([len(b.reaches) for b in batches], world)[rank] if world > 1 else range(len(batches))
        sims = torch.zeros((q.shape[0], len(gauges)), dtype=q.dtype)
        for i in mine:
            b = batches[i]
            sims[:, np.searchsorted(gauges, b.gauges)] = route_batch(model, b, q).to(sims)
        if world > 1:
            dist.all_reduce(sims)
        return float(gauge_loss(sims, o, vspec, dt_s))
    return validate


def train(pnet: ParameterNet, net: RiverNetwork, q_lat: torch.Tensor, obs: torch.Tensor, gauges: Sequence[int], *,
          train_steps: int | None = None, periods: Sequence[Period] | None = None,
          val_period: Period | None = None, val_gauges: Sequence[int] | None = None,
          val_obs: torch.Tensor | None = None, epochs: int = 50, lr: float = 0.01, batch_size: int = 8,
          batches_per_step: int = 1, clip: float | None = 1.0, spec: LossSpec = LossSpec(), patience: int = 10,
          seed: int = 0, dt_s: float = 3600.0, fixed: Mapping | None = None, mode: str = "power_law",
          checkpoint: str | Path | None = None, resume: bool = True, progress: bool = True,
          batches: list[GaugeBatch] | None = None) -> TrainResult:
    """Train ``pnet`` (its scaler fitted) so routed discharge matches ``obs`` at ``gauges``; one process, or one
    rank of a torch.distributed run (call it on every rank with identical arguments).

    Args:
        q_lat: [T, N] lateral inflow (m3/s), network order.
        obs: [T, G] observed discharge (m3/s) at ``gauges`` (sorted positions), NaN = missing.
        train_steps: shorthand for a temporal split: ``periods = [Period(0, train_steps)]`` and, when rows are
            left, ``val_period = Period(0, T, score_from=train_steps)`` (routed continuously from the start,
            scored after the split).
        periods: training windows (default: the whole record); every optimiser step routes one batch over one
            window, scored after the loss's warm-up (``spec.warmup_steps``) or the window's ``score_from``.
        val_period: validation window (default: from ``train_steps``; else the whole record when
            ``val_gauges`` are given; else none: the training loss drives early stopping).
        val_gauges, val_obs: validation gauges (sorted positions, e.g. held-out basins for a spatial split) and
            their observations [T, G_val]; default: the training gauges.
        batch_size, batches_per_step: gauges per batch; batches per optimiser step (split across ranks).
        epochs, lr, clip, patience, seed, checkpoint, resume, progress: as :func:`fit`.
        fixed, mode, dt_s: non-learned routing parameters (scalars or [N] arrays), the router's channel mode
            and step (s).
    Returns:
        :class:`TrainResult`; the best-validation weights are loaded into ``pnet``.
    """
    gauges = np.asarray(gauges, dtype=np.int64)
    if np.any(np.diff(gauges) <= 0):
        raise ValueError("gauges must be sorted, unique reach positions")
    T = q_lat.shape[0]
    if obs.shape != (T, len(gauges)):
        raise ValueError(f"obs must be [T={T}, G={len(gauges)}], got {tuple(obs.shape)}")
    if train_steps is not None and (not 0 < train_steps <= T or train_steps <= spec.warmup_steps + 1):
        raise ValueError(f"train_steps ({train_steps}) must exceed the warm-up ({spec.warmup_steps}) and be <= {T}")
    if periods is None:
        periods = [Period(0, T if train_steps is None else train_steps)]
    for p in periods:
        p.check(T, "training period")
        if p.stop - p.start - p.spec(spec).warmup_steps < 2:
            raise ValueError(f"training period {p} leaves fewer than 2 scored steps after the warm-up")
    if val_period is None and train_steps is not None and train_steps < T:
        val_period = Period(0, T, score_from=train_steps)
    elif val_period is None and val_gauges is not None:
        val_period = Period(0, T)
    obs = obs.to(q_lat.dtype)
    w = next(pnet.parameters())
    batches = batches or make_batches(net, gauges, batch_size, pnet.scaler, fixed=fixed, dt=dt_s, mode=mode)
    for b in batches:  # features in the ParameterNet's dtype/device (e.g. float64 training)
        b.features = b.features.to(device=w.device, dtype=w.dtype)
    validate = None
    if val_period is not None:
        val_period.check(T, "validation period")
        if val_gauges is None:
            vg, vobs, vb = gauges, obs, batches
        else:
            vg = np.asarray(val_gauges, dtype=np.int64)
            if np.any(np.diff(vg) <= 0):
                raise ValueError("val_gauges must be sorted, unique reach positions")
            if val_obs is None or val_obs.shape != (T, len(vg)):
                raise ValueError(f"val_obs must be [T={T}, G={len(vg)}] for the validation gauges")
            vobs = val_obs.to(q_lat.dtype)
            vb = make_batches(net, vg, batch_size, pnet.scaler, fixed=fixed, dt=dt_s, mode=mode)
            for b in vb:
                b.features = b.features.to(device=w.device, dtype=w.dtype)
        validate = _validation(vb, vg, q_lat, vobs, val_period, spec, dt_s)
    items = [(bi, pi) for bi in range(len(batches)) for pi in range(len(periods))]
    obs_b = [_obs_for(b, gauges, obs) for b in batches]
    cost = [len(batches[bi].reaches) * (periods[pi].stop - periods[pi].start) for bi, pi in items]

    def loss_fn(model, item) -> torch.Tensor:
        bi, pi = item
        return _window_loss(model, batches[bi], q_lat, obs_b[bi], periods[pi], spec, dt_s)

    return fit(pnet, items, loss_fn, validate=validate, epochs=epochs, lr=lr, clip=clip, patience=patience,
               seed=seed, items_per_step=batches_per_step, cost=cost, checkpoint=checkpoint, resume=resume,
               progress=progress)
