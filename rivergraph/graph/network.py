"""River networks as validated directed forests.

A :class:`RiverNetwork` holds reaches (one row each), the index of each reach's single downstream
reach (``-1`` at an outlet), per-reach attributes with explicit units in their column names, optional
geometry, and derived graph structure (topological levels, Strahler order; ``to_pyg`` for a torch-geometric ``Data``).

Column names (units in the name; readers in :mod:`rivergraph.io` map source schemas onto these):

=====================  ======================================================
``length_m``           reach length (m), > 0
``slope``              channel bed slope (m/m), floored at ``min_slope``
``drainage_area_km2``  total upstream drainage area at the reach outlet (km2)
``catchment_area_km2`` local (incremental) catchment area (km2)
``n``                  Manning's roughness (s m^-1/3)
``bottom_width_m``     trapezoid bottom width (m)
``top_width_m``        bankfull top width (m)
``side_slope``         trapezoid side slope z (horizontal : vertical)
``musk_s``, ``musx``   static Muskingum K (s) and X (-)
``order``              stream order as given by the source
``gage``               gauge id (string, '' where none)
``lat``, ``lon``       reach location (degrees)
=====================  ======================================================
"""
from __future__ import annotations

import math

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Literal, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import torch

__all__ = ["RiverNetwork", "NetworkError", "build_network", "DEFAULT_MIN_SLOPE", "GENERIC_OUTLET_CODES"]

DEFAULT_MIN_SLOPE = 1e-5
"""Floor applied to non-positive bed slopes (m/m); the NWM Route_Link's own minimum."""


class NetworkError(ValueError):
    """Raised for an invalid river network; the message names the offending reach(es)."""


def _fmt_ids(ids: Sequence, limit: int = 10) -> str:
    ids = list(ids)
    s = ", ".join(str(i) for i in ids[:limit])
    return s + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


