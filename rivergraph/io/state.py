"""Routing state files: the carry-over state of a run (``RoutingState``) saved with its reach ids, so a later
run continues exactly where this one stopped (``rivergraph route``: ``state.final`` / ``state.initial``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..graph.network import NetworkError
from ..models.router import RoutingState
from .atomic import atomic_path

__all__ = ["save_state", "load_state"]


def save_state(state: RoutingState, network, path: str | Path, time=None, mode: str = "") -> Path:
    """Write ``state`` (outflow Q, upstream inflow I, storage S where carried; network reach order) with the reach
    ids, the time it is valid at (UTC) and the routing mode to ``path`` (.npz), atomically."""
    arrays = {"reach_id": np.asarray(network.ids), "Q": state.Q.detach().cpu().numpy(),
              "I": state.I.detach().cpu().numpy(), "mode": np.array(mode),
              "time": np.array("" if time is None else pd.Timestamp(time).isoformat())}
    if arrays["reach_id"].dtype.kind == "O":
        arrays["reach_id"] = arrays["reach_id"].astype(str)
    if state.S is not None:
        arrays["S"] = state.S.detach().cpu().numpy()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def load_state(path: str | Path, network, mode: str | None = None) -> tuple[RoutingState, pd.Timestamp | None]:
    """``(state, time)`` from a file written by :func:`save_state`, reordered to ``network``'s reaches; reaches of
    the network missing from the file, or a different routing mode, are errors naming them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        ids, saved_mode = z["reach_id"], str(z["mode"])
        arr = {k: z[k] for k in ("Q", "I", "S") if k in z.files}
        t = str(z["time"])
    if mode is not None and saved_mode and saved_mode != mode:
        raise ValueError(f"{path}: state of routing mode '{saved_mode}', this run routes with '{mode}'")
    net_ids = np.asarray(network.ids)
    key = net_ids.astype(str) if ids.dtype.kind == "U" else net_ids
    pos = pd.Index(ids).get_indexer(key)
    if (pos < 0).any():
        missing = key[pos < 0]
        raise NetworkError(f"{path}: no state for reach(es) {missing[:10].tolist()} ({len(missing)} in all)")
    take = {k: torch.from_numpy(np.ascontiguousarray(v[pos])) for k, v in arr.items()}
    return RoutingState(take["Q"], take["I"], take.get("S")), (pd.Timestamp(t) if t else None)
