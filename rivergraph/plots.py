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

__all__ = ["plot_hydrographs", "plot_n_vs_area", "plot_network_map", "plot_training", "network_lines", "save",
           "register_cli"]


def _plt():
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
    _plt().close(fig)
    return path


def plot_hydrographs(sim: pd.DataFrame, obs: pd.DataFrame | None = None, gages: Sequence[str] | None = None,
                     ncols: int = 3):
    """Simulated (and observed) discharge (m3/s) at gauges, one panel each, with NSE where both overlap.

    Args:
        sim, obs: long tables (time, gage, discharge_m3s), e.g. :func:`rivergraph.io.read_gauge_csv` and
            ``load_lower_colorado()[1]["usgs_obs"]`` (rows with ``quality == 0`` are treated as missing).
        gages: which gauges (default: every gauge in ``sim``, at most 12).
    """
    from .metrics import nse

    for name, df in (("sim", sim), ("obs", obs)):
        if df is not None and not {"time", "gage", "discharge_m3s"} <= set(df.columns):
            raise ValueError(f"{name} table needs columns time, gage, discharge_m3s; has {list(df.columns)}")
    all_g = list(dict.fromkeys(sim["gage"].astype(str)))
    gages = all_g[:12] if gages is None else [str(g) for g in gages]
    missing = [g for g in gages if g not in all_g]
    if missing:
        raise ValueError(f"gauge(s) {missing[:10]} not in the simulated table (has {len(all_g)} gauges)")
    if obs is not None and "quality" in obs:
        obs = obs[obs["quality"] != 0]
    plt = _plt()
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
            if len(both) >= 2:
                import torch

                v = float(nse(torch.tensor(both["s"].to_numpy()), torch.tensor(both["o"].to_numpy())))
                if np.isfinite(v):
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
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
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


# ------------------------------------------------------------------------------------------------ CLI
def _network(spec: str) -> RiverNetwork:
    if spec == "lower_colorado":
        from .datasets import load_lower_colorado

        return load_lower_colorado()[0]
    from .io.readers import read_network

    return read_network(spec)


def _history(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"training history {p} does not exist")
    if p.suffix in (".pt", ".pth", ".ckpt"):
        from .training.trainer import load_checkpoint

        return pd.DataFrame(load_checkpoint(p)["history"])
    if p.suffix == ".json":
        return pd.read_json(p)
    return pd.read_csv(p)


def _cmd_hydrograph(args) -> int:
    from .io.writer import read_gauge_csv

    sim = read_gauge_csv(args.sim)
    obs = None
    if args.obs == "lower_colorado":
        from .datasets import load_lower_colorado

        obs = load_lower_colorado()[1]["usgs_obs"]
    elif args.obs:
        obs = read_gauge_csv(args.obs)
    fig = plot_hydrographs(sim, obs, args.gages)
    print(f"hydrographs at {len(args.gages or []) or min(12, sim['gage'].nunique())} gauges -> {save(fig, args.out)}")
    return 0


def _cmd_n_vs_area(args) -> int:
    net = _network(args.network)
    n = None
    if args.values:
        n = _values_for(net, args.values, args.column)
    fig = plot_n_vs_area(net, n)
    print(f"n vs drainage area for {len(net)} reaches -> {save(fig, args.out)}")
    return 0


def _values_for(net: RiverNetwork, path: str, column: str) -> np.ndarray:
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


