#!/usr/bin/env python3
"""Reproduce the National Water Model's channel routing on its own Lower Colorado inputs, and compare.

    python examples/route_lower_colorado.py [--out lower_colorado_out] [--hours 27] [--no-trapezoid]

Offline, on the data shipped in network_data/ (NWM v2.1 Route_Link and LAKEPARM, 28 hourly CHRTOUT
files of the NWM v3.0 retrospective, USGS 15-minute observations). Set-up as the NWM: the exact inflow
``qSfcLatRunoff + qBucket`` (file T's inflow used during the hour ending at T), the initial state from the
first file's streamflow (instantaneous at 13:00), dt = 300 s, 27 hours; each output is the flow at the
end of its hour (CHRTOUT streamflow is instantaneous). Variants of ``mode="nwm"``:

- ``prescribed``: the 30 lake outlets' outflow prescribed from the NWM's streamflow (linear between hours);
- ``level_pool``: the 30 lakes routed by level pool from LAKEPARM, nothing prescribed (initial lake levels
  inverted from the outlets' first-hour outflow);
- and, unless ``--no-trapezoid``, rivergraph's physics-first ``trapezoid`` mode on the same inputs.

Prints per variant the mass balance, agreement with the NWM (median NSE over reaches whose NWM flow varies,
over those at or below a lake, max |dQ|) and at USGS gauges (observations at the output instants) the mean
absolute error of the variant and of the NWM. Writes ``nwm_parity_prescribed.nc`` and
``nwm_parity_level_pool.nc`` (CF netCDF, ``feature_id``, UTC time, every reach; NaN on lake-internal links as
the NWM), ``gauges.csv`` and ``hydrographs.png`` to --out. See docs/routing.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rivergraph.datasets import load_lower_colorado
from rivergraph.io import atomic_path, write_discharge
from rivergraph.metrics import nse
from rivergraph.models import MuskingumCunge, RoutingState


def nwm_router(net, data, variant: str, dt: float = 300.0) -> MuskingumCunge:
    """The ``mode="nwm"`` router of a parity variant (``prescribed`` or ``level_pool``)."""
    lakes = data["lakeparm"]
    router = MuskingumCunge(net, dt=dt, forcing_dt=data["dt_s"], mode="nwm", output="end", nwm={"lakes": lakes})
    if variant == "prescribed":
        outlets = router.nwm.lake_outlets
        router = MuskingumCunge(net, dt=dt, forcing_dt=data["dt_s"], mode="nwm", output="end",
                                nwm={"lakes": lakes, "prescribed": outlets})
    elif variant != "level_pool":
        raise ValueError(f"unknown variant {variant}")
    return router


def run_variant(net, data, variant: str, hours: int = 27, dt: float = 300.0):
    """Route hours 1..hours from the first file's state; returns ``(Q [hours, N], router)``."""
    router = nwm_router(net, data, variant, dt)
    q = data["q_lateral"].double()[1:hours + 1]
    ref = data["streamflow"].double()
    kw = {}
    if variant == "prescribed":
        kw["prescribed_flow"] = ref[1:hours + 1][:, router.nwm.prescribed]
    with torch.no_grad():
        Q = router(q, Q0=ref[0], **kw)
    return Q, router


def below_lakes(net, outlets) -> np.ndarray:
    """Mask of the reaches at or downstream of any of the given lake outlets."""
    mask = np.zeros(len(net), dtype=bool)
    for j in np.asarray(outlets, dtype=np.int64):
        while j >= 0 and not mask[j]:
            mask[j] = True
            j = int(net.downstream[j])
    return mask


def parity_figures(Q: torch.Tensor, ref: torch.Tensor, below: np.ndarray) -> dict:
    """Agreement with the NWM at the reaches where it reports flow: median NSE over reaches whose NWM flow
    varies (std > 1e-6 m3/s), the same at or below a lake, max |dQ| (m3/s) and its reach position, and the
    share of reach-hours within 0.01 m3/s of the NWM."""
    ok = ~torch.isnan(ref).any(0) & ~torch.isnan(Q).any(0)
    varies = ok & (ref.std(0) > 1e-6)
    e = nse(Q[:, varies], ref[:, varies]).numpy()
    vb = varies.numpy() & below
    eb = nse(Q[:, torch.as_tensor(vb)], ref[:, torch.as_tensor(vb)]).numpy()
    d = (Q[:, ok] - ref[:, ok]).abs()
    col = int(d.max(0).values.argmax())
    return {"reaches": int(ok.sum()), "varying": int(varies.sum()), "median_nse": float(np.median(e)),
            "below_lake": int(vb.sum()), "median_nse_below_lake": float(np.median(eb)),
            "max_abs_dq": float(d.max()), "max_abs_dq_pos": int(ok.nonzero().flatten()[col]),
            "within_0.01": float((d <= 0.01).double().mean())}


def observations_at(obs: pd.DataFrame, times: pd.DatetimeIndex) -> pd.DataFrame:
    """USGS discharge (m3/s) at the output instants (the 15-minute value stamped at each hour; quality > 0)."""
    ok = obs[obs["quality"] > 0]
    return ok.pivot_table(index="time", columns="gage", values="discharge_m3s", aggfunc="mean").reindex(times)


