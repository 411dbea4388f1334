"""Learning routing parameters from reach attributes through the differentiable router.

A :class:`~rivergraph.params.ParameterNet` maps normalised attributes to per-reach parameters (Manning's n,
optionally geometry); the :class:`~rivergraph.routing.MuskingumCunge` router turns lateral inflow into
discharge; the loss compares discharge at gauged reaches with observations (Tsai et al. 2021, Nat.
Commun. 12; Bindas et al. 2024, Water Resour. Res. 60, "dMC"/DDR).

Public pieces:
    :func:`make_batches`   fixed mini-batches of gauges, each with its upstream sub-network and a cached router
    :func:`batch_loss`     loss (and simulated gauges) of one batch for a model callable on features; one
                           rank's work under torch DDP (wrap the ParameterNet, call ``batch_loss`` per rank,
                           then ``loss.backward()``)
    :func:`train_step`     ``batch_loss`` + backward + clip + optimiser step
    :func:`train`          the epoch loop: Adam, gradient clipping, tqdm progress, validation-period early
                           stopping, an atomic checkpoint every epoch, exact resume
    :func:`storm_inflow`, :func:`twin_observations`, :func:`fit_power_law`: the synthetic twin experiment
"""
from __future__ import annotations

import argparse
import copy
import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ._atomic import atomic_path
from .metrics import kge, nse
from .network import NetworkError, RiverNetwork
from .params import ParameterNet
from .routing import MuskingumCunge

__all__ = ["LossSpec", "GaugeBatch", "make_batches", "gauge_loss", "batch_loss", "train_step", "train",
           "TrainResult", "route_gauges", "storm_inflow", "twin_law", "twin_observations", "fit_power_law",
           "local_area_km2", "load_checkpoint", "register_cli"]

MM_PER_H_KM2_TO_M3S = 1e-3 * 1e6 / 3600.0
"""1 mm/h of runoff over 1 km2 in m3/s (0.2778)."""


# ------------------------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class LossSpec:
    """What the loss compares.

    kind: ``"nse"`` (mean over gauges of 1 - NSE, i.e. squared error normalised by each gauge's observed
        variance), ``"kge"`` (mean of 1 - KGE, Gupta et al. 2009) or ``"l1"`` (mean absolute error
        divided by each gauge's mean observed flow).
    aggregate: ``"hourly"`` (every forcing step) or ``"daily"`` (means over 24 h blocks; needs the
        forcing step to divide a day).
    warmup_steps: leading forcing steps discarded from the loss (spin-up of the routing state).
    NaN observations are masked.
    """

    kind: Literal["nse", "kge", "l1"] = "nse"
    aggregate: Literal["hourly", "daily"] = "hourly"
    warmup_steps: int = 0

    def __post_init__(self):
        if self.kind not in ("nse", "kge", "l1"):
            raise ValueError(f"loss kind must be 'nse', 'kge' or 'l1', got '{self.kind}'")
        if self.aggregate not in ("hourly", "daily"):
            raise ValueError(f"loss aggregate must be 'hourly' or 'daily', got '{self.aggregate}'")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")


