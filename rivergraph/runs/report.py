"""Split report of a ``rivergraph train`` run on real gauges: daily NSE / KGE / volume ratio per gauge for the
training and held-out gauges in the training and test periods, for the learned parameters, the network's own
reference n (``evaluation.baseline_n``) and another model's routed flow (``evaluation.reference``), with plots
(held-out hydrographs, training curve, learned n against latitude)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..graph.network import RiverNetwork
from ..io.atomic import atomic_path
from ..training.gauge_splits import daily_means, split_scores
from ..training import route_gauges, twin_observations

__all__ = ["write_split_report"]


def write_split_report(cfg, net: RiverNetwork, pnet, q: torch.Tensor, times: pd.DatetimeIndex, obs: torch.Tensor,
                       gauges: np.ndarray, gauge_ids: np.ndarray, held: np.ndarray, fixed: dict, train_steps: int,
                       warm_steps: int) -> str:
    """Write ``split_scores.csv`` (long table), ``split_summary.json`` (medians), ``daily_discharge.npz`` and plots
    into ``cfg.output.dir``; returns summary lines. Scores are on daily means; the training period starts after the
    warm-up, the test period is every day from ``train_steps`` on."""
    out = Path(cfg.output.dir)
    dt = cfg.routing.dt_s
    spd = int(round(86400.0 / dt))
    if abs(86400.0 / dt - spd) > 1e-9:
        raise ValueError("split scores are daily: routing.dt_s must divide a day")
    mode = cfg.routing.mode
    sims = {"learned": daily_means(route_gauges(pnet, net, q, gauges, fixed=fixed, dt_s=dt, mode=mode).numpy(), spd)}
    if cfg.evaluation.baseline_n:
        n0 = net.attr(cfg.evaluation.baseline_n)
        sims[f"network_{cfg.evaluation.baseline_n}"] = daily_means(
            twin_observations(net, q, gauges, n0, fixed=fixed, dt_s=dt, mode=mode).numpy(), spd)
    D = q.shape[0] // spd
    if cfg.evaluation.reference:
        from ..io.nhm import read_segment_series

        t_ref, ref = read_segment_series(cfg.evaluation.reference, net)
        day0 = times[0].tz_convert(None) if times.tz is not None else times[0]
        if pd.Timestamp(t_ref[0]) != day0.normalize() or len(t_ref) != D:
            raise ValueError(f"evaluation.reference covers {t_ref[0]}..{t_ref[-1]}, the forcing {times[0]}.. "
                             f"({D} days)")
        sims["reference"] = ref[:, gauges]
    obs_d = daily_means(obs.double().numpy(), spd)
    periods = {"train": slice(int(np.ceil(warm_steps / spd)), train_steps // spd), "test": slice(train_steps // spd, D)}
    tab = split_scores(sims, obs_d, gauge_ids, held, periods)
    with atomic_path(out / "split_scores.csv") as tmp:
        tab.to_csv(tmp, index=False)
    med = tab.groupby(["model", "gauges", "period"])[["nse", "kge", "volume_ratio"]].median()
    summary = {f"{m}|{g}|{p}": {k: float(v) for k, v in row.items()} for (m, g, p), row in med.iterrows()}
    summary["counts"] = {"train_gauges": int((~held).sum()), "holdout_gauges": int(held.sum()),
                         "train_days": periods["train"].stop - periods["train"].start,
                         "test_days": D - periods["test"].start}
    with atomic_path(out / "split_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    days = pd.date_range((times[0].tz_convert(None) if times.tz is not None else times[0]).normalize(), periods=D)
    with atomic_path(out / "daily_discharge.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, days=days.to_numpy().astype("datetime64[D]"), gage=np.asarray(gauge_ids, dtype=str),
                                holdout=held, observed=obs_d, **{f"sim_{k}": v for k, v in sims.items()})
    lines = ["daily median NSE / KGE (gauges x period):"]
    for (m, g, p), row in med.iterrows():
        n = int((held if g == "holdout" else ~held).sum())
        lines.append(f"  {m:>12s} {g:>7s} ({n:3d}) {p:5s}: NSE {row['nse']:.3f}  KGE {row['kge']:.3f}  "
                     f"volume ratio {row['volume_ratio']:.3f}")
    if cfg.output.plots:
        _plot_holdout(days, sims, obs_d, gauge_ids, held, train_steps // spd, out / "hydrographs_holdout.png")
        with torch.no_grad():
            n_l = pnet.parameters_for(net)["n"].double().numpy() if "n" in pnet.specs else None
        if n_l is not None and "lat" in net.attrs:
            _plot_n_lat(net, n_l, out / "n_vs_latitude.png")
    return "\n".join(lines)


def _plot_holdout(days, sims, obs_d, ids, held, split_day, path, panels: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import save

    cols = np.flatnonzero(held) if held.any() else np.arange(len(ids))
    cols = cols[np.argsort(-np.nanmean(obs_d[:, cols], 0))][:panels]
    fig, axes = plt.subplots(len(cols), 1, figsize=(9, 2.2 * len(cols)), squeeze=False, sharex=True)
    style = {"reference": ("C2", "PRMS routed"), "learned": ("C3", "rivergraph learned n")}
    t = slice(split_day, len(days))                       # the test period, linear axis: peaks and recessions
    order = sorted(sims, key=lambda k: k == "learned")    # learned drawn last (on top)
    for ax, j in zip(axes[:, 0], cols):
        ax.plot(days[t], obs_d[t, j], "k", lw=1.3, label="observed")
        for k in order:
            c, lab = style.get(k, ("C0", f"rivergraph {k.replace('network_', 'NHM ')}"))
            ax.plot(days[t], sims[k][t, j], color=c, lw=0.9, label=lab)
        ax.set_title(f"{ids[j]} ({'held out' if held[j] else 'training'} gauge), test period", fontsize=9)
        ax.set_ylabel("Q (m3/s)", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    save(fig, path, dpi=110)


def _plot_n_lat(net: RiverNetwork, n: np.ndarray, path) -> None:
    """The NHM files give segment latitude only (no longitude or geometry): learned n against latitude, coloured by
    drainage area, instead of a map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import save

    fig, ax = plt.subplots(figsize=(6, 4.5))
    sc = ax.scatter(net.attr("lat"), n, c=np.log10(net.attr("drainage_area_km2")), s=8, cmap="viridis")
    fig.colorbar(sc, label="log10 drainage area (km2)")
    ax.set(xlabel="segment latitude (deg N; no longitude in the NHM files)", ylabel="learned Manning's n",
           yscale="log")
    fig.tight_layout()
    save(fig, path, dpi=110)
