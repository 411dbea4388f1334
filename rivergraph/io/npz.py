"""The compact ``.npz`` network format of ``network_data/`` and forcing ``.npz`` files (q_lateral, reach_ids,
time)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..graph.network import NetworkError, RiverNetwork, _fmt_ids, build_network
from .registry import require_file

__all__ = ["save_network_npz", "load_network_npz", "read_forcing_npz"]


def _free_outlet_code(ids: np.ndarray):
    """An outlet code that is no reach's id: 0 / '' where free, else -1, min - 1 (numbers) or '<outlet>'."""
    if ids.dtype.kind in "iu":
        for code in (0, -1):
            if not (ids == code).any():
                return code
        return int(ids.min()) - 1
    taken = set(ids.tolist())
    return next(c for c in ("", "<outlet>", "<outlet-0>") if c not in taken)


def save_network_npz(net: RiverNetwork, path: str | Path) -> None:
    """Write a network compactly (ids, downstream ids, numeric attributes, gauge ids, the validation
    report as JSON) as ``.npz``; geometry is not stored. Outlets are marked with the code stored in
    ``outlet``: 0 (integer ids) or '' (string ids) unless a reach has that id (then -1 / '<outlet>')."""

    from .atomic import atomic_path

    ids = net.ids if net.ids.dtype.kind in "iu" else net.ids.astype(str)
    outlet = _free_outlet_code(ids)
    arrays = {"ids": ids, "to": np.where(net.downstream >= 0, ids[np.maximum(net.downstream, 0)], outlet),
              "outlet": np.array(outlet)}
    for c in net.attrs.columns:
        v = net.attrs[c]
        # text columns (gauge ids; object or pandas' str dtype) as fixed-width unicode: loadable without pickle
        arrays[f"attr__{c}"] = v.to_numpy() if pd.api.types.is_numeric_dtype(v) else v.to_numpy(dtype=str)
    arrays["report"] = np.array(json.dumps(net.report, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_network_npz(path: str | Path, **kw) -> RiverNetwork:
    """Read a network written by :func:`save_network_npz`; the saved report's entries (e.g.
    ``drainage_area``) are carried over where the new validation does not set them."""

    with np.load(path, allow_pickle=False) as z:
        ids, to = z["ids"], z["to"]
        attrs = pd.DataFrame({k[6:]: z[k] for k in z.files if k.startswith("attr__")}, index=range(len(ids)))
        saved = json.loads(str(z["report"])) if "report" in z.files else {}
        outlet = z["outlet"].item() if "outlet" in z.files else None
    if "gage" in attrs:
        attrs["gage"] = attrs["gage"].astype(object)
    # files written before the code was stored used 0 / '' (and never held a reach id 0)
    kw.setdefault("outlet_ids", (0, "") if outlet is None else (outlet,))
    net = build_network(ids, to, attrs, source=f"rivergraph:{Path(path).name}", **kw)
    for k, v in saved.items():
        net.report.setdefault(k if k != "source" else "saved_from", v)
    return net


def read_forcing_npz(path: str | Path, net: RiverNetwork):
    """Lateral inflow from an ``.npz`` with ``q_lateral`` [T, n] (m3/s), ``reach_ids`` [n] and ``time`` [T],
    reordered to the network's reach order.

    Returns ``(q [T, N] float64 tensor, times DatetimeIndex UTC)``. Errors name what is wrong: missing arrays,
    a duplicated reach id (which would leave another reach without inflow), ids not in the network, network
    reaches the file lacks, and shapes that disagree.
    """

    path = Path(path)
    require_file(path, "forcing")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("q_lateral", "reach_ids", "time") if k not in z.files]
        if missing:
            raise NetworkError(f"forcing file {path} lacks array(s) {missing} (has {sorted(z.files)})")
        try:
            q, rid, time = np.asarray(z["q_lateral"]), np.asarray(z["reach_ids"]), np.asarray(z["time"])
        except ValueError as e:  # object (pickled) arrays: not loaded, for safety
            raise NetworkError(f"forcing file {path}: {e}; store text ids as a string array "
                               "(np.asarray(ids, dtype=str)) and times as datetime64") from None
    if rid.ndim != 1:
        raise NetworkError(f"forcing file {path}: reach_ids must be 1-D, has shape {rid.shape}")
    if q.ndim != 2 or q.shape[1] != len(rid):
        raise NetworkError(f"forcing file {path}: q_lateral has shape {q.shape}, expected [time, {len(rid)}] "
                           f"(one column per reach_ids entry)")
    if len(time) != q.shape[0]:
        raise NetworkError(f"forcing file {path}: q_lateral has {q.shape[0]} rows but time has {len(time)}")
    dup = pd.Series(rid).duplicated(keep=False).to_numpy()
    if dup.any():
        raise NetworkError(f"forcing file {path}: duplicated reach id(s) {_fmt_ids(pd.unique(rid[dup]))} in "
                           "reach_ids (each reach needs exactly one column)")
    cols = net.positions(rid.tolist())
    if len(cols) != len(net):
        lacking = np.setdiff1d(np.arange(len(net)), cols)
        raise NetworkError(f"forcing file {path} has {len(cols)} reaches, the network {len(net)}; no inflow for "
                           f"reaches {_fmt_ids(net.ids[lacking])}")
    out = torch.zeros(q.shape[0], len(net), dtype=torch.float64)
    out[:, torch.from_numpy(cols)] = torch.from_numpy(q.astype(np.float64))
    return out, pd.DatetimeIndex(pd.to_datetime(time, utc=True))
