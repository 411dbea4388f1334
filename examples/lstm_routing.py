"""Pretrained LSTM runoff -> lateral inflow -> Muskingum-Cunge routing -> outlet hydrograph (a coupling demo).

One command, offline, about 15-20 s on one CPU core:

    python examples/lstm_routing.py --out out/

What it does (every input is real data; the *combination* is not a real place):

1. Runs the pretrained NOAA-OWP neuralhydrology LSTM (hourly, trained on AORC) on the real CAMELS-US basin
   01022500 (Narraguagus River, Maine; 588 km2): its Daymet daily forcing, disaggregated to hourly as in
   ``examples/lstm_camels.py`` (precipitation uniform over the local day, temperature a tmin-tmax
   sinusoid, UTC-5), stateful from ``--warmup-start``. This basin's runoff depth has the best correlation
   with USGS flow of the four shipped basins (daily r 0.83, NSE 0.17; see ``docs/runoff.md``).
2. Treats that runoff depth (mm/h) as uniform over a real river network: the 37-reach NWM v2.1
   subnetwork of the Lower Colorado (Texas) draining to the reach of USGS gauge 08130500 (581 km2, chosen
   because its area is close to the CAMELS basin's). Each reach's local catchment area is its drainage
   area minus its upstream reaches' (the network's ``drainage_area_km2``, inverted from the NWM top-width
   law, see ``docs/network.md``); a :class:`~rivergraph.runoff.CatchmentReachMap` splits the basin's
   discharge among the reaches by those areas, and :class:`~rivergraph.runoff.LSTMRunoff` hands
   lateral inflow ``[T, 37]`` (m3/s) to the router.
3. Routes it with :class:`rivergraph.MuskingumCunge` (``mode='trapezoid'``, the Route_Link channel
   parameters, dt = 3600 s, hot start from the steady state of the first hour) from ``--start`` to
   ``--end`` and prints the router's mass balance and the largest event's peak attenuation and lag.

This demonstrates the runoff-routing coupling (units, time axis, mapping, mass balance, gradients are
available through ``trainable='head'``). It is **not** a prediction for any real river: Maine weather on a
Texas network has no observed counterpart, so nothing is scored against observations here (the LSTM's
own skill on CAMELS is measured by ``examples/lstm_camels.py``).

Writes ``<out>/lstm_routing_hydrograph.png`` and ``<out>/lstm_routing.csv`` (hourly, UTC: basin
precipitation mm/h, LSTM runoff mm/h, total lateral inflow m3/s = unrouted, routed outlet m3/s).

Data: CAMELS-US (Newman et al. 2015; Addor et al. 2017) from neuralhydrology's test data; NWM v2.1 Lower
Colorado Route_Link (NOAA-OWP/t-route test data); model format: neuralhydrology (Kratzert et al. 2022,
JOSS 7(71), 4050).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from rivergraph import runoff as R
from rivergraph.io.atomic import atomic_path
from rivergraph.datasets import load_lower_colorado
from rivergraph.graph import RiverNetwork, incremental_area_km2
from rivergraph.models.router import MassBalance, MuskingumCunge

DATA = Path(os.environ.get("RIVERGRAPH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
"""The reference data: ``$RIVERGRAPH_DATA``, else ``../shared/data`` beside the repository."""
CAMELS_DIR = DATA / "camels_us_4basins"
RUN_DIR = DATA / "pretrained_lstm_nwm_aorc_hourly"


@dataclass
class LSTMRoutingResult:
    """What :func:`main` returns (hourly on UTC; m3/s unless named otherwise)."""

    network: RiverNetwork           # the routed subnetwork
    local_area_km2: np.ndarray      # [N] local catchment area per reach (network order)
    table: pd.DataFrame             # hourly: precip_mm_h, runoff_mm_h, lateral_total_m3s, outlet_m3s
    balance: MassBalance            # the router's mass balance over the routed period
    png: Path
    csv: Path


def local_catchment_area(net: RiverNetwork) -> np.ndarray:
    """Local (incremental) catchment area per reach (km2): drainage area minus the drainage areas of the
    reaches flowing into it, floored at 0 (the inverted NWM areas decrease downstream on a few reaches of
    the full network; none in the default subnetwork). Sums to the outlets' drainage area when no floor
    binds."""
    return incremental_area_km2(net)


def subnetwork_above_gauge(gauge: str) -> RiverNetwork:
    """The Lower Colorado subnetwork draining to the reach of USGS ``gauge``."""
    net, _ = load_lower_colorado()
    g = net.gauges()
    pos = g.index[g == gauge]
    if len(pos) == 0:
        raise SystemExit(f"gauge {gauge} is not on the Lower Colorado network (gauges: {', '.join(sorted(g))})")
    return net.upstream_subnetwork([net.ids[int(pos[0])]])


def lstm_provider(net: RiverNetwork, basin: str, warmup_start: str, end: str, camels_dir: Path,
                  run_dir: Path, utc_offset_hours: float = -5.0, trainable: str = "none"):
    """LSTMRunoff for one CAMELS basin whose runoff depth is spread uniformly over ``net``'s local
    catchments. Returns ``(provider, local_area_km2, hourly forcing)``."""
    model = R.NeuralHydrologyLSTM.from_run_dir(run_dir)
    attrs = R.read_camels_attributes(camels_dir / "camels_attributes_v2.0", [basin], model.static_attributes)
    daily, _ = R.read_camels_daymet(camels_dir / "basin_mean_forcing" / "daymet" / f"{basin}_lump_cida_forcing_leap.txt")
    forcing = R.daily_forcing_to_hourly(daily.loc[warmup_start:end], utc_offset_hours)
    loc = local_catchment_area(net)
    reach_ids = net.ids.tolist()
    table = pd.DataFrame({"catchment_id": basin, "reach_id": reach_ids, "weight": loc / loc.sum()})
    mapping = R.CatchmentReachMap.from_table(table, [basin], reach_ids)
    # the basin's "area" is the network's: runoff depth (mm/h) x 581 km2 -> m3/s, split by local area
    provider = R.LSTMRunoff(model, {basin: forcing}, attrs, {basin: float(loc.sum())}, mapping=mapping,
                            trainable=trainable)
    return provider, loc, forcing


def _event(table: pd.DataFrame, hours: int = 72) -> dict:
    """Peak of the unrouted total lateral inflow and of the routed outlet around the largest outlet peak."""
    t_out = table["outlet_m3s"].idxmax()
    win = table.loc[t_out - pd.Timedelta(hours=hours):t_out + pd.Timedelta(hours=hours)]
    t_lat = win["lateral_total_m3s"].idxmax()
    return {"t_lat": t_lat, "t_out": t_out, "peak_lat": win["lateral_total_m3s"].max(),
            "peak_out": win["outlet_m3s"].max(), "lag_h": (t_out - t_lat) / pd.Timedelta(hours=1)}


def plot(table: pd.DataFrame, ev: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [1, 2, 2]})
    axes[0].plot(table.index, table["precip_mm_h"], color="tab:blue", lw=0.7)
    axes[0].set_ylabel("precip (mm/h)")
    axes[0].set_title(title, fontsize=8.5)
    for ax, sl in ((axes[1], slice(None)),
                   (axes[2], slice(ev["t_out"] - pd.Timedelta(days=4), ev["t_out"] + pd.Timedelta(days=6)))):
        w = table.loc[sl]
        ax.plot(w.index, w["lateral_total_m3s"], color="0.5", lw=1.0, label="total lateral inflow (LSTM, unrouted)")
        ax.plot(w.index, w["outlet_m3s"], color="tab:red", lw=1.0, label="routed outlet (Muskingum-Cunge)")
        ax.set_ylabel("Q (m3/s)")
    axes[1].legend(fontsize=8, loc="upper right")
    axes[2].set_title(f"largest event: peak {ev['peak_lat']:.1f} -> {ev['peak_out']:.1f} m3/s, "
                      f"lag {ev['lag_h']:.0f} h", fontsize=9)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> LSTMRoutingResult:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="output folder (default: out/)")
    ap.add_argument("--basin", default="01022500", help="CAMELS basin whose LSTM runoff drives the network")
    ap.add_argument("--gauge", default="08130500", help="USGS gauge whose upstream Lower Colorado subnetwork is routed")
    ap.add_argument("--warmup-start", default="2000-01-01", help="first local day run by the LSTM (spin-up)")
    ap.add_argument("--start", default="2000-10-01", help="first local day routed")
    ap.add_argument("--end", default="2001-09-30", help="last local day routed (inclusive)")
    ap.add_argument("--camels-dir", default=str(CAMELS_DIR))
    ap.add_argument("--run-dir", default=str(RUN_DIR))
    ap.add_argument("--utc-offset", type=float, default=-5.0, help="basin local standard time minus UTC (h)")
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    net = subnetwork_above_gauge(a.gauge)
    provider, loc, forcing = lstm_provider(net, a.basin, a.warmup_start, a.end, Path(a.camels_dir),
                                           Path(a.run_dir), a.utc_offset)
    first = (pd.Timestamp(a.start) - pd.Timedelta(hours=a.utc_offset)).tz_localize("UTC")
    times = provider.times[provider.times >= first]
    with torch.no_grad():
        lat = provider.lateral_inflow(times, net.ids.tolist()).double()  # [T, N] m3/s, network order
        runoff = provider.runoff(times)[:, 0].double()                   # mm/h
        router = MuskingumCunge(net, dt=3600.0, mode="trapezoid")
        Q = router(lat, output_positions=net.outlets)                           # [T, 1] m3/s
    bal = router.balance
    table = pd.DataFrame({"precip_mm_h": forcing["APCP_surface"].reindex(times).to_numpy(),
                          "runoff_mm_h": runoff.numpy(), "lateral_total_m3s": lat.sum(1).numpy(),
                          "outlet_m3s": Q[:, 0].numpy()}, index=times.rename("time"))
    ev = _event(table)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "lstm_routing.csv"
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, float_format="%.9g")
    title = (f"LSTM runoff of CAMELS {a.basin} (Daymet -> hourly), spread over the {len(net)}-reach NWM Lower Colorado "
             f"subnetwork above USGS {a.gauge} ({loc.sum():.0f} km2)\ncoupling demonstration, not a prediction "
             f"for any real river")
    png = plot(table, ev, out / "lstm_routing_hydrograph.png", title)

    print(f"CAMELS {a.basin} LSTM runoff (stateful from {a.warmup_start}) -> {len(net)} reaches above USGS "
          f"{a.gauge} (depth {net.depth}, local areas {loc.min():.2f}..{loc.max():.1f} km2, total {loc.sum():.1f} km2)")
    print(f"routed {times[0]} .. {times[-1]} ({len(times)} hourly steps), Muskingum-Cunge trapezoid, dt 3600 s")
    print(f"mean runoff {table.runoff_mm_h.mean() * 24:.3f} mm/day; mean lateral inflow "
          f"{table.lateral_total_m3s.mean():.3f} m3/s; mean outlet {table.outlet_m3s.mean():.3f} m3/s")
    print(f"mass balance: {bal}")
    print(f"largest event: unrouted peak {ev['peak_lat']:.2f} m3/s at {ev['t_lat']}, routed peak "
          f"{ev['peak_out']:.2f} m3/s at {ev['t_out']} (attenuation {1 - ev['peak_out'] / ev['peak_lat']:.1%}, "
          f"lag {ev['lag_h']:.0f} h)")
    print(f"wrote {png} and {csv}")
    return LSTMRoutingResult(net, loc, table, bal, png, csv)


if __name__ == "__main__":
    main()