@dataclass
class RiverNetwork:
    """A validated river network (a forest: every reach drains to at most one downstream reach).

    Build one with :func:`build_network` or :func:`rivergraph.read_network`; the constructor assumes
    validated input.

    Attributes:
        ids: reach ids as given by the source (int64 or str), shape [N].
        downstream: position of each reach's downstream reach, ``-1`` at outlets, shape [N].
        attrs: per-reach attributes (see module docstring for names and units), row i = reach i.
        geometry: optional ``geopandas.GeoSeries`` of reach geometries (row i = reach i).
        report: what validation changed or noticed (e.g. number of slopes floored).
    """

    ids: np.ndarray
    downstream: np.ndarray
    attrs: pd.DataFrame
    geometry: object | None = None
    report: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"RiverNetwork({len(self)} reaches, {self.n_outlets} outlets, depth {self.depth}, "
                f"attrs={list(self.attrs.columns)})")

    @property
    def n_reaches(self) -> int:
        return len(self.ids)

    @cached_property
    def index_of(self) -> dict:
        """Mapping reach id -> position."""
        return {k: i for i, k in enumerate(self.ids.tolist())}

    def positions(self, reach_ids: Iterable) -> np.ndarray:
        """Positions of the given reach ids; unknown ids raise :class:`NetworkError` naming them."""
        reach_ids = list(reach_ids)
        idx = self.index_of
        missing = [r for r in reach_ids if r not in idx]
        if missing:
            raise NetworkError(f"reach ids not in the network: {_fmt_ids(missing)}")
        return np.array([idx[r] for r in reach_ids], dtype=np.int64)

    @property
    def outlets(self) -> np.ndarray:
        return np.flatnonzero(self.downstream < 0)

    @property
    def n_outlets(self) -> int:
        return int((self.downstream < 0).sum())

    @cached_property
    def edge_index(self) -> torch.Tensor:
        """[2, E] long tensor of edges upstream -> downstream (torch-geometric convention)."""
        src = np.flatnonzero(self.downstream >= 0)
        return torch.from_numpy(np.stack([src, self.downstream[src]])).long()

    def to_pyg(self, x=None, **node_attrs):
        """The network as a ``torch_geometric.data.Data`` (see :func:`rivergraph.graph.pyg.to_pyg`)."""
        from .pyg import to_pyg

        return to_pyg(self, x, **node_attrs)

    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(range(len(self)))
        src = np.flatnonzero(self.downstream >= 0)
        g.add_edges_from(zip(src.tolist(), self.downstream[src].tolist()))
        return g

    def gauges(self) -> pd.Series:
        """Gauge id per gauged reach position (non-empty ``gage`` attribute)."""
        if "gage" not in self.attrs:
            return pd.Series(dtype=object)
        g = self.attrs["gage"].astype(str).str.strip()
        return g[g != ""]

    def attr(self, name: str) -> np.ndarray:
        """An attribute column as float64 numpy; a missing column is a clear error."""
        if name not in self.attrs:
            raise NetworkError(f"network has no attribute column '{name}' (has: {list(self.attrs.columns)})")
        return self.attrs[name].to_numpy(dtype=np.float64)

    def reach_vector(self, value, dtype: torch.dtype, device, label: str) -> torch.Tensor:
        """``value`` (a scalar, an array or a tensor) as one value per reach, [N] in network order, in the given
        dtype and device (a scalar is broadcast); another shape is an error naming ``label``."""
        t = value.to(device=device, dtype=dtype) if torch.is_tensor(value) else \
            torch.as_tensor(value, dtype=dtype, device=device)
        n = len(self)
        if t.ndim == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"{label} has shape {tuple(t.shape)}, expected ({n},) or a scalar")
        return t

    def lateral_inflow(self, q_lat, device, negative_ok: bool = False) -> torch.Tensor:
        """``q_lat`` (m3/s, [T, N] time x reach in network order) as a floating tensor on ``device``: integers as
        float64; half precision refused (float16 overflows the channel hydraulics, e.g. A^5 past 65,504;
        bfloat16 keeps 3 significant digits); a wrong shape, NaN / inf and (unless ``negative_ok``) negative
        values are errors naming the reaches."""
        q = torch.as_tensor(q_lat)
        if not q.is_floating_point():
            q = q.double()
        if q.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"q_lat is {q.dtype}: routing runs in float32 or float64 (half precision overflows or "
                            "rounds away the channel hydraulics); cast it, e.g. q_lat.float()")
        q = q.to(device)
        n = len(self)
        if q.ndim != 2 or q.shape[1] != n:
            raise ValueError(f"q_lat must be [T, {n}] (time x reach, network order), got {tuple(q.shape)}")
        qd = q.detach()
        lo, hi = (float(v) for v in torch.aminmax(qd)) if qd.numel() else (0.0, 0.0)  # one pass; NaN reaches both
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = (~torch.isfinite(qd)).any(0).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"q_lat has NaN/inf values at reaches {self.ids[bad].tolist()}")
        if lo < 0 and not negative_ok:
            bad = (qd < 0).any(0).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"q_lat has negative lateral inflow at reaches {self.ids[bad].tolist()}; "
                             "rivergraph does not route negative inflow (losing reaches are not modelled)")
        return q

    # -------------------------------------------------------------- structure
    @cached_property
    def distance_to_outlet(self) -> np.ndarray:
        """Number of reaches downstream of each reach before leaving the network (0 at outlets)."""
        return _distance_to_outlet(self.downstream, self.ids)

    @cached_property
    def level_from_headwaters(self) -> np.ndarray:
        """Longest path (in reaches) from any headwater to each reach; 0 at headwaters."""
        return _levels_from_headwaters(self.downstream)

    @property
    def depth(self) -> int:
        """Network depth: number of reaches on the longest headwater-to-outlet path."""
        return int(self.distance_to_outlet.max()) + 1 if len(self) else 0

    @cached_property
    def topological_order(self) -> np.ndarray:
        """Reach positions ordered so every reach comes after all reaches upstream of it."""
        return np.argsort(self.level_from_headwaters, kind="stable")

    @cached_property
    def strahler_order(self) -> np.ndarray:
        """Strahler stream order computed from the topology (1 at headwaters)."""
        lev = self.level_from_headwaters
        order = np.ones(len(self), dtype=np.int64)
        src_all = np.flatnonzero(self.downstream >= 0)
        dst_all = self.downstream[src_all]
        lev_dst = lev[dst_all]
        by_level = np.argsort(lev_dst, kind="stable")
        bounds = np.searchsorted(lev_dst[by_level], np.arange(lev.max() + 2))
        for L in range(1, lev.max() + 1):
            e = by_level[bounds[L]:bounds[L + 1]]
            if len(e) == 0:
                continue
            src, dst = src_all[e], dst_all[e]
            mx = np.zeros(len(self), dtype=np.int64)
            np.maximum.at(mx, dst, order[src])
            cnt = np.zeros(len(self), dtype=np.int64)
            np.add.at(cnt, dst, (order[src] == mx[dst]).astype(np.int64))
            nodes = np.unique(dst)
            order[nodes] = np.where(cnt[nodes] >= 2, mx[nodes] + 1, mx[nodes])
        return order

    def accumulate(self, local: np.ndarray) -> np.ndarray:
        """Sum a per-reach quantity over each reach and everything upstream of it (e.g. area km2)."""
        local = np.asarray(local, dtype=np.float64)
        if local.shape != (len(self),):
            raise NetworkError(f"accumulate expects {len(self)} values, got shape {local.shape}")
        acc = local.copy()
        for nodes in self._levels_groups():
            down = self.downstream[nodes]
            keep = down >= 0
            np.add.at(acc, down[keep], acc[nodes[keep]])
        return acc

    def _levels_groups(self) -> list[np.ndarray]:
        lev = self.level_from_headwaters
        order = np.argsort(lev, kind="stable")
        bounds = np.searchsorted(lev[order], np.arange(lev.max() + 2)) if len(lev) else [0]
        return [order[bounds[L]:bounds[L + 1]] for L in range(len(bounds) - 1)]

    def upstream_mask(self, reaches: Iterable[int] | np.ndarray) -> np.ndarray:
        """Boolean mask of the given reach positions and every reach upstream of them."""
        mask = np.zeros(len(self), dtype=bool)
        mask[np.asarray(list(reaches), dtype=np.int64)] = True
        dist = self.distance_to_outlet
        order = np.argsort(dist, kind="stable")
        bounds = np.searchsorted(dist[order], np.arange(dist.max() + 2))
        for k in range(1, len(bounds) - 1):
            nodes = order[bounds[k]:bounds[k + 1]]
            mask[nodes] |= mask[self.downstream[nodes]]
        return mask

    def subset(self, mask: np.ndarray) -> "RiverNetwork":
        """The sub-network of reaches where ``mask`` is true; downstream links leaving it become outlets."""
        mask = np.asarray(mask, dtype=bool)
        keep = np.flatnonzero(mask)
        new_pos = np.full(len(self), -1, dtype=np.int64)
        new_pos[keep] = np.arange(len(keep))
        down = self.downstream[keep]
        new_down = np.where(down >= 0, new_pos[np.maximum(down, 0)], -1)
        geom = None
        if self.geometry is not None:
            geom = self.geometry.iloc[keep].reset_index(drop=True)
        return RiverNetwork(self.ids[keep], new_down, self.attrs.iloc[keep].reset_index(drop=True), geom,
                            dict(self.report, subset_of=len(self)))

    def upstream_subnetwork(self, reach_ids: Iterable) -> "RiverNetwork":
        """The sub-network draining to the given reach ids (e.g. gauged reaches)."""
        return self.subset(self.upstream_mask(self.positions(reach_ids)))

    def summary(self) -> dict:
        """Headline facts: reaches, outlets, depth, total length (km), and validation report."""
        out = {"reaches": len(self), "outlets": self.n_outlets, "depth": self.depth}
        if "length_m" in self.attrs:
            out["total_length_km"] = float(self.attrs["length_m"].sum() / 1000.0)
        out.update(self.report)
        return out


