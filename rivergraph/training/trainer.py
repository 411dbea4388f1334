"""The one training loop, for one process and for data-parallel ranks (torch.distributed), and its checkpoints.

:func:`fit` is generic: a model, a list of *items* (anything: gauge batches, time windows, a single ``None``)
and ``loss_fn(model, item) -> scalar``. Every epoch visits the items in a seeded random order, in groups of
``items_per_step``; each group is one optimiser step on the group-mean loss (Adam by default, gradient-norm
clipping), then ``validate(model)`` gives the validation loss (the mean training loss without it) for early
stopping; the best-validation weights are restored at the end.

Data-parallel (when a ``torch.distributed`` process group is initialised, e.g. under torchrun): each rank
takes a share of every group, split by the largest-first rule on ``cost`` (:func:`rivergraph.training.
partition.balance`), backpropagates ``loss / group size`` for its items, and one all-reduce sums the
gradients, so every rank takes the step of the group-mean loss: the same step as one process with the same
``items_per_step`` up to floating-point summation order (tested, 2 ranks under gloo). Parameters are
broadcast from rank 0 at the start; ``validate`` runs on every rank and rank 0's value is used.

Checkpoints (one format, :func:`load_checkpoint`): written atomically by rank 0 after every epoch, holding
the model and optimiser state, the best weights, early-stopping counters, the history, the seed and the
torch RNG state; a run started again with ``resume`` continues from it and reaches bit for bit the weights of
an uninterrupted run (the epoch order depends only on the seed and the epoch number).
"""
from __future__ import annotations

import copy
import importlib
import math
import warnings
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..io.atomic import atomic_path
from .partition import balance

__all__ = ["fit", "optimizer_step", "TrainResult", "load_checkpoint", "CHECKPOINT_FORMAT", "rank_and_world"]

CHECKPOINT_FORMAT = "rivergraph-train-1"
"""``format`` entry of every training checkpoint."""

_MOVED = {**dict.fromkeys(("LossSpec", "gauge_loss"), "rivergraph.training.losses"),
          **dict.fromkeys(("GaugeBatch", "make_batches", "batch_loss", "route_gauges"), "rivergraph.training.batches"),
          **dict.fromkeys(("train", "train_step"), "rivergraph.training.gauges"),
          **dict.fromkeys(("storm_inflow", "twin_law", "twin_observations", "fit_power_law", "MM_PER_H_KM2_TO_M3S"),
                          "rivergraph.training.twin"),
          **dict.fromkeys(("n_sensitivity", "identifiable_reaches"), "rivergraph.training.sensitivity"),
          "local_area_km2": "rivergraph.graph.algorithms"}


def __getattr__(name: str):
    """Deprecated (one release): names that lived in this module before the split; import them from
    :mod:`rivergraph.training`."""
    if name in _MOVED:
        warnings.warn(f"rivergraph.training.trainer.{name} moved to {_MOVED[name]}; import it from "
                      "rivergraph.training", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class TrainResult:
    """Outcome of :func:`fit` / :func:`rivergraph.training.train`: the best-validation weights are loaded
    into the model. ``history``: per epoch {epoch, train_loss, val_loss}; ``steps``: optimiser steps."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list
    stopped_early: bool
    wall_s: float
    steps: int = 0
    world_size: int = 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint: a dict with ``model`` (state dict), ``param_net`` (the ParameterNet config,
    or None for another model), ``optimizer``, ``epoch``, ``history``, ``best_model``, ``seed``, ..."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "param_net" not in ck:
        raise ValueError(f"{path} is not a rivergraph training checkpoint")
    return ck


def _step_groups(n_items: int, per_step: int, seed: int, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n_items)
    return [perm[s:s + per_step] for s in range(0, n_items, per_step)]


def _allreduce_grads(params: list[torch.Tensor]) -> None:
    """Sum gradients over ranks in one all-reduce; a parameter no rank has a gradient for keeps None."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(torch.float64)
                      for p in params] + [torch.tensor([float(p.grad is not None) for p in params],
                                                       dtype=torch.float64, device=params[0].device)])
    dist.all_reduce(flat)
    off = 0
    for i, p in enumerate(params):
        n = p.numel()
        has = bool(flat[flat.numel() - len(params) + i] > 0)
        p.grad = flat[off:off + n].view_as(p).to(p.dtype).clone() if has else None
        off += n


