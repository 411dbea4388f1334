"""Gauge splits a hydrologist accepts, and daily skill scores by split and period.

Spatial split by *gauge trees*: every gauge belongs to the tree of the most downstream gauge whose upstream network
contains it (nested gauges share a tree). Holding out whole trees keeps every held-out gauge's upstream reaches out of
every training gauge's upstream network, so the training loss never sees the held-out gauges' reaches or water
(a nested or downstream gauge would otherwise leak them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..graph.network import NetworkError, RiverNetwork
from ..metrics import kge, nse

__all__ = ["gauge_trees", "holdout_by_tree", "daily_means", "split_scores"]


def gauge_trees(net: RiverNetwork, positions: Sequence[int]) -> np.ndarray:
    """[G] index (into ``positions``) of each gauge's tree root: the gauge with the most upstream reaches among those
    whose upstream network contains it (itself when no other gauge is downstream of it)."""
    pos = np.asarray(positions, dtype=np.int64)
    masks = np.stack([net.upstream_mask([p]) for p in pos])          # [G, N]
    size = masks.sum(1)
    contains = masks[:, pos]                                           # contains[j, i]: gauge i upstream of j
    root = np.empty(len(pos), dtype=np.int64)
    for i in range(len(pos)):
        cand = np.flatnonzero(contains[:, i])
        root[i] = cand[np.argmax(size[cand])]
    return root


def holdout_by_tree(net: RiverNetwork, positions: Sequence[int], ids: Sequence[str],
                    holdout_roots: Sequence[str]) -> np.ndarray:
    """[G] bool: gauges held out because they lie in the tree of one of ``holdout_roots`` (gauge ids that must be tree
    roots). A root that is not a gauge, or that is nested in another gauge's tree, is an error naming it. The held-out
    and training gauges' upstream networks are disjoint (checked)."""
    ids = np.asarray([str(i) for i in ids])
    root = gauge_trees(net, positions)
    where = {g: i for i, g in enumerate(ids)}
    bad = [r for r in holdout_roots if str(r) not in where]
    if bad:
        raise NetworkError(f"holdout roots {bad[:10]} are not among the selected gauges")
    nested = [r for r in holdout_roots if root[where[str(r)]] != where[str(r)]]
    if nested:
        raise NetworkError(f"holdout roots {nested[:10]} are nested in another gauge's tree (roots: "
                           f"{sorted(set(ids[root[[where[str(r)] for r in nested]]]))[:10]}); name the tree's root")
    held = np.isin(root, [where[str(r)] for r in holdout_roots])
    pos = np.asarray(positions, dtype=np.int64)
    if held.any() and (~held).any():
        overlap = net.upstream_mask(pos[held]) & net.upstream_mask(pos[~held])
        if overlap.any():
            raise NetworkError(f"held-out and training gauges share reaches {net.ids[overlap][:10].tolist()}")
    return held


def daily_means(x: torch.Tensor | np.ndarray, steps_per_day: int) -> np.ndarray:
    """[D, ...] daily means of an hourly (or finer) [T, ...] series; T must be a whole number of days."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] % steps_per_day:
        raise ValueError(f"{x.shape[0]} steps are not a whole number of {steps_per_day}-step days")
    return x.reshape(x.shape[0] // steps_per_day, steps_per_day, *x.shape[1:]).mean(1)


def split_scores(sims: dict[str, np.ndarray], obs_daily: np.ndarray, ids: Sequence[str], held: np.ndarray,
                 periods: dict[str, slice]) -> pd.DataFrame:
    """Per-gauge daily NSE, KGE and volume ratio (sum sim / sum obs over the observed days) for each model in
    ``sims`` (name -> [D, G] daily m3/s), each period (name -> day slice) and gauge set (``held`` -> 'holdout', else
    'train'). Long table: model, period, gauges, gage, nse, kge, volume_ratio."""
    rows = []
    o = np.asarray(obs_daily, dtype=np.float64)
    for name, s in sims.items():
        s = np.asarray(s, dtype=np.float64)
        for pname, sl in periods.items():
            st, ot = torch.from_numpy(s[sl]), torch.from_numpy(o[sl])
            n, k = nse(st, ot).numpy(), kge(st, ot).numpy()
            m = np.isfinite(o[sl])
            vol = np.where(m, s[sl], 0).sum(0) / np.where(m, o[sl], 0).sum(0)
            for j, g in enumerate(ids):
                rows.append({"model": name, "period": pname, "gauges": "holdout" if held[j] else "train",
                             "gage": str(g), "nse": float(n[j]), "kge": float(k[j]), "volume_ratio": float(vol[j])})
    return pd.DataFrame(rows)