def _cmd_map(args) -> int:
    net = _network(args.network)
    if args.flow:
        import xarray as xr

        opener = xr.open_zarr if str(args.flow).rstrip("/").endswith(".zarr") else xr.open_dataset
        with opener(args.flow) as ds:
            if "streamflow" not in ds:
                raise ValueError(f"{args.flow}: no 'streamflow' variable")
            t = ds["time"].values
            i = len(t) - 1 if args.time is None else int(np.searchsorted(t, np.datetime64(pd.Timestamp(
                args.time).tz_localize(None) if pd.Timestamp(args.time).tz is None else
                pd.Timestamp(args.time).tz_convert(None))))
            if not 0 <= i < len(t):
                raise ValueError(f"time {args.time} is outside the file ({t[0]} .. {t[-1]})")
            rid = ds["reach_id"].values
            q = pd.Series(ds["streamflow"].values[i], index=rid)
        if not np.isin(net.ids, rid).all():
            raise ValueError(f"{args.flow} does not cover every reach of the network")
        values, label = q.loc[net.ids].to_numpy(), f"Q (m3/s) at {pd.Timestamp(t[i])}"
    elif args.values:
        values, label = _values_for(net, args.values, args.column), args.column
    else:
        values, label = args.column, args.column
    fig = plot_network_map(net, values, label, log=args.log)
    print(f"map of {label} on {len(net)} reaches -> {save(fig, args.out)}")
    return 0


def _cmd_training(args) -> int:
    df = _history(args.history)
    fig = plot_training(df)
    print(f"training curves, {len(df)} epochs -> {save(fig, args.out)}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``rivergraph plot hydrograph|n-vs-area|map|training``."""
    p = subparsers.add_parser("plot", help="figures: hydrographs, n vs area, network maps, training curves",
                              description="Draw a figure to a file (.png, .pdf, .svg).")
    sub = p.add_subparsers(dest="plot", metavar="FIGURE", required=True)
    net_help = "'lower_colorado' (shipped) or a network file for rivergraph.read_network"

    h = sub.add_parser("hydrograph", help="simulated vs observed discharge at gauges",
                       description="Hydrographs at gauges from a gauge CSV (rivergraph.io.route_to_file).")
    h.add_argument("--sim", required=True, help="simulated gauge CSV (time, gage, reach_id, discharge_m3s)")
    h.add_argument("--obs", default=None, help="observed: 'lower_colorado' (shipped USGS) or a CSV (time, gage, "
                                               "discharge_m3s)")
    h.add_argument("--gages", nargs="+", default=None, help="gauge ids (default: the first 12)")
    h.add_argument("--out", required=True, help="figure file")
    h.set_defaults(func=_cmd_hydrograph)

    n = sub.add_parser("n-vs-area", help="Manning's n against drainage area",
                       description="Scatter of Manning's n against drainage area with a power-law fit.")
    n.add_argument("--network", default="lower_colorado", help=net_help)
    n.add_argument("--values", default=None, help="CSV of learned values (reach_id + --column); default: the "
                                                  "network's n column")
    n.add_argument("--column", default="n", help="column of --values (default n)")
    n.add_argument("--out", required=True, help="figure file")
    n.set_defaults(func=_cmd_n_vs_area)

    m = sub.add_parser("map", help="map of a parameter or discharge over the network",
                       description="Colour the network's reaches by an attribute column, a CSV of values, or "
                                   "the discharge in a rivergraph netCDF/zarr output at one time.")
    m.add_argument("--network", default="lower_colorado", help=net_help)
    m.add_argument("--column", default="n", help="attribute column (or column of --values) to map")
    m.add_argument("--values", default=None, help="CSV with reach_id and --column")
    m.add_argument("--flow", default=None, help="rivergraph output (.nc/.zarr) to map streamflow from")
    m.add_argument("--time", default=None, help="time (UTC) to map from --flow (default: the last)")
    m.add_argument("--log", action="store_true", help="logarithmic colour scale")
    m.add_argument("--out", required=True, help="figure file")
    m.set_defaults(func=_cmd_map)

    t = sub.add_parser("training", help="training loss curves",
                       description="Loss per epoch from a training checkpoint (.pt) or a history CSV/JSON.")
    t.add_argument("history", help="checkpoint .pt (its history) or CSV/JSON with epoch, train_loss, ...")
    t.add_argument("--out", required=True, help="figure file")
    t.set_defaults(func=_cmd_training)
