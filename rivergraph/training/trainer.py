"""Learning routing parameters from reach attributes through the differentiable router.

A :class:`~rivergraph.models.ParameterNet` maps normalised attributes to per-reach parameters (Manning's n,
optionally geometry); the :class:`~rivergraph.models.router.MuskingumCunge` router turns lateral inflow into
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

import copy
import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from ..io.atomic import atomic_path
from ..metrics import kge, nse
from ..graph.network import RiverNetwork
from ..models.params import ParameterNet
from ..models.router import MuskingumCunge

__all__ = ["LossSpec", "GaugeBatch", "make_batches", "gauge_loss", "batch_loss", "train_step", "train",
           "TrainResult", "route_gauges", "storm_inflow", "twin_law", "twin_observations", "fit_power_law",
           "local_area_km2", "load_checkpoint"]

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
    from ..physics.channels import parameter_spec

    return np.clip(prefactor * net.attr("drainage_area_km2") ** exponent, *parameter_spec("n").bounds)


@torch.no_grad()
def twin_observations(net: RiverNetwork, q_lat: torch.Tensor, gauges: Sequence[int], n_true: np.ndarray, *,
                      fixed: Mapping | None = None, dt_s: float = 3600.0, mode: str = "power_law",
                      noise: float = 0.0, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Synthetic observations [T, G] (m3/s): discharge at ``gauges`` routed with ``n_true``, times lognormal
    noise exp(noise * N(0, 1)) when ``noise`` > 0."""
    from ..models.params import AttributeScaler

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
