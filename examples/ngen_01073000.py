"""The NextGen pipeline on real data: NextGen hydrofabric + AORC forcing -> pretrained hourly LSTM ->
lateral inflow per flowpath -> Muskingum-Cunge with the NWM channel parameters -> discharge at the gauge.

    rivergraph route examples/configs/ngen_01073000.yaml          # the run: discharge.nc, gauges.csv, summary.json
    python examples/ngen_01073000.py examples/configs/ngen_01073000.yaml --out out/ngen_01073000   # + figures

Case: USGS 01073000, Oyster River near Durham NH (a CAMELS basin), NextGen hydrofabric v2 subset of 5
flowpaths (NOAA-OWP/ngen ``data/gauge_01073000``) with real hourly AORC-format forcing per catchment for
2015-12-01 .. 2015-12-30. No streamflow observations ship for this month: nothing is scored.

This script runs the same config through :func:`rivergraph.runs.route.run_route` (what ``rivergraph route`` does:
the ``lstm`` runoff provider, ``mapping.id_replace`` cat- -> wb-, chunked routing into CF netCDF + gauge CSV, mass
balance in ``summary.json``) and then draws the gauge hydrograph (with basin precipitation and the unrouted
lateral inflow) and a map of the divides (December runoff, mm) and flowpaths (mean discharge), reading the
hydrofabric with :func:`rivergraph.io.read_hydrofabric`. See docs/route_your_own.md.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from rivergraph.config.base import resolve_path
from rivergraph.io import read_gauge_csv
from rivergraph.io.forcing import read_ngen_forcing
from rivergraph.io.hydrofabric import Hydrofabric, read_hydrofabric
from rivergraph.runs.route import lstm_runoff_source, run_route

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "ngen_01073000.yaml"


@dataclass
class NgenRun:
    """What :func:`run` returns."""

    hydrofabric: Hydrofabric
    summary: dict                     # rivergraph route's summary.json (wall time, mass balance, files)
    times: pd.DatetimeIndex
    gauge: pd.Series                  # discharge at the gauge's flowpath (m3/s), hourly UTC
    lateral_total: pd.Series          # sum of the lateral inflow over all flowpaths (m3/s)
    precip_mm_h: pd.Series            # area-weighted basin precipitation (mm/h)
    runoff_mm_h: pd.DataFrame         # LSTM runoff per catchment (mm/h)
    wall_s: float                     # the whole script: route run, re-read, figures
    pngs: list[Path]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run(config_path: str | Path = DEFAULT_CONFIG, out: str | Path | None = None, overrides: dict | None = None,
        plots: bool = True) -> NgenRun:
    """``rivergraph route`` on the config (``overrides``, nested like the config, replace entries; ``out``
    replaces ``output.dir``), then figures."""
    from rivergraph.config.base import read_yaml_mapping
    from rivergraph.config.route import RouteConfig

    t0 = time.perf_counter()
    config_path = Path(config_path)
    base = config_path.resolve().parent
    raw = _merge(read_yaml_mapping(config_path), overrides or {})
    if out is not None:
        raw = _merge(raw, {"output": {"dir": str(Path(out).resolve())}})
    cfg = RouteConfig.model_validate(raw)
    summary = run_route(cfg, base=base)
    hf = read_hydrofabric(resolve_path(cfg.network.source, base))
    g = read_gauge_csv(summary["gauges"])
    gauge = g.set_index("time")["discharge_m3s"].rename("Q_m3s")
    times = pd.DatetimeIndex(gauge.index)
    # the LSTM runoff again (5 catchments: a second), for the figures: runoff per divide, lateral inflow
    src = lstm_runoff_source(cfg.runoff, hf.network, base)
    pos = src.times.get_indexer(times)
    runoff = pd.DataFrame(src.read(slice(int(pos[0]), int(pos[-1]) + 1)), index=times, columns=src.catchment_ids)
    area = hf.catchment_area_km2.reindex(src.catchment_ids)
    lateral = (runoff * area.to_numpy() / 3.6).sum(axis=1).rename("lateral_m3s")  # mm/h x km2 / 3.6 -> m3/s
    forcing = read_ngen_forcing(resolve_path(cfg.runoff.forcing, base), src.catchment_ids)
    p = pd.DataFrame({c: forcing[c]["precip_rate"].reindex(times).to_numpy() * 3600.0 for c in src.catchment_ids},
                     index=times)
    precip = ((p * area.to_numpy()).sum(axis=1) / area.sum()).rename("precip_mm_h")
    res = NgenRun(hf, summary, times, gauge, lateral, precip, runoff, 0.0, [])
    out_dir = Path(summary["gauges"]).parent
    pd.DataFrame({"precip_mm_h": precip, "lateral_total_m3s": lateral, "gauge_m3s": gauge.to_numpy()}).rename_axis(
        "time").to_csv(out_dir / "gauge_hydrograph.csv", float_format="%.6g")
    if plots:
        res.pngs = figures(res, out_dir)
    res.wall_s = time.perf_counter() - t0
    return res


def figures(res: NgenRun, out: Path) -> list[Path]:
    """The gauge hydrograph (with precipitation and unrouted lateral inflow) and a map."""
    import xarray as xr

    from rivergraph.plots import plot_network_map, pyplot, save

    plt = pyplot()
    gid, fp = next(iter(res.hydrofabric.gauges.items()))
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.2]})
    ax0.bar(res.times, res.precip_mm_h, width=1 / 24, color="tab:blue")
    ax0.set_ylabel("precip (mm/h)")
    ax0.invert_yaxis()
    ax1.plot(res.times, res.lateral_total, color="0.6", lw=1, label="lateral inflow, all flowpaths (unrouted)")
    ax1.plot(res.gauge.index, res.gauge.to_numpy(), color="tab:red", lw=1.4, label=f"routed discharge at {fp}")
    ax1.set_ylabel("discharge (m3/s)")
    ax1.legend(fontsize=8)
    ax0.set_title(f"USGS {gid} (Oyster River, NH), NextGen hydrofabric, AORC -> LSTM -> Muskingum-Cunge; "
                  "no observations for this month", fontsize=9)
    fig.autofmt_xdate()
    png1 = save(fig, out / "hydrograph.png")
    net = res.hydrofabric.network
    with xr.open_dataset(res.summary["discharge"]) as ds:
        rid = ds["feature_id"].values.astype(str)  # the CF writer's reach-id coordinate, network order
        qmean = pd.Series(ds["streamflow"].mean("time").values, index=rid)
    fig = plot_network_map(net, qmean.reindex(net.ids.astype(str)).to_numpy(), label="mean discharge (m3/s)")
    ax = fig.axes[0]
    dv = res.hydrofabric.divides.copy()
    dv["runoff_mm"] = res.runoff_mm_h.sum().reindex(dv["divide_id"]).to_numpy()
    dv.plot(ax=ax, column="runoff_mm", cmap="Blues", alpha=0.45, edgecolor="k", linewidth=0.5, zorder=0,
            legend=True, legend_kwds={"label": "LSTM runoff over the period (mm)", "shrink": 0.7})
    for _, r in dv.iterrows():
        c = r.geometry.representative_point()
        ax.annotate(r["divide_id"], (c.x, c.y), fontsize=7, ha="center")
    nx = res.hydrofabric.nexus
    if len(nx) and hasattr(nx, "geometry"):
        nx.plot(ax=ax, color="k", markersize=12, zorder=3)
    ax.set_xlabel("x (m, EPSG:5070)")
    ax.set_ylabel("y (m, EPSG:5070)")
    ax.set_title(f"divides, flowpaths, nexus; gauge USGS {gid} below {fp}", fontsize=9)
    png2 = save(fig, out / "map.png")
    return [png1, png2]


def main(argv: Sequence[str] | None = None) -> NgenRun:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG))
    ap.add_argument("--out", default=None, help="output folder (default: the config's output.dir)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = run(args.config, args.out)
    hf, q, s = res.hydrofabric, res.gauge, res.summary
    gid, fp = next(iter(hf.gauges.items()))
    print(f"network: {len(hf.network)} flowpaths, {len(hf.divides)} divides ({hf.catchment_area_km2.sum():.2f} km2); "
          f"gauge USGS {gid} at {fp}")
    print(f"basin precipitation {res.precip_mm_h.sum():.1f} mm; LSTM runoff per divide "
          f"{res.runoff_mm_h.sum().round(1).to_dict()} mm")
    print(f"discharge at {fp}: mean {q.mean():.3f} m3/s, max {q.max():.3f} m3/s at {q.idxmax()}, min {q.min():.3f} m3/s")
    print(f"whole script {res.wall_s:.1f} s (route run {s['wall_s']:.1f} s); no observations ship for this month, "
          "so no score")
    for p in res.pngs:
        print(f"wrote {p}")
    return res


if __name__ == "__main__":
    main()