def _sync_initial(params: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p in params:
            dist.broadcast(p, 0)


def _bcast_float(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t[0])


def optimizer_step(params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                   losses: Sequence[Callable[[], torch.Tensor]], group_size: int, clip: float | None = 1.0,
                   all_reduce: bool = False) -> list[float]:
    """One optimiser step: zero the gradients, backpropagate ``loss / group_size`` for each loss callable (this
    rank's share of a group of ``group_size`` items), sum the gradients over ranks (``all_reduce``), clip their
    norm, step. Returns the losses."""
    optimizer.zero_grad(set_to_none=True)
    out = []
    for f in losses:
        loss = f()
        (loss / group_size).backward()
        out.append(float(loss.detach()))
    if all_reduce:
        _allreduce_grads(params)
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return out


def fit(model: torch.nn.Module, items: Sequence[Any], loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], *,
        validate: Callable[[torch.nn.Module], float] | None = None, epochs: int = 50, lr: float = 0.01,
        clip: float | None = 1.0, patience: int = 10, seed: int = 0, items_per_step: int = 1,
        cost: Sequence[float] | None = None, optimizer: Callable | None = None,
        checkpoint: str | Path | None = None, resume: bool = True, progress: bool = True,
        restore_best: bool = True, desc: str = "train") -> TrainResult:
    """Train ``model`` on ``items`` (see the module docstring).

    Args:
        loss_fn: ``loss_fn(model, item)`` -> scalar loss tensor (the model is called inside it).
        validate: ``validate(model)`` -> validation loss, called after every epoch in eval mode without
            gradients; None: the epoch's mean training loss is used for early stopping and best weights.
        epochs, lr, clip, patience: epochs, learning rate, gradient-norm clip (None: off), epochs without
            improvement before stopping.
        seed: fixes the item order of every epoch (build the model after ``torch.manual_seed`` yourself).
        items_per_step: items per optimiser step (the group is split across ranks under torch.distributed).
        cost: per item, the work it takes (e.g. reaches x steps), for splitting groups across ranks.
        optimizer: ``optimizer(parameters)`` -> torch optimiser; default ``torch.optim.Adam(lr=lr)``.
        checkpoint: file written atomically (rank 0) after every epoch; with ``resume`` an existing one is
            continued (same seed, items and ``items_per_step`` required).
        restore_best: load the best-validation weights into ``model`` at the end.
    """
    from tqdm.auto import tqdm

    if len(items) == 0:
        raise ValueError("nothing to train on (no items)")
    if items_per_step < 1:
        raise ValueError("items_per_step must be >= 1")
    rank, world = rank_and_world()
    params = [p for p in model.parameters() if p.requires_grad]
    if world > 1:
        _sync_initial(params)
    cost = np.ones(len(items)) if cost is None else np.asarray(cost, dtype=np.float64)
    opt = optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr)
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "best_model": None, "bad": 0, "history": [],
             "stopped": False, "wall_s": 0.0, "steps": 0}
    run_id = {"seed": seed, "n_items": len(items), "items_per_step": items_per_step}
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        ck = load_checkpoint(checkpoint)
        for k, v in run_id.items():
            if ck.get(k, v) != v:
                raise ValueError(f"checkpoint {checkpoint} was written with {k} {ck.get(k)}, not {v}; "
                                 "delete it or set resume: false")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state.update({k: ck[k] for k in state if k in ck})
        if ck.get("rng") is not None:
            torch.set_rng_state(ck["rng"])
    t0 = _time.perf_counter() - state["wall_s"]
    bar = tqdm(total=epochs, initial=state["epoch"], disable=not progress or rank != 0, desc=desc, unit="epoch")
    while state["epoch"] < epochs and not state["stopped"]:
        ep = state["epoch"] + 1
        total = torch.zeros(2, dtype=torch.float64)  # (sum of item losses, number of items) over all ranks
        model.train()
        for group in _step_groups(len(items), items_per_step, seed, ep):
            mine = group[balance(cost[group], world)[rank]] if world > 1 else group
            losses = optimizer_step(params, opt, [lambda i=i: loss_fn(model, items[i]) for i in mine], len(group),
                                    clip, world > 1)
            total += torch.tensor([sum(losses), len(losses)], dtype=torch.float64)
            if losses:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            state["steps"] += 1
        if world > 1:
            dist.all_reduce(total)
        train_loss = float(total[0] / total[1])
        model.eval()
        if validate is not None:
            with torch.no_grad():
                val_loss = float(validate(model))
            if world > 1:
                val_loss = _bcast_float(val_loss)
        else:
            val_loss = train_loss
        state["history"].append({"epoch": ep, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_epoch=ep, bad=0, best_model=copy.deepcopy(model.state_dict()))
        else:
            state["bad"] += 1
            state["stopped"] = state["bad"] >= patience
        state["epoch"] = ep
        state["wall_s"] = _time.perf_counter() - t0
        if checkpoint is not None and rank == 0:
            config = model.config() if callable(getattr(model, "config", None)) else None
            with atomic_path(checkpoint) as tmp:
                torch.save({"format": CHECKPOINT_FORMAT, "param_net": config, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "world_size": world,
                            **run_id, **state}, tmp)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{state['best_val']:.4f}")
        bar.update(1)
    bar.close()
    if restore_best and state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
    return TrainResult(state["epoch"], state["best_epoch"], state["best_val"], state["history"], state["stopped"],
                       state["wall_s"], state["steps"], world)
