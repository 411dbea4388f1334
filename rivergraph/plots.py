"""Matplotlib figures: hydrographs at gauges, Manning's n vs drainage area, network maps, training curves.

Every function returns a ``matplotlib.figure.Figure`` (nothing is shown); ``save(fig, path)`` writes it
atomically. ``rivergraph plot hydrograph|n-vs-area|map|training`` wraps them for the command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .io.atomic import atomic_path
from .graph.network import RiverNetwork

__all__ = ["pyplot", "plot_hydrographs", "informative_gauges", "plot_n_vs_area", "plot_network_map", "plot_training",
           "network_lines", "save", "plot_n_fit", "plot_sim_obs", "plot_reach_map", "resolve_map_values"]


def pyplot():
    """matplotlib.pyplot on a non-interactive backend (Agg unless one is set): figures without a display."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` (format from the suffix: .png, .pdf, .svg) atomically and close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "pdf", "svg", "jpg", "jpeg"):
        raise ValueError(f"figure {path}: unknown format '{path.suffix}'; use .png, .pdf or .svg")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


NSE_FLOOR = -10.0
"""Panel titles print NSE values below this as ``NSE < -10``: such scores come from near-constant observations
(tiny headwater gauges) and say only that the fit is poor."""


def _valid_obs(obs: pd.DataFrame | None) -> pd.DataFrame | None:
    if obs is not None and "quality" in obs:
        obs = obs[obs["quality"] != 0]
    return obs if obs is None else obs.dropna(subset=["discharge_m3s"])


def informative_gauges(sim: pd.DataFrame, obs: pd.DataFrame | None = None, k: int = 12) -> list[str]:
    """The ``k`` gauges of ``sim`` worth a panel: those with at least two observations at simulated times,
    largest mean observed flow first, then (if fewer than ``k``) the others by largest mean simulated flow.
    Small headwater gauges, whose near-constant flows give meaningless scores, come last."""
    sim_mean = sim.assign(gage=sim["gage"].astype(str)).groupby("gage", sort=False)["discharge_m3s"].mean()
    with_obs: pd.Series = pd.Series(dtype=float)
    obs = _valid_obs(obs)
    if obs is not None and len(obs):
        o = obs.assign(gage=obs["gage"].astype(str))
        o = o[o["gage"].isin(sim_mean.index) & o["time"].isin(sim["time"])]
        counts = o.groupby("gage")["discharge_m3s"].count()
        with_obs = o.groupby("gage")["discharge_m3s"].mean()[counts >= 2]
    first = with_obs.sort_values(ascending=False, kind="stable").index.tolist()
    rest = sim_mean.drop(first).sort_values(ascending=False, kind="stable").index.tolist()
    return (first + rest)[:k]