def _daily(x: torch.Tensor, steps_per_day: int) -> torch.Tensor:
    """Means over complete blocks of ``steps_per_day`` rows; a block with any NaN observation is NaN."""
    T = (x.shape[0] // steps_per_day) * steps_per_day
    return x[:T].reshape(T // steps_per_day, steps_per_day, *x.shape[1:]).mean(1)


def gauge_loss(sim: torch.Tensor, obs: torch.Tensor, spec: LossSpec, dt_s: float = 3600.0) -> torch.Tensor:
    """Scalar loss of sim vs obs [T, G] (m3/s) after warm-up; gauges without a usable score are skipped."""
    sim, obs = sim[spec.warmup_steps:], obs[spec.warmup_steps:]
    if spec.aggregate == "daily":
        spd = 86400.0 / dt_s
        if abs(spd - round(spd)) > 1e-9:
            raise ValueError(f"daily aggregation needs a forcing step that divides a day, got {dt_s} s")
        sim, obs = _daily(sim, int(round(spd))), _daily(obs, int(round(spd)))
    if spec.kind == "nse":
        per = 1.0 - nse(sim, obs)
    elif spec.kind == "kge":
        per = 1.0 - kge(sim, obs)
    else:
        m = ~torch.isnan(obs)
        o = torch.where(m, obs, torch.zeros_like(obs))
        err = torch.where(m, (sim - o).abs(), torch.zeros_like(sim)).sum(0)
        cnt = m.sum(0).clamp_min(1)
        per = (err / cnt) / (o.sum(0) / cnt).clamp_min(1e-6)
        per = torch.where(m.sum(0) > 0, per, torch.full_like(per, float("nan")))
    ok = ~torch.isnan(per)
    if not bool(ok.any()):
        raise ValueError("no gauge in this batch has a usable score (too few valid observations after warm-up?)")
    return per[ok].mean()


# ------------------------------------------------------------------------------------------ batches
@dataclass
class GaugeBatch:
    """A mini-batch of gauges: ``gauges`` (positions in the full network), ``reaches`` (full-network positions of
    the upstream sub-network, sorted), ``outputs`` (gauge positions inside it), its cached ``router`` and
    normalised ``features`` [n_reaches, F]; ``fixed`` holds non-learned routing parameters (sub-network)."""

    gauges: np.ndarray
    reaches: np.ndarray
    outputs: np.ndarray
    router: MuskingumCunge
    features: torch.Tensor
    fixed: dict = field(default_factory=dict)


def make_batches(net: RiverNetwork, gauges: Sequence[int], batch_size: int, scaler, *, fixed: Mapping | None = None,
                 dt: float = 3600.0, mode: str = "power_law", device: str = "cpu") -> list[GaugeBatch]:
    """Split gauge positions into batches of nested, similar-sized basins (sorted by upstream size), each routed
    on its own upstream sub-network by a router built once here. ``fixed``: name -> scalar or [N] array of
    routing parameters that are not learned (full-network order)."""
    gauges = np.asarray(gauges, dtype=np.int64)
    if len(gauges) == 0:
        raise ValueError("no gauged reaches to train on")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    sizes = np.array([net.upstream_mask([g]).sum() for g in gauges])
    order = gauges[np.argsort(-sizes, kind="stable")]
    feats = scaler.transform(net)
    out = []
    for s in range(0, len(order), batch_size):
        g = np.sort(order[s:s + batch_size])
        reaches, router, fx = _upstream_router(net, g, fixed, dt, mode, device)
        out.append(GaugeBatch(g, reaches, np.searchsorted(reaches, g), router,
                              feats[torch.from_numpy(reaches)].to(device), fx))
    return out


def _upstream_router(net: RiverNetwork, gauges: np.ndarray, fixed: Mapping | None, dt: float, mode: str,
                     device: str = "cpu") -> tuple[np.ndarray, MuskingumCunge, dict]:
    """Positions of the reaches upstream of ``gauges`` (ascending), a router on that sub-network, and the
    ``fixed`` parameters restricted to it (float64 tensors; scalars stay scalars)."""
    reaches = np.flatnonzero(net.upstream_mask(gauges))
    sub = net.subset(np.isin(np.arange(len(net)), reaches))
    fx = {}
    for k, v in (fixed or {}).items():
        t = torch.as_tensor(np.asarray(v, dtype=np.float64))
        fx[k] = t if t.ndim == 0 else t[torch.from_numpy(reaches)]
    return reaches, MuskingumCunge(sub, dt=dt, mode=mode, device=device), fx


def _route(model: Callable, batch: GaugeBatch, q_lat: torch.Tensor) -> torch.Tensor:
    params = dict(batch.fixed)
    params.update(model(batch.features))
    q = q_lat[:, torch.from_numpy(batch.reaches).to(q_lat.device)]
    return batch.router(q, outputs=batch.outputs, balance=False, **params)


def batch_loss(model: Callable, batch: GaugeBatch, q_lat: torch.Tensor, obs: torch.Tensor, spec: LossSpec,
               dt_s: float = 3600.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch and the simulated discharge at its gauges [T, G] (m3/s).

    Args:
        model: features [n, F] -> {name: [n] parameter} (a ParameterNet, or one wrapped in DDP).
        q_lat: [T, N] lateral inflow of the full network (m3/s).
        obs: [T, len(batch.gauges)] observed discharge (m3/s) at this batch's gauges, NaN = missing.
    """
    sim = _route(model, batch, q_lat)
    return gauge_loss(sim, obs, spec, dt_s), sim


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: GaugeBatch, q_lat: torch.Tensor,
               obs: torch.Tensor, spec: LossSpec, clip: float | None = 1.0, dt_s: float = 3600.0) -> float:
    """One optimiser step on one batch (zero_grad, loss, backward, clip-by-norm, step); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss, _ = batch_loss(model, batch, q_lat, obs, spec, dt_s)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


# -------------------------------------------------------------------------------------------- train
@dataclass
class TrainResult:
    """Outcome of :func:`train`: the best-validation model is loaded into the ParameterNet."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list
    stopped_early: bool
    wall_s: float


def _obs_for(batch: GaugeBatch, gauges: np.ndarray, obs: torch.Tensor) -> torch.Tensor:
    return obs[:, np.searchsorted(gauges, batch.gauges)]


@torch.no_grad()
def _evaluate(model, batches, gauges, q_lat, obs, spec, dt_s, start: int) -> tuple[float, torch.Tensor]:
    sims = torch.full((q_lat.shape[0], len(gauges)), float("nan"), dtype=q_lat.dtype)
    for b in batches:
        sims[:, np.searchsorted(gauges, b.gauges)] = _route(model, b, q_lat).to(sims)
    vspec = LossSpec(spec.kind, spec.aggregate, start)
    return float(gauge_loss(sims, obs, vspec, dt_s)), sims


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint (a dict with ``param_net`` config, ``model`` state dict, ``epoch``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "param_net" not in ck:
        raise ValueError(f"{path} is not a rivergraph training checkpoint")
    return ck


def train(pnet: ParameterNet, net: RiverNetwork, q_lat: torch.Tensor, obs: torch.Tensor, gauges: Sequence[int], *,
          train_steps: int, epochs: int = 50, lr: float = 0.01, batch_size: int = 8, clip: float | None = 1.0,
          spec: LossSpec = LossSpec(), patience: int = 10, seed: int = 0, dt_s: float = 3600.0,
          fixed: Mapping | None = None, mode: str = "power_law", checkpoint: str | Path | None = None,
          resume: bool = True, progress: bool = True, batches: list[GaugeBatch] | None = None) -> TrainResult:
    """Train ``pnet`` (its scaler fitted on ``net``) so routed discharge matches ``obs`` at ``gauges``.

    Args:
        q_lat: [T, N] lateral inflow (m3/s), network order; the first ``train_steps`` rows are the training
            period, the rest the validation period (routed continuously from the start, scored after
            ``train_steps``; with no rows left, the training loss is used for early stopping).
        obs: [T, G] observed discharge (m3/s) at ``gauges`` (sorted positions), NaN = missing.
        epochs, lr, batch_size, clip, patience: Adam epochs and learning rate, gauges per batch, gradient
            norm clip, epochs without validation improvement before stopping.
        seed: seeds the model initialisation is *not* done here (build pnet after ``torch.manual_seed``);
            it fixes the batch order of every epoch, so a resumed run repeats the uninterrupted one exactly.
        checkpoint: file written atomically after every epoch; with ``resume`` an existing one is continued.
    Returns:
        :class:`TrainResult`; the best-validation weights are loaded into ``pnet``.
    """
    from tqdm.auto import tqdm

    gauges = np.asarray(gauges, dtype=np.int64)
    if np.any(np.diff(gauges) <= 0):
        raise ValueError("gauges must be sorted, unique reach positions")
    T = q_lat.shape[0]
    if obs.shape != (T, len(gauges)):
        raise ValueError(f"obs must be [T={T}, G={len(gauges)}], got {tuple(obs.shape)}")
    if not 0 < train_steps <= T or train_steps <= spec.warmup_steps + 1:
        raise ValueError(f"train_steps ({train_steps}) must exceed the warm-up ({spec.warmup_steps}) and be <= {T}")
    obs = obs.to(q_lat.dtype)
    batches = batches or make_batches(net, gauges, batch_size, pnet.scaler, fixed=fixed, dt=dt_s, mode=mode)
    q_train, obs_train = q_lat[:train_steps], obs[:train_steps]
    has_val = T > train_steps
    opt = torch.optim.Adam(pnet.parameters(), lr=lr)
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "best_model": None, "bad": 0, "history": [],
             "stopped": False, "wall_s": 0.0}
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        ck = load_checkpoint(checkpoint)
        if ck.get("seed") != seed:
            raise ValueError(f"checkpoint {checkpoint} was written with seed {ck.get('seed')}, not {seed}; "
                             "delete it or set resume: false")
        pnet.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state.update({k: ck[k] for k in state})
    t0 = _time.perf_counter() - state["wall_s"]
    bar = tqdm(total=epochs, initial=state["epoch"], disable=not progress, desc="train", unit="epoch")
    while state["epoch"] < epochs and not state["stopped"]:
        ep = state["epoch"] + 1
        rng = np.random.default_rng([seed, ep])
        losses = []
        pnet.train()
        for bi in rng.permutation(len(batches)):
            b = batches[bi]
            losses.append(train_step(pnet, opt, b, q_train, _obs_for(b, gauges, obs_train), spec, clip, dt_s))
            bar.set_postfix(batch_loss=f"{losses[-1]:.4f}")
        pnet.eval()
        train_loss = float(np.mean(losses))
        if has_val:
            val_loss, _ = _evaluate(pnet, batches, gauges, q_lat, obs, spec, dt_s, train_steps)
        else:
            val_loss = train_loss
        rec = {"epoch": ep, "train_loss": train_loss, "val_loss": val_loss}
        if val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_epoch=ep, bad=0,
                         best_model=copy.deepcopy(pnet.state_dict()))
        else:
            state["bad"] += 1
            state["stopped"] = state["bad"] >= patience
        state["history"].append(rec)
        state["epoch"] = ep
        state["wall_s"] = _time.perf_counter() - t0
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"param_net": pnet.config(), "model": pnet.state_dict(), "optimizer": opt.state_dict(),
                            "seed": seed, **state}, tmp)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{state['best_val']:.4f}")
        bar.update(1)
    bar.close()
    if state["best_model"] is not None:
        pnet.load_state_dict(state["best_model"])
    return TrainResult(state["epoch"], state["best_epoch"], state["best_val"], state["history"], state["stopped"],
                       state["wall_s"])


@torch.no_grad()
def route_gauges(model: Callable, net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], *,
                 fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law",
                 batch_size: int = 64, batches=None, scaler=None) -> torch.Tensor:
    """Discharge [T, G] (m3/s) at gauge positions with the model's parameters (no gradients)."""
    gauges = np.asarray(gauges, dtype=np.int64)
    batches = batches or make_batches(net, gauges, batch_size, scaler if scaler is not None else model.scaler,
                                      fixed=fixed, dt=dt_s, mode=mode)
    out = torch.full((q_lat.shape[0], len(gauges)), float("nan"), dtype=q_lat.dtype)
    for b in batches:
        out[:, np.searchsorted(gauges, b.gauges)] = _route(model, b, q_lat).to(out)
    return out


# ---------------------------------------------------------------------------------- synthetic twin
def local_area_km2(net: RiverNetwork) -> np.ndarray:
    """Local (incremental) catchment area per reach (km2): ``catchment_area_km2`` if present, else drainage area
    minus the drainage area of the reaches flowing in, clipped at 0 (inverted NWM areas are not always
    monotone downstream)."""
    if "catchment_area_km2" in net.attrs:
        return np.clip(net.attr("catchment_area_km2"), 0.0, None)
    A = net.attr("drainage_area_km2")
    up = np.zeros(len(net))
    src = np.flatnonzero(net.downstream >= 0)
    np.add.at(up, net.downstream[src], A[src])
    return np.clip(A - up, 0.0, None)


def storm_inflow(net: RiverNetwork, hours: int, *, base: np.ndarray | None = None, seed: int = 0,
                 storms_per_week: float = 2.0, mean_depth_mm: float = 15.0, mean_duration_h: float = 8.0,
                 radius_km: tuple[float, float] = (40.0, 150.0), response_h: float = 3.0, quiet_h: int = 48,
                 dt_s: float = 3600.0) -> torch.Tensor:
    """A stochastic storm sequence as lateral inflow [hours, N] (m3/s), float64.

    Storms arrive as a Poisson process (``storms_per_week``), none in the first ``quiet_h`` hours (spin-up);
    each has a centre uniform over the reaches' lat/lon box, a Gaussian footprint of radius uniform in
    ``radius_km``, a duration exponential with mean ``mean_duration_h`` and a runoff depth at its centre
    exponential with mean ``mean_depth_mm``. Runoff (mm/h) passes a linear-reservoir catchment response (time
    constant ``response_h``) and enters each reach over its local area (:func:`local_area_km2`):
    q = runoff * area * 0.2778 m3/s per (mm/h km2). ``base`` ([N] m3/s, e.g. the NWM q_lateral time mean) is
    added every hour. Needs ``lat``/``lon`` columns.
    """
    if hours < 1:
        raise ValueError("hours must be >= 1")
    rng = np.random.default_rng(seed)
    lat, lon = net.attr("lat"), net.attr("lon")
    area = local_area_km2(net)
    km_lat, km_lon = 111.2, 111.2 * np.cos(np.deg2rad(lat.mean()))
    rain = np.zeros((hours, len(net)))
    t = float(quiet_h)
    while True:
        t += rng.exponential(168.0 / storms_per_week)
        if t >= hours:
            break
        c_lat, c_lon = rng.uniform(lat.min(), lat.max()), rng.uniform(lon.min(), lon.max())
        r = rng.uniform(*radius_km)
        dur = max(1, int(round(rng.exponential(mean_duration_h))))
        depth = rng.exponential(mean_depth_mm)
        d2 = ((lat - c_lat) * km_lat) ** 2 + ((lon - c_lon) * km_lon) ** 2
        foot = np.exp(-0.5 * d2 / r ** 2)
        t0 = int(t)
        rain[t0:t0 + dur] += (depth / dur) * foot
    # linear reservoir: dS/dt = rain - S/k, outflow S/k (exact discretisation for constant rain over an hour)
    a = math.exp(-dt_s / 3600.0 / response_h)
    runoff = np.empty_like(rain)
    out = np.zeros(len(net))
    for i in range(hours):
        out = a * out + (1.0 - a) * rain[i]
        runoff[i] = out
    q = runoff * (area * MM_PER_H_KM2_TO_M3S)
    if base is not None:
        base = np.asarray(base, dtype=np.float64)
        if base.shape != (len(net),) or not np.isfinite(base).all() or (base < 0).any():
            raise ValueError(f"base inflow must be [{len(net)}] finite and >= 0 (m3/s)")
        q += base
    return torch.from_numpy(q)


def twin_law(net: RiverNetwork, prefactor: float = 0.0915, exponent: float = -0.131) -> np.ndarray:
    """The 'true' Manning's n of the twin: n = prefactor * A^exponent, A = drainage area (km2), clipped to the
    router's bounds (Bindas et al. 2024 used 0.0915 A^-0.131)."""
    from .routing import BOUNDS

    return np.clip(prefactor * net.attr("drainage_area_km2") ** exponent, *BOUNDS["n"])


@torch.no_grad()
def twin_observations(net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], n_true: np.ndarray, *,
                      fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law",
                      noise: float = 0.0, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Synthetic observations [T, G] (m3/s): discharge at ``gauges`` routed with ``n_true``, times lognormal
    noise exp(noise * N(0, 1)) when ``noise`` > 0."""
    from .params import AttributeScaler

    class _Const(torch.nn.Module):
        def forward(self, feats):
            return {"n": feats[:, 0]}

    truth = net.attrs.assign(n_true=np.asarray(n_true, dtype=np.float64))
    sc = AttributeScaler(["n_true"], log_columns=[])
    sc.fitted = True  # identity scaling: the feature is n itself
    tnet = RiverNetwork(net.ids, net.downstream, truth)
    batches = make_batches(tnet, gauges, batch_size, sc, fixed=fixed, dt=dt_s, mode=mode)
    for b in batches:  # route with n in the dtype of the forcing
        b.features = b.features.to(q_lat.dtype)
    Q = route_gauges(_Const(), tnet, q_lat, gauges, batches=batches)
    if noise > 0:
        g = torch.Generator().manual_seed(seed)
        Q = Q * torch.exp(noise * torch.randn(Q.shape, generator=g, dtype=Q.dtype))
    return Q


def fit_power_law(area_km2: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log n = log a + b log A; returns (prefactor a, exponent b)."""
    A, n = np.asarray(area_km2, dtype=np.float64), np.asarray(n, dtype=np.float64)
    ok = (A > 0) & (n > 0) & np.isfinite(A) & np.isfinite(n)
    if ok.sum() < 2:
        raise ValueError("need at least two reaches with positive area and n to fit a power law")
    b, loga = np.polyfit(np.log(A[ok]), np.log(n[ok]), 1)
    return float(math.exp(loga)), float(b)


def n_sensitivity(net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], n: np.ndarray, *,
                  fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law", probes: int = 16,
                  seed: int = 0) -> np.ndarray:
    """How much each reach's Manning's n shows in the gauge hydrographs: diag(J^T J), J = d(Q_g(t) / sd_g) /
    d(log n_i), Q routed in float64 with ``n`` (and ``fixed``) over the reaches upstream of ``gauges``.

    Estimated with ``probes`` Rademacher vectors v (Hutchinson 1989: E[(J^T v)_i^2] = (J^T J)_ii), one backward
    pass each. Zero for reaches no gauge sees. A reach whose value is a small fraction of the median hardly
    changes any gauge's hydrograph: its n is not identifiable from these gauges (typically short headwater
    reaches whose Muskingum K is far below the time step).
    """
    gauges = np.asarray(gauges, dtype=np.int64)
    keep, router, params = _upstream_router(net, gauges, fixed, dt_s, mode)
    logn = torch.log(torch.as_tensor(np.asarray(n, dtype=np.float64)[keep])).requires_grad_()
    Q = router(q_lat.double()[:, torch.from_numpy(keep)], outputs=np.searchsorted(keep, gauges), n=logn.exp(),
               **params)
    Q = Q / Q.detach().std(0, keepdim=True).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    J = torch.zeros(len(keep), dtype=torch.float64)
    for i in range(probes):
        v = torch.randint(0, 2, Q.shape, generator=gen).to(Q) * 2 - 1
        (g,) = torch.autograd.grad(Q, logn, v, retain_graph=i < probes - 1)
        J += g.square() / probes
    out = np.zeros(len(net))
    out[keep] = J.numpy()
    return out


def identifiable_reaches(sensitivity: np.ndarray, mask: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Reaches in ``mask`` whose :func:`n_sensitivity` is at least ``fraction`` of the median over ``mask``
    (0.01 of the Fisher information = 10% of the median sensitivity amplitude)."""
    return mask & (sensitivity >= fraction * np.median(sensitivity[mask]))


# ----------------------------------------------------------------------------------------------- CLI
def register_cli(subparsers) -> None:
    """Add the ``train`` and ``route`` subcommands."""
    p = subparsers.add_parser("train", help="train a parameter network through the router",
                              description="Train a parameter network (attributes -> Manning's n ...) through the "
                                          "Muskingum-Cunge router against gauges, as set in CONFIG.yaml.")
    p.add_argument("config", help="YAML configuration file (see docs/training.md)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.set_defaults(func=_cmd_train)
    r = subparsers.add_parser("route", help="route lateral inflow with trained parameters",
                              description="Route the configured lateral inflow with the parameters of a trained "
                                          "checkpoint; writes discharge at every reach (NetCDF) and at gauges (CSV).")
    r.add_argument("config", help="YAML configuration file (the one used for training)")
    r.add_argument("--checkpoint", default=None, help="checkpoint to use (default: output.dir/checkpoint.pt)")
    r.set_defaults(func=_cmd_route)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
    return run_training(cfg, resume=not args.no_resume)


def _cmd_route(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg = load_config(args.config)
    return run_routing(cfg, checkpoint=args.checkpoint)


# ------------------------------------------------------------------------------ config-driven runs
def _load_inputs(cfg):
    """(net, q_lat [T, N] float32, times, base [N] or None) for a :class:`~rivergraph.config.Config`."""
    from .datasets import load_lower_colorado
    from .io import read_network

    data = None
    if cfg.network == "lower_colorado":
        net, data = load_lower_colorado()
    else:
        net = read_network(cfg.network)
    src = cfg.forcing.source
    if src == "lower_colorado":
        q, times = data["q_lateral"].double(), data["time"]
    elif src == "synthetic_storms":
        s = cfg.forcing.storms
        base = None if data is None else data["q_lateral"].double().mean(0).numpy()
        q = storm_inflow(net, s.hours, base=base, seed=s.seed, storms_per_week=s.storms_per_week,
                         mean_depth_mm=s.mean_depth_mm, mean_duration_h=s.mean_duration_h,
                         radius_km=tuple(s.radius_km), response_h=s.response_h, quiet_h=s.quiet_h,
                         dt_s=cfg.routing.dt_s)
        times = pd.date_range(pd.Timestamp(s.start), periods=s.hours, freq=pd.Timedelta(seconds=cfg.routing.dt_s))
    else:
        with np.load(src, allow_pickle=False) as z:
            missing = [k for k in ("q_lateral", "reach_ids", "time") if k not in z]
            if missing:
                raise ValueError(f"forcing file {src} lacks array(s) {missing}")
            cols = net.positions(z["reach_ids"].tolist())
            if len(cols) != len(net):
                raise NetworkError(f"forcing file {src} has {len(cols)} reaches, the network {len(net)}")
            q = torch.zeros(z["q_lateral"].shape[0], len(net), dtype=torch.float64)
            q[:, torch.from_numpy(cols)] = torch.from_numpy(np.asarray(z["q_lateral"], dtype=np.float64))
            times = pd.DatetimeIndex(pd.to_datetime(z["time"], utc=True))
    if len(times) != q.shape[0]:
        raise ValueError(f"forcing has {q.shape[0]} rows but {len(times)} times")
    return net, q.float(), times


def _fixed_params(cfg, net: RiverNetwork) -> dict:
    out = {}
    for k, v in cfg.routing.fixed.items():
        if isinstance(v, str):
            if v not in net.attrs:
                raise NetworkError(f"routing.fixed.{k}: network has no column '{v}'")
            out[k] = net.attr(v)
        else:
            out[k] = float(v)
    return out


def _select_gauges(cfg, net: RiverNetwork) -> tuple[np.ndarray, np.ndarray]:
    """Sorted gauge positions and their ids."""
    g = net.gauges()
    if cfg.gauges.ids is not None:
        want = [str(x) for x in cfg.gauges.ids]
        unknown = sorted(set(want) - set(g.to_numpy()))
        if unknown:
            raise NetworkError(f"gauges.ids not on any reach of the network: {unknown[:10]}")
        g = g[g.isin(want)]
    pos = np.sort(g.index.to_numpy().astype(np.int64))
    if cfg.gauges.max_upstream_reaches is not None:
        pos = np.array([p for p in pos if net.upstream_mask([p]).sum() <= cfg.gauges.max_upstream_reaches],
                       dtype=np.int64)
    if len(pos) == 0:
        raise ValueError("no gauges selected (check gauges.ids / gauges.max_upstream_reaches)")
    return pos, g.loc[pos].to_numpy().astype(str)


def _observations(cfg, net, q, times, gauges, gauge_ids, fixed):
    """(obs [T, G] float32, n_true [N] or None)."""
    src = cfg.observations.source
    if src == "twin":
        tw = cfg.observations.twin
        n_true = twin_law(net, tw.prefactor, tw.exponent)
        obs = twin_observations(net, q, gauges, n_true, fixed=fixed, dt_s=cfg.routing.dt_s, mode=cfg.routing.mode,
                                noise=tw.noise, seed=tw.seed)
        return obs.float(), n_true
    df = pd.read_csv(src, dtype={"gage": str})
    missing = {"time", "gage", "discharge_m3s"} - set(df.columns)
    if missing:
        raise ValueError(f"observations file {src} lacks column(s) {sorted(missing)}")
    df["time"] = pd.to_datetime(df["time"], utc=True)
    if "quality" in df:
        df.loc[df["quality"] == 0, "discharge_m3s"] = np.nan
    tab = df.pivot_table(index="time", columns="gage", values="discharge_m3s", aggfunc="mean")
    tab = tab.reindex(index=times.tz_convert("UTC") if times.tz is not None else times.tz_localize("UTC"),
                      columns=gauge_ids)
    return torch.tensor(tab.to_numpy(dtype=np.float32)), None


def _build_pnet(cfg) -> ParameterNet:
    from .params import OutputSpec

    torch.manual_seed(cfg.training.seed)
    outs = {k: OutputSpec(v.lo, v.hi, v.scaling, v.init) for k, v in cfg.model.outputs.items()}
    return ParameterNet(outs, cfg.model.attributes, cfg.model.log_columns, cfg.model.hidden)


def _per_gauge_scores(sim, obs, start) -> pd.DataFrame:
    s, o = sim[start:], obs[start:]
    return pd.DataFrame({"nse": nse(s, o).numpy(), "kge": kge(s, o).numpy()})


def run_training(cfg, resume: bool = True, progress: bool = True) -> int:
    """``rivergraph train``: load inputs per config, train, write parameters / plots / scores; returns 0."""
    t0 = _time.perf_counter()
    net, q, times = _load_inputs(cfg)
    fixed = _fixed_params(cfg, net)
    gauges, gauge_ids = _select_gauges(cfg, net)
    obs, n_true = _observations(cfg, net, q, times, gauges, gauge_ids, fixed)
    pnet = _build_pnet(cfg)
    pnet.scaler.fit(net)
    tr = cfg.training
    train_steps = max(2, int(round(tr.train_fraction * q.shape[0])))
    warm = int(round(tr.warmup_hours * 3600.0 / cfg.routing.dt_s))
    spec = LossSpec(tr.loss, tr.aggregate, warm)
    res = train(pnet, net, q, obs, gauges, train_steps=train_steps, epochs=tr.epochs, lr=tr.lr,
                batch_size=tr.batch_size, clip=tr.clip, spec=spec, patience=tr.patience, seed=tr.seed,
                dt_s=cfg.routing.dt_s, fixed=fixed, mode=cfg.routing.mode, checkpoint=cfg.checkpoint_path,
                resume=resume, progress=progress)
    summary = write_outputs(cfg, net, pnet, q, times, obs, gauges, gauge_ids, fixed, n_true, train_steps, res)
    print(summary + f"\nwall time {_time.perf_counter() - t0:.1f} s; outputs in {cfg.output.dir}")
    return 0


def run_routing(cfg, checkpoint: str | Path | None = None) -> int:
    """``rivergraph route``: route the configured forcing with a trained checkpoint's parameters."""
    ck = load_checkpoint(checkpoint or cfg.checkpoint_path)
    pnet = ParameterNet.from_config(ck["param_net"])
    pnet.load_state_dict(ck["best_model"] or ck["model"])
    net, q, times = _load_inputs(cfg)
    print(write_routing(cfg, net, pnet, q, times, _fixed_params(cfg, net)))
    return 0


# ----------------------------------------------------------------------------------------- outputs
def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_parameters(net: RiverNetwork, params: Mapping[str, np.ndarray], path_stem: Path,
                     extra: Mapping[str, np.ndarray] | None = None) -> Path:
    """Learned parameters per reach joined to reach ids: a GeoPackage (layer ``parameters``) when the network has
    geometry, else CSV; written atomically. Returns the path written."""
    df = pd.DataFrame({"reach_id": net.ids})
    for c in ("drainage_area_km2", "gage"):
        if c in net.attrs:
            df[c] = net.attrs[c].to_numpy()
    for k, v in {**params, **(extra or {})}.items():
        df[k] = np.asarray(v)
    if net.geometry is not None:
        import geopandas as gpd

        path = path_stem.with_suffix(".gpkg")
        gdf = gpd.GeoDataFrame(df, geometry=list(net.geometry), crs=getattr(net.geometry, "crs", None))
        with atomic_path(path) as tmp:
            gdf.to_file(tmp, driver="GPKG", layer="parameters")
        return path
    path = path_stem.with_suffix(".csv")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def plot_n_vs_area(area_km2, n, mask, fit, path: Path, truth: tuple[float, float] | None = None) -> None:
    """Scatter of learned n vs drainage area (reaches in ``mask`` highlighted) with the fitted power law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(area_km2[~mask], n[~mask], s=2, c="0.75", label="other reaches")
    ax.scatter(area_km2[mask], n[mask], s=3, c="C0", label="upstream of training gauges")
    a = np.logspace(np.log10(max(area_km2.min(), 1e-3)), np.log10(area_km2.max()), 100)
    ax.plot(a, fit[0] * a ** fit[1], "C3", label=f"fit n = {fit[0]:.4f} A^{fit[1]:.3f}")
    if truth is not None:
        ax.plot(a, truth[0] * a ** truth[1], "k--", label=f"truth n = {truth[0]:.4f} A^{truth[1]:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="drainage area A (km2)", ylabel="Manning's n (s m^-1/3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_hydrographs(times, sim, obs, names, path: Path, split: int | None = None, max_panels: int = 12) -> None:
    """Observed vs simulated discharge (m3/s) at up to ``max_panels`` gauges (largest mean flow first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim, obs = np.asarray(sim), np.asarray(obs)
    with np.errstate(all="ignore"):
        order = np.argsort(-np.nan_to_num(np.nanmean(obs, 0), nan=-1))[:max_panels]
    k = len(order)
    ncol = min(3, k)
    nrow = int(math.ceil(k / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.6 * nrow), squeeze=False, sharex=True)
    for ax, j in zip(axes.flat, order):
        ax.plot(times, obs[:, j], "k", lw=1, label="observed")
        ax.plot(times, sim[:, j], "C0", lw=1, label="simulated")
        if split is not None and split < len(times):
            ax.axvline(times[split], color="C3", lw=0.8, ls=":")
        ax.set_title(str(names[j]), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    axes.flat[0].set_ylabel("Q (m3/s)")
    fig.autofmt_xdate()
    fig.tight_layout()
    _save_fig(fig, path)


def write_outputs(cfg, net, pnet, q, times, obs, gauges, gauge_ids, fixed, n_true, train_steps, res) -> str:
    """Parameters (GPKG/CSV), n-vs-area plot, hydrographs, per-gauge scores and a JSON summary; returns a summary."""
    import json

    out = Path(cfg.output.dir)
    with torch.no_grad():
        params = {k: v.double().numpy() for k, v in pnet.parameters_for(net).items()}
    upstream = net.upstream_mask(gauges)
    lines = [f"epochs {res.epochs_run} (best {res.best_epoch}, val loss {res.best_val_loss:.4g}"
             f"{', stopped early' if res.stopped_early else ''}); training {res.wall_s:.1f} s"]
    summary = {"epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss,
               "train_wall_s": res.wall_s, "gauges": len(gauges), "reaches_upstream": int(upstream.sum()),
               "history": res.history}
    extra = {}
    if n_true is not None:
        extra["n_true"] = n_true
    if "n" in params and "drainage_area_km2" in net.attrs:
        A = net.attr("drainage_area_km2")
        fit = fit_power_law(A[upstream], params["n"][upstream])
        summary.update(fit_prefactor=fit[0], fit_exponent=fit[1])
        lines.append(f"learned n ~ {fit[0]:.4f} A^{fit[1]:.4f} (reaches upstream of gauges)")
        sens = n_sensitivity(net, q, gauges, params["n"], fixed=fixed, dt_s=cfg.routing.dt_s,
                             mode=cfg.routing.mode)
        ident = identifiable_reaches(sens, upstream)
        fit_id = fit_power_law(A[ident], params["n"][ident])
        summary.update(identifiable_reaches=int(ident.sum()), fit_prefactor_identifiable=fit_id[0],
                       fit_exponent_identifiable=fit_id[1])
        extra["n_sensitivity"] = sens
        hidden = upstream & ~ident
        lines.append(f"  on the {int(ident.sum())} identifiable reaches (n sensitivity >= 1% of the median; "
                     f"the other {int(hidden.sum())} hardly show at any gauge): n ~ {fit_id[0]:.4f} A^{fit_id[1]:.4f}")
        truth = None
        if n_true is not None:
            tw = cfg.observations.twin
            truth = (tw.prefactor, tw.exponent)
            rel = np.abs(params["n"][upstream] / n_true[upstream] - 1.0)
            summary.update(true_prefactor=tw.prefactor, true_exponent=tw.exponent,
                           median_rel_n_error=float(np.median(rel)), p90_rel_n_error=float(np.quantile(rel, 0.9)))
            lines.append(f"truth n = {tw.prefactor} A^{tw.exponent}: exponent error "
                         f"{abs(fit[1] / tw.exponent - 1) * 100:.1f}%, median per-reach n error "
                         f"{np.median(rel) * 100:.2f}% (90th pct {np.quantile(rel, 0.9) * 100:.1f}%)")
            rel_id = float(np.median(np.abs(params["n"][ident] / n_true[ident] - 1)))
            summary["median_rel_n_error_identifiable"] = rel_id
            lines.append(f"  identifiable reaches: exponent error {abs(fit_id[1] / tw.exponent - 1) * 100:.1f}%, "
                         f"median n error {rel_id * 100:.2f}%")
            bias = {}
            edges = (0.0, 1.0, 10.0, 100.0, 1000.0, math.inf)
            for lo, hi in zip(edges[:-1], edges[1:]):
                m = upstream & (A >= lo) & (A < hi)
                if m.any():
                    bias[f"{lo:g}-{hi:g}"] = {"reaches": int(m.sum()),
                                          "median_signed_rel_error": float(np.median(params["n"][m] / n_true[m] - 1))}
            summary["n_error_by_area_km2"] = bias
            lines.append("  median signed n error by drainage area: " + ", ".join(
                f"{k}: {v['median_signed_rel_error']:+.1%} ({v['reaches']})" for k, v in bias.items()))
        if cfg.output.plots:
            plot_n_vs_area(A, params["n"], upstream, fit, out / "n_vs_area.png", truth)
    write_parameters(net, params, out / "parameters", extra)
    sim = route_gauges(pnet, net, q, gauges, fixed=fixed, dt_s=cfg.routing.dt_s, mode=cfg.routing.mode)
    scores = _per_gauge_scores(sim, obs, train_steps if train_steps < q.shape[0] else 0)
    scores.insert(0, "gage", gauge_ids)
    scores.insert(0, "reach_id", net.ids[gauges])
    with atomic_path(out / "gauge_scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    period = "validation" if train_steps < q.shape[0] else "training"
    summary["median_nse"] = float(np.nanmedian(scores["nse"]))
    lines.append(f"median NSE over {len(gauges)} gauges ({period} period): {summary['median_nse']:.4f}")
    if cfg.output.plots:
        plot_hydrographs(times, sim.numpy(), obs.numpy(), gauge_ids, out / "hydrographs.png", train_steps)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return "\n".join(lines)


def write_routing(cfg, net, pnet, q, times, fixed) -> str:
    """Route every reach with the learned parameters; write discharge.nc (time x reach, m3/s), gauge CSV and,
    with observations, hydrographs; returns a summary."""
    import xarray as xr

    out = Path(cfg.output.dir)
    router = MuskingumCunge(net, dt=cfg.routing.dt_s, mode=cfg.routing.mode)
    with torch.no_grad():
        params = dict(fixed)
        params.update(pnet.parameters_for(net))
        Q = router(q, **params)
    ds = xr.Dataset({"discharge": (("time", "reach"), Q.numpy().astype(np.float32),
                                   {"units": "m3 s-1", "long_name": "routed discharge (interval mean)"})},
                    coords={"time": times.tz_convert(None) if times.tz is not None else times,
                            "reach_id": ("reach", net.ids)})
    with atomic_path(out / "discharge.nc") as tmp:
        ds.to_netcdf(tmp, format="NETCDF4")
    g = net.gauges()
    lines = [f"routed {len(net)} reaches x {len(times)} steps; {router.balance}"]
    if len(g):
        pos = np.sort(g.index.to_numpy().astype(np.int64))
        tab = pd.DataFrame(Q[:, torch.from_numpy(pos)].numpy(), columns=g.loc[pos].to_numpy().astype(str))
        tab.insert(0, "time", times)
        with atomic_path(out / "gauge_discharge.csv") as tmp:
            tab.to_csv(tmp, index=False)
        lines.append(f"discharge at {len(pos)} gauges -> {out / 'gauge_discharge.csv'}")
    lines.append(f"discharge at every reach -> {out / 'discharge.nc'}")
    return "\n".join(lines)