def gauge_figures(Q, ref, gauges: pd.Series, obs: pd.DataFrame) -> dict:
    """Median over observed gauges of the mean absolute error (m3/s) of Q and of the NWM, and the number of
    gauges; a gauge on a lake-internal reach (no flow computed) is skipped."""
    err_sim, err_nwm = [], []
    for gage, pos in gauges.items():
        if gage not in obs or obs[gage].isna().all() or torch.isnan(Q[:, pos]).any():
            continue
        o = obs[gage].to_numpy()
        m = ~np.isnan(o)
        err_sim.append(np.abs(Q[:, pos].numpy()[m] - o[m]).mean())
        err_nwm.append(np.abs(ref[:, pos].numpy()[m] - o[m]).mean())
    return {"gauges": len(err_sim), "mae_median": float(np.median(err_sim)), "mae_nwm_median": float(np.median(err_nwm)),
            "mae_mean": float(np.mean(err_sim)), "mae_nwm_mean": float(np.mean(err_nwm))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="lower_colorado_out", help="output folder")
    ap.add_argument("--hours", type=int, default=27, help="hours routed after the first file (at most 27)")
    ap.add_argument("--no-trapezoid", action="store_true", help="skip the physics-first trapezoid comparison")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, data = load_lower_colorado()
    H = a.hours
    times = data["time"][1:H + 1]
    ref = data["streamflow"].double()[1:H + 1]
    obs = observations_at(data["usgs_obs"], times)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lake_outlets = nwm_router(net, data, "level_pool").nwm.lake_outlets
    below = below_lakes(net, lake_outlets)
    print(f"Lower Colorado: {len(net):,} reaches, {len(lake_outlets)} lakes, {H} hours at dt = 300 s; "
          f"{int(below.sum())} reaches at or below a lake")
    results, rows = {}, []
    for variant in ("prescribed", "level_pool"):
        Q, router = run_variant(net, data, variant, H)
        results[variant] = Q
        write_discharge(Q, net, times, out / f"nwm_parity_{variant}.nc",
                        attrs={"source": f"rivergraph mode nwm ({variant}), dt 300 s, lagged coupling"})
        _report(variant, router.balance, parity_figures(Q, ref, below), gauge_figures(Q, ref, data["gauge_reach"], obs))
    if not a.no_trapezoid:
        q = data["q_lateral"].double()
        Q0 = torch.nan_to_num(data["streamflow"][0].double(), nan=0.0)
        down = torch.as_tensor(net.downstream)
        I0 = torch.zeros(len(net), dtype=torch.float64).index_add_(0, down[down >= 0], Q0[down >= 0])
        router = MuskingumCunge(net, dt=300.0, forcing_dt=data["dt_s"], mode="trapezoid", output="end",
                                scheme="standard")
        Q = router(q[1:H + 1], state=RoutingState(Q0, I0))
        results["trapezoid"] = Q.detach()
        _report("trapezoid (standard)", router.balance, parity_figures(Q.detach(), ref, below),
                gauge_figures(Q.detach(), ref, data["gauge_reach"], obs))
    for gage, pos in data["gauge_reach"].items():
        if gage not in obs or obs[gage].isna().all():
            continue
        for i, t in enumerate(times):
            rows.append({"time": t, "gage": gage, "reach_id": net.ids[pos], "nwm_m3s": float(ref[i, pos]),
                         "usgs_m3s": obs[gage].iloc[i], **{f"{k}_m3s": float(v[i, pos]) for k, v in results.items()}})
    table = pd.DataFrame(rows)
    with atomic_path(out / "gauges.csv") as tmp:
        table.to_csv(tmp, index=False)
    _plot(table, list(results), out / "hydrographs.png")
    print(f"\nwrote {', '.join(f'nwm_parity_{v}.nc' for v in ('prescribed', 'level_pool'))}, gauges.csv and "
          f"hydrographs.png to {out}")


def _report(name, balance, f, g) -> None:
    print(f"\n[{name}] {balance}")
    print(f"  vs NWM at {f['reaches']} reaches: median NSE {f['median_nse']:.3f} over {f['varying']} varying, "
          f"{f['median_nse_below_lake']:.3f} over the {f['below_lake']} at or below a lake; max |dQ| "
          f"{f['max_abs_dq']:.3f} m3/s; {f['within_0.01']:.0%} of reach-hours within 0.01 m3/s")
    print(f"  at {g['gauges']} USGS gauges: MAE median {g['mae_median']:.3f} m3/s (NWM {g['mae_nwm_median']:.3f}), "
          f"mean {g['mae_mean']:.3f} (NWM {g['mae_nwm_mean']:.3f})")


def _plot(table: pd.DataFrame, variants, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    busiest = table.groupby("gage")["nwm_m3s"].mean().sort_values().index[-4:]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    for ax, gage in zip(axes.flat, busiest):
        g = table[table.gage == gage]
        for v, style in zip(variants, ("-", "--", "-.")):
            ax.plot(g.time, g[f"{v}_m3s"], style, label=f"rivergraph {v}")
        ax.plot(g.time, g.nwm_m3s, "k:", label="NWM v3.0 retrospective")
        ax.plot(g.time, g.usgs_m3s, "ko", ms=3, label="USGS")
        ax.set_title(f"USGS {gage}")
        ax.set_ylabel("discharge (m3/s)")
    axes.flat[0].legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