# ---------------------------------------------------------------- algorithms
def _distance_to_outlet(downstream: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Hops to the outlet by pointer jumping (O(N log depth)); raises on cycles."""
    n = len(downstream)
    nxt = np.where(downstream >= 0, downstream, n).astype(np.int64)
    nxt = np.append(nxt, n)
    w = np.append((downstream >= 0).astype(np.int64), 0)
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 2):
        if (nxt == n).all():
            break
        w = w + w[nxt]
        nxt = nxt[nxt]
    if not (nxt == n).all():
        _raise_cycle(downstream, ids)
    return w[:n]


def _raise_cycle(downstream: np.ndarray, ids: np.ndarray | None) -> None:
    g = nx.DiGraph()
    src = np.flatnonzero(downstream >= 0)
    g.add_edges_from(zip(src.tolist(), downstream[src].tolist()))
    cyc = nx.find_cycle(g)
    names = [ids[u] if ids is not None else u for u, _ in cyc]
    raise NetworkError(f"the network has a cycle through reaches {_fmt_ids(names)}")


def _levels_from_headwaters(downstream: np.ndarray) -> np.ndarray:
    """Longest-path level from headwaters by Kahn's algorithm, one vectorised frontier per level."""
    n = len(downstream)
    has_down = downstream >= 0
    indeg = np.bincount(downstream[has_down], minlength=n)
    level = np.zeros(n, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    L = 0
    seen = 0
    while len(frontier):
        level[frontier] = L
        seen += len(frontier)
        down = downstream[frontier]
        down = down[down >= 0]
        np.subtract.at(indeg, down, 1)
        cand = np.unique(down)
        frontier = cand[indeg[cand] == 0]
        L += 1
    if seen != n:
        _raise_cycle(downstream, None)
    return level


GENERIC_OUTLET_CODES = (0, "")
"""Outlet codes of a generic table (``outlet_ids=None``), with missing values and negative numbers; each is an
outlet only where no reach has that id."""


def _is_generic_code(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return bool(v <= 0)
    return isinstance(v, str) and v == ""


def _matches(values: np.ndarray, codes: Sequence) -> np.ndarray:
    """Elementwise ``values in codes`` without mixing numbers and strings."""
    if values.dtype.kind in "iuf":
        num = [c for c in codes if isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, bool)]
        return np.isin(values, num) if num else np.zeros(len(values), dtype=bool)
    if values.dtype.kind in "US":
        txt = [c for c in codes if isinstance(c, str)]
        return np.isin(values, txt) if txt else np.zeros(len(values), dtype=bool)
    return pd.Series(values, dtype=object).isin(list(codes)).to_numpy()


def _negative(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iuf":
        with np.errstate(invalid="ignore"):
            return values < 0
    if values.dtype.kind != "O":
        return np.zeros(len(values), dtype=bool)
    return np.array([isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                     and v < 0 for v in values], dtype=bool)


def _outlet_rows(ids: np.ndarray, to_ids: np.ndarray, outlet_ids: Iterable | None) -> tuple[np.ndarray, str]:
    """Rows whose downstream value marks an outlet, and a note of the rule applied (see :func:`build_network`)."""
    missing = np.asarray(pd.isna(to_ids), dtype=bool)
    if outlet_ids is None:
        coded = (_matches(to_ids, GENERIC_OUTLET_CODES) | _negative(to_ids)) & ~missing
        if coded.any():
            rows = np.flatnonzero(coded)
            real = pd.Series(to_ids[rows], dtype=object).isin(pd.unique(ids)).to_numpy()  # a reach's id: a link
            coded[rows[real]] = False
        return missing | coded, "missing, 0, '' or negative where not a reach id"
    codes = list(outlet_ids)
    clash = _matches(ids, codes)
    if clash.any():
        raise NetworkError(f"reach id(s) {_fmt_ids(ids[clash])} equal this format's outlet code(s) "
                           f"{_fmt_ids([repr(c) for c in codes])}: reaches draining to them would be taken as outlets; pass "
                           "outlet_ids=[...] with a code that is not a reach id")
    return missing | _matches(to_ids, codes), "missing or " + _fmt_ids([repr(c) for c in codes])


def build_network(
    ids: Sequence,
    to_ids: Sequence,
    attrs: pd.DataFrame | None = None,
    geometry=None,
    *,
    outlet_ids: Iterable | None = None,
    dangling: Literal["error", "outlet"] = "error",
    divergence: Literal["error", "first", "largest_area"] = "error",
    min_slope: float = DEFAULT_MIN_SLOPE,
    source: str = "",
) -> RiverNetwork:
    """Validate a reach table and build a :class:`RiverNetwork`.

    Args:
        ids: reach ids, one per row (a reach listed on several rows with different ``to_ids`` is a
            divergence).
        to_ids: downstream reach id per row; missing values (NaN/None) and outlet codes mark outlets.
        attrs: per-row attributes in rivergraph's column names/units (see module docstring).
        geometry: optional GeoSeries aligned with the rows.
        outlet_ids: the format's outlet code(s), e.g. ``(0,)`` for RAPID and the NWM Route_Link. Explicit
            codes are exact: a downstream value in them (or missing) is an outlet, and a reach whose own id is
            one of them is an error (it could never be routed into). ``None`` (default, for generic tables):
            a missing value, ``0``, ``''`` or a negative number marks an outlet *unless it is the id of a reach
            in the table*, in which case it is a link to that reach (a table whose ids start at 0 routes
            reach 0 like any other). ``report["outlet_codes"]`` says which rule was applied.
        dangling: ``"error"`` (default) rejects downstream ids not in the network; ``"outlet"`` treats
            them as outlets, warns naming them and counts them in ``report["dangling_as_outlets"]``.
        divergence: ``"error"`` (default) rejects reaches with two downstreams; ``"first"`` keeps the
            first row; ``"largest_area"`` keeps the row whose downstream reach has the largest
            ``drainage_area_km2`` (the main stem). Resolved divergences are counted in the report.
        min_slope: slopes below this floor (m/m), including those at or below zero, are raised to it, with
            a warning; the count is in ``report["slopes_floored"]``.

    Raises:
        NetworkError: naming the reach(es) for duplicates, divergences, dangling ids, cycles,
            NaN/non-positive lengths and NaN slopes.
    """
    ids = np.asarray(ids)
    to_ids = np.asarray(to_ids)
    if len(ids) != len(to_ids):
        raise NetworkError(f"ids ({len(ids)}) and downstream ids ({len(to_ids)}) differ in length")
    attrs = pd.DataFrame(index=range(len(ids))) if attrs is None else attrs.reset_index(drop=True)
    if len(attrs) != len(ids):
        raise NetworkError(f"attribute table has {len(attrs)} rows for {len(ids)} reaches")
    if len(ids) == 0:
        raise NetworkError("the network has no reaches")
    if pd.isna(ids).any():
        rows = np.flatnonzero(pd.isna(ids))
        raise NetworkError(f"{len(rows)} reach id(s) are missing (NaN/blank) at row(s) {_fmt_ids(rows)} "
                           "(0-based positions in the table)")
    if dangling not in ("error", "outlet"):
        raise NetworkError(f"unknown dangling resolution '{dangling}'; use 'error' or 'outlet'")
    if divergence not in ("error", "first", "largest_area"):
        raise NetworkError(f"unknown divergence resolution '{divergence}'; use 'error', 'first' or 'largest_area'")
    report: dict = {}
    if source:
        report["source"] = source

    is_outlet, report["outlet_codes"] = _outlet_rows(ids, to_ids, outlet_ids)

    # duplicates and divergences
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        df = pd.DataFrame({"id": ids, "to": np.where(is_outlet, None, to_ids)})[dup]
        n_to = df.groupby("id", sort=False)["to"].nunique(dropna=False)
        diverging = n_to[n_to > 1].index.tolist()
        duplicated = n_to[n_to <= 1].index.tolist()
        if duplicated:
            raise NetworkError(f"duplicate reach ids: {_fmt_ids(duplicated)}")
        if divergence == "error":
            raise NetworkError(
                f"reaches with more than one downstream reach (divergences): {_fmt_ids(diverging)}; "
                "pass divergence='first' or 'largest_area' to keep one branch")
        keep = np.ones(len(ids), dtype=bool)
        if divergence == "largest_area":
            if "drainage_area_km2" not in attrs:
                raise NetworkError("divergence='largest_area' needs a 'drainage_area_km2' column")
            area_of = dict(zip(ids.tolist(), attrs["drainage_area_km2"].to_numpy()))
            score = np.array([-np.inf if o else area_of.get(t, -np.inf) for t, o in zip(to_ids.tolist(), is_outlet)])
            order = np.lexsort((-score, pd.factorize(ids)[0]))
            first = pd.Series(ids[order]).duplicated().to_numpy()
            keep[order[first]] = False
        else:  # "first"
            keep = ~pd.Series(ids).duplicated(keep="first").to_numpy()
        warnings.warn(f"{len(diverging)} divergence(s) resolved by '{divergence}' (reaches {_fmt_ids(diverging, 5)})",
                      stacklevel=2)
        report["divergences_resolved"] = len(diverging)
        ids, to_ids, is_outlet = ids[keep], to_ids[keep], is_outlet[keep]
        attrs = attrs[keep].reset_index(drop=True)
        if geometry is not None:
            geometry = geometry[keep].reset_index(drop=True)

    # downstream positions
    pos = pd.Index(ids)
    down = np.full(len(ids), -1, dtype=np.int64)
    nz = ~is_outlet
    loc = pos.get_indexer(to_ids[nz])
    if (loc < 0).any():
        bad = np.flatnonzero(nz)[loc < 0]
        if dangling == "error":
            raise NetworkError(
                "downstream ids not in the network for reaches "
                + _fmt_ids([f"{ids[b]} (to {to_ids[b]})" for b in bad])
                + "; pass dangling='outlet' to treat them as outlets")
        warnings.warn(f"{len(bad)} reach(es) drain to ids not in the network and became outlets: "
                      + _fmt_ids([f"{ids[b]} (to {to_ids[b]})" for b in bad], 5), stacklevel=2)
        report["dangling_as_outlets"] = len(bad)
        loc = np.where(loc < 0, -1, loc)
    down[nz] = loc
    self_loop = np.flatnonzero(down == np.arange(len(ids)))
    if len(self_loop):
        hint = ""
        if outlet_ids is None and any(_is_generic_code(ids[i]) for i in self_loop):
            hint = ("; reach ids 0, '' and negative numbers are links when a reach has that id: if it is your "
                    "table's outlet code, pass outlet_ids=[...] with a code that is not a reach id")
        raise NetworkError(f"the network has a cycle: reaches drain into themselves: {_fmt_ids(ids[self_loop])}"
                           + hint)

    # attribute checks
    if "length_m" in attrs:
        L = pd.to_numeric(attrs["length_m"], errors="coerce").to_numpy(dtype=float)
        bad = ~(L > 0)
        if bad.any():
            raise NetworkError(f"reach length must be positive and not NaN (column 'length_m'); bad reaches: "
                               f"{_fmt_ids([f'{i} ({v})' for i, v in zip(ids[bad], L[bad])])}")
    if "slope" in attrs:
        S = pd.to_numeric(attrs["slope"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(S).any():
            raise NetworkError(f"NaN slope (column 'slope') for reaches {_fmt_ids(ids[np.isnan(S)])}")
        low = S < min_slope * (1 - 1e-6)  # tolerance: float32 copies of the floor itself are not "low"
        if low.any():
            warnings.warn(f"{int(low.sum())} reach slope(s) below the floor ({int((S <= 0).sum())} of them <= 0) "
                          f"raised to {min_slope} m/m (first: {_fmt_ids(ids[low], 5)})", stacklevel=2)
        report["slopes_floored"] = int(low.sum())
        attrs["slope"] = np.maximum(S, min_slope)

    net = RiverNetwork(ids, down, attrs, geometry, report)
    net.distance_to_outlet  # raises on cycles, naming reaches
    return net