def plot_hydrographs(sim: pd.DataFrame, obs: pd.DataFrame | None = None, gages: Sequence[str] | None = None,
                     ncols: int = 3):
    """Simulated (and observed) discharge (m3/s) at gauges, one panel each, with NSE where both overlap.

    Args:
        sim, obs: long tables (time, gage, discharge_m3s), e.g. :func:`rivergraph.io.read_gauge_csv` and
            ``load_lower_colorado()[1]["usgs_obs"]`` (rows with ``quality == 0`` are treated as missing).
        gages: which gauges (default: :func:`informative_gauges`, at most 12: gauges with observations,
            largest mean observed flow first). A panel without observations says so in its title; NSE
            below ``NSE_FLOOR`` is printed as ``NSE < -10``.
    """
    from .metrics import nse

    for name, df in (("sim", sim), ("obs", obs)):
        if df is not None and not {"time", "gage", "discharge_m3s"} <= set(df.columns):
            raise ValueError(f"{name} table needs columns time, gage, discharge_m3s; has {list(df.columns)}")
    all_g = list(dict.fromkeys(sim["gage"].astype(str)))
    gages = informative_gauges(sim, obs) if gages is None else [str(g) for g in gages]
    missing = [g for g in gages if g not in all_g]
    if missing:
        raise ValueError(f"gauge(s) {missing[:10]} not in the simulated table (has {len(all_g)} gauges)")
    obs = _valid_obs(obs)
    plt = pyplot()
    nrows = -(-len(gages) // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(gages)), figsize=(4 * min(ncols, len(gages)), 2.6 * nrows),
                             squeeze=False, sharex=True)
    for ax, g in zip(axes.flat, gages):
        s = sim[sim["gage"].astype(str) == g].set_index("time")["discharge_m3s"].sort_index()
        ax.plot(s.index, s.to_numpy(), color="C0", lw=1.5, label="simulated")
        title = f"USGS {g}"
        if obs is not None:
            o = obs[obs["gage"].astype(str) == g].set_index("time")["discharge_m3s"].sort_index()
            ax.plot(o.index, o.to_numpy(), "k.", ms=2, label="observed")
            both = pd.concat([s.rename("s"), o.rename("o")], axis=1, join="inner").dropna()
            if len(both) < 2:
                title += "  (no observations)" if len(o) == 0 else "  (no observations at simulated times)"
            else:
                import torch

                v = float(nse(torch.tensor(both["s"].to_numpy()), torch.tensor(both["o"].to_numpy())))
                if not np.isfinite(v):
                    title += f"  (observations constant, n={len(both)})"
                elif v < NSE_FLOOR:
                    title += f"  NSE < {NSE_FLOOR:g} (n={len(both)})"
                else:
                    title += f"  NSE {v:.2f} (n={len(both)})"
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("Q (m3/s)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in list(axes.flat)[len(gages):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_n_vs_area(net: RiverNetwork, n: np.ndarray | None = None, label: str = "Manning's n"):
    """Manning's n (s m^-1/3) against drainage area (km2, log axes), with the least-squares power law
    n = a A^b (:func:`rivergraph.training.fit_power_law`). ``n`` defaults to the network's ``n`` column."""
    from .training.twin import fit_power_law

    A = net.attr("drainage_area_km2")
    n = net.attr("n") if n is None else np.asarray(n, dtype=np.float64)
    if n.shape != A.shape:
        raise ValueError(f"n has {n.size} values, the network has {A.size} reaches")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ok = (A > 0) & (n > 0) & np.isfinite(A) & np.isfinite(n)
    ax.scatter(A[ok], n[ok], s=3, alpha=0.4, color="C0", label=f"{int(ok.sum())} reaches")
    if ok.sum() >= 2 and np.ptp(np.log(A[ok])) > 0:
        a, b = fit_power_law(A, n)
        x = np.geomspace(A[ok].min(), A[ok].max(), 50)
        ax.plot(x, a * x ** b, "k--", label=f"n = {a:.3g} A^{b:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("drainage area (km2)")
    ax.set_ylabel(f"{label} (s m^-1/3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def network_lines(net: RiverNetwork):
    """A GeoDataFrame of reach lines: the network's geometry if it has one, else straight segments from each
    reach's (lon, lat) to its downstream reach's (outlets: a point), in EPSG:4326."""
    import geopandas as gpd
    from shapely import linestrings, points

    if net.geometry is not None:
        return gpd.GeoDataFrame(geometry=gpd.GeoSeries(net.geometry).reset_index(drop=True))
    if "lat" not in net.attrs or "lon" not in net.attrs:
        raise ValueError("the network has neither geometry nor lat/lon columns to draw a map from")
    xy = np.column_stack([net.attr("lon"), net.attr("lat")])
    d = net.downstream
    end = np.where((d >= 0)[:, None], xy[np.maximum(d, 0)], xy)
    geom = np.where(d >= 0, linestrings(np.stack([xy, end], axis=1)), points(xy))
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries(geom, crs="EPSG:4326"))


def plot_network_map(net: RiverNetwork, values: np.ndarray | str, label: str | None = None, log: bool = False,
                     cmap: str = "viridis"):
    """Map of a per-reach quantity (an attribute column name or [N] values, e.g. Q at one time, m3/s) over
    the network geometry; line width grows with drainage area where known."""
    from matplotlib.colors import LogNorm, Normalize

    if isinstance(values, str):
        label = label or values
        values = net.attr(values)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(net),):
        raise ValueError(f"map values: expected {len(net)} (one per reach), got shape {values.shape}")
    gdf = network_lines(net)
    gdf["value"] = values
    pos = values[np.isfinite(values) & (values > 0)]
    if log and len(pos) == 0:
        raise ValueError("log colour scale needs positive values")
    norm = LogNorm(pos.min(), pos.max()) if log else Normalize(np.nanmin(values), np.nanmax(values))
    width = 0.6
    if "drainage_area_km2" in net.attrs:
        A = np.clip(net.attr("drainage_area_km2"), 1e-3, None)
        width = 0.3 + 2.5 * np.log10(A) / max(np.log10(A.max()), 1.0)
        width = np.clip(width, 0.3, 3.0)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    gdf.plot(ax=ax, column="value", cmap=cmap, norm=norm, linewidth=width, legend=True,
             legend_kwds={"label": label or "value", "shrink": 0.7})
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_training(history: pd.DataFrame | Sequence[dict]):
    """Loss curves from a training history (rows of epoch, train_loss, val_loss, ...; log y-axis when positive)."""
    df = pd.DataFrame(history)
    if "epoch" not in df or len(df) == 0:
        raise ValueError("training history needs an 'epoch' column and at least one row")
    cols = [c for c in df.columns if c != "epoch" and pd.api.types.is_numeric_dtype(df[c])]
    if not cols:
        raise ValueError(f"training history has no numeric loss columns (has {list(df.columns)})")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c in cols:
        ax.plot(df["epoch"], df[c], marker="o", ms=3, label=c)
    if (df[cols].to_numpy() > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_n_fit(area_km2, n, mask, fit, truth: tuple[float, float] | None = None):
    """Learned n against drainage area (reaches in ``mask`` highlighted) with the fitted power law ``fit = (a, b)``
    and, for a twin, the truth law."""
    plt = pyplot()
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
    return fig


def plot_sim_obs(times, sim, obs, names, split: int | None = None, max_panels: int = 12):
    """Observed vs simulated discharge (m3/s) [T, G] at up to ``max_panels`` gauges (largest mean flow first);
    ``split`` marks the end of the training period."""
    import math

    sim, obs = np.asarray(sim), np.asarray(obs)
    with np.errstate(all="ignore"):
        order = np.argsort(-np.nan_to_num(np.nanmean(obs, 0), nan=-1))[:max_panels]
    k = len(order)
    ncol = min(3, k)
    nrow = int(math.ceil(k / ncol))
    plt = pyplot()
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
    return fig


def plot_reach_map(net: RiverNetwork, values: np.ndarray, title: str = "water temperature (degC)",
                   series: dict | None = None, time=None, unit: str = "degC"):
    """Scatter map of one value per reach at reach lat/lon (marker size by stream order), optionally beside time
    series (name -> [T] array)."""
    if not {"lat", "lon"} <= set(net.attrs):
        raise ValueError("plot_reach_map needs the network columns 'lat' and 'lon'")
    plt = pyplot()
    ncol = 2 if series else 1
    fig, axes = plt.subplots(1, ncol, figsize=(6.5 * ncol, 5.5))
    ax = axes[0] if series else axes
    size = 0.5 + 2.0 * net.attrs["order"].to_numpy(np.float64) if "order" in net.attrs else 2.0
    sc = ax.scatter(net.attrs["lon"], net.attrs["lat"], c=values, s=size, cmap="coolwarm", linewidths=0)
    fig.colorbar(sc, ax=ax, label=title)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    if series:
        for name, v in series.items():
            axes[1].plot(time if time is not None else np.arange(len(v)), v, label=name)
        axes[1].set_ylabel(unit)
        axes[1].legend(fontsize=7)
        axes[1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def resolve_map_values(net: RiverNetwork, flow: str | Path, time=None, variable: str = "streamflow"):
    """``(values [N], label)``: one time (default the last) of ``variable`` from a rivergraph output file
    (:func:`rivergraph.io.open_output`), in the network's reach order; reaches missing from the file are an
    error naming them."""
    from .io.cf import open_output, reach_ids_of

    with open_output(flow) as ds:
        if variable not in ds:
            raise ValueError(f"{flow}: no '{variable}' variable (has {sorted(ds.data_vars)})")
        t = ds["time"].values
        if time is None:
            i = len(t) - 1
        else:
            ts = pd.Timestamp(time)
            ts = ts.tz_convert(None) if ts.tz is not None else ts
            i = int(np.searchsorted(t, np.datetime64(ts)))
        if not 0 <= i < len(t):
            raise ValueError(f"time {time} is outside the file ({t[0]} .. {t[-1]})")
        rid = reach_ids_of(ds)
        q = pd.Series(ds[variable].isel(time=i).values, index=rid)
    ids = net.ids.astype(str) if rid.dtype.kind == "U" else net.ids
    missing = [x for x in ids if x not in q.index]
    if missing:
        raise ValueError(f"{flow} does not cover every reach of the network (missing {missing[:5]}, "
                         f"{len(missing)} in all)")
    unit = "m3/s" if variable == "streamflow" else ""
    return q.loc[ids].to_numpy(), f"{variable} ({unit}) at {pd.Timestamp(t[i])}"


def values_from_csv(net: RiverNetwork, path: str | Path, column: str) -> np.ndarray:
    """[N] values from a CSV with reach_id and ``column`` (reaches missing from it are an error)."""
    df = pd.read_csv(path)
    for c in ("reach_id", column):
        if c not in df:
            raise ValueError(f"{path}: missing column '{c}' (has {list(df.columns)})")
    ids = df["reach_id"].to_numpy()
    if net.ids.dtype.kind in "OUS":
        ids = ids.astype(str)
    s = pd.Series(df[column].to_numpy(np.float64), index=ids)
    missing = [i for i in net.ids if i not in s.index]
    if missing:
        raise ValueError(f"{path}: no '{column}' for reaches {missing[:10]} ({len(missing)} in all)")
    return s.loc[net.ids].to_numpy()
