"""Partitioning work across processes: largest-first bin packing, and whole outlet trees per part.

Reaches draining to different outlets never exchange water, so each outlet tree is an independent job.
:func:`partition_outlet_trees` assigns whole trees to ``n_parts`` ranks by greedy largest-first bin packing
on reach count (Graham 1969, "Bounds on multiprocessing timing anomalies", SIAM J. Appl. Math. 17(2): the LPT
rule is within 4/3 of the optimal makespan); the trainer splits each step's gauge batches (independent
upstream sub-networks) across ranks by the same rule (:func:`balance`).
"""
from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from ..graph.network import RiverNetwork

__all__ = ["balance", "partition_outlet_trees", "outlet_of"]


def balance(costs: Sequence[float], n_parts: int) -> list[np.ndarray]:
    """Greedy largest-first (LPT) bin packing: item indices per part, parts' cost sums near-equal.

    Ties are broken by item index and part number, so every rank computes the same partition.
    """
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1, got {n_parts}")
    costs = np.asarray(costs, dtype=np.float64)
    heap = [(0.0, p) for p in range(n_parts)]
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    for i in np.argsort(-costs, kind="stable"):
        load, p = heapq.heappop(heap)
        parts[p].append(int(i))
        heapq.heappush(heap, (load + costs[i], p))
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def outlet_of(net: RiverNetwork) -> np.ndarray:
    """Position of the outlet each reach drains to, [N]."""
    out = np.arange(len(net))
    dist_ = net.distance_to_outlet
    order = np.argsort(dist_, kind="stable")  # outlets first, then one reach further upstream at a time
    for i in order:
        d = net.downstream[i]
        if d >= 0:
            out[i] = out[d]
    return out


def partition_outlet_trees(net: RiverNetwork, n_parts: int) -> list[np.ndarray]:
    """Reach positions (sorted) of each of ``n_parts`` parts; every outlet tree lies whole in one part and parts
    hold near-equal reach counts (LPT). ``net.subset(np.isin(np.arange(len(net)), part))`` is the part's network."""
    tree = outlet_of(net)
    outlets, inverse, sizes = np.unique(tree, return_inverse=True, return_counts=True)
    parts = balance(sizes, n_parts)
    return [np.flatnonzero(np.isin(inverse, p)) for p in parts]
