"""The NextGen pipeline on real data: NextGen hydrofabric + AORC forcing -> pretrained hourly LSTM ->
lateral inflow per flowpath -> Muskingum-Cunge with the NWM channel parameters -> discharge at the gauge.

    python examples/ngen_01073000.py examples/configs/ngen_01073000.yaml --out out/ngen_01073000

Case: USGS 01073000, Oyster River near Durham NH (a CAMELS basin), NextGen hydrofabric v2 subset of 5
flowpaths (NOAA-OWP/ngen ``data/gauge_01073000``) with real hourly AORC-format forcing per catchment for
2015-12-01 .. 2015-12-30. No streamflow observations ship for this month: nothing is scored.

Steps (each a package call, so the same run is a few lines of Python):

1. :func:`rivergraph.io.read_hydrofabric`: flowpaths ``wb-N`` with ``flowpath_attributes`` joined, divides
   ``cat-N`` with their areas, the gauge at nexus ``nex-11225`` -> flowpath ``wb-11224``.
2. :func:`rivergraph.io.read_ngen_forcing` and :func:`rivergraph.runoff.lstm_runoff` (inputs
   ``aorc_ngen``: ``APCP_surface`` mm/h = ``precip_rate`` mm/s x 3600, ``TMP_2maboveground`` K; statics
   ``elev_mean`` m, ``slope_mean`` m/km of basin 01073000 from the CAMELS topography table).
3. :func:`rivergraph.io.route_to_file` streams the LSTM's lateral inflow chunk by chunk (LSTM and router
   state carried) through :class:`rivergraph.MuskingumCunge` (trapezoid) into a CF netCDF and a gauge CSV.
4. Figures: the gauge hydrograph with basin precipitation and lateral inflow; a map of the divides
   (December runoff, mm) and flowpaths (mean discharge).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import yaml

from rivergraph import runoff as R
from rivergraph.io import route_to_file
from rivergraph.io.forcing import read_ngen_forcing
from rivergraph.io.hydrofabric import Hydrofabric, read_hydrofabric
from rivergraph.io.writer import OutputSummary, read_gauge_csv
from rivergraph.models.router import MuskingumCunge

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "ngen_01073000.yaml"


@dataclass
class NgenRun:
    """What :func:`run` returns."""

    hydrofabric: Hydrofabric
    provider: R.LSTMRunoff
    times: pd.DatetimeIndex
    summary: OutputSummary            # files written, wall time of the routing, mass balance
    gauge: pd.Series                  # discharge at the gauge's flowpath (m3/s), hourly UTC
    lateral_total: pd.Series          # sum of the lateral inflow over all flowpaths (m3/s)
    precip_mm_h: pd.Series            # area-weighted basin precipitation (mm/h)
    runoff_mm: pd.Series              # LSTM runoff per catchment over the period (mm)
    wall_s: float                     # whole pipeline, reading to figures
    pngs: list[Path]


def _path(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else (base / q).resolve()


def static_attributes(section: dict, base: Path, catchments: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    """The model's static attributes for every catchment: one CAMELS basin's values (``camels_dir``,
    ``basin``), or a CSV table indexed by catchment id (``table``)."""
    if "table" in section:
        df = pd.read_csv(_path(base, section["table"]), index_col=0)
        return df.loc[list(catchments), list(names)]
    basin = str(section["basin"])
    a = R.read_camels_attributes(_path(base, section["camels_dir"]), [basin], list(names))
    return pd.DataFrame(np.repeat(a.to_numpy(), len(catchments), axis=0), index=list(catchments), columns=a.columns)


def build(config: dict, base: Path):
    """Network, LSTM provider and period from a config (see ``examples/configs/ngen_01073000.yaml``)."""
    net_cfg, ro = config["network"], config["runoff"]
    if net_cfg.get("format", "hydrofabric") != "hydrofabric" or ro.get("catchments", "hydrofabric") != "hydrofabric":
        raise ValueError("this example reads a NextGen hydrofabric (network.format and runoff.catchments: hydrofabric)")
    if ro.get("provider") != "lstm":
        raise ValueError(f"runoff.provider must be 'lstm', got {ro.get('provider')!r}")
    hf = read_hydrofabric(_path(base, net_cfg["path"]))
    cats = hf.divides["divide_id"].tolist()
    forcing = read_ngen_forcing(_path(base, ro["forcing"]["path"]), cats)
    run_dir = _path(base, ro["run_dir"])
    statics = R.NeuralHydrologyLSTM.from_run_dir(run_dir).static_attributes
    attrs = static_attributes(ro["static_attributes"], base, cats, statics)
    mapping = R.CatchmentReachMap.from_table(hf.catchment_table(), cats, hf.network.ids.tolist())
    period = (config["period"]["start"], config["period"]["end"])
    prov = R.lstm_runoff(run_dir, forcing, attrs, hf.catchment_area_km2, mapping, inputs=ro.get("inputs"),
                         period=period, mode=ro.get("mode", "stateful"),
                         spinup_cycles=int(ro.get("spinup_cycles", 0)))
    return hf, forcing, prov


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run(config_path: str | Path = DEFAULT_CONFIG, out: str | Path = "out/ngen_01073000",
        overrides: dict | None = None) -> NgenRun:
    """Run the pipeline of a config; ``overrides`` (nested like the config, e.g. ``{"period": {...}}``)
    replace its entries."""
    t_start = time.perf_counter()
    config_path = Path(config_path)
    config = _merge(yaml.safe_load(config_path.read_text()), overrides or {})
    base = config_path.resolve().parent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf, forcing, prov = build(config, base)
    net = hf.network
    ids = net.ids.tolist()
    times = prov.times
    rcfg, ocfg = config.get("routing", {}), config.get("output", {})
    router = MuskingumCunge(net, dt=float(rcfg.get("dt", 3600)), mode=rcfg.get("mode", "trapezoid"))
    summary = route_to_file(router, prov.chunks(times, ids), out / ocfg.get("discharge", "discharge.nc"),
                            times=times, n_steps=len(times), chunk_size=int(ocfg.get("chunk", 168)),
                            gauge_csv=out / ocfg.get("gauges_csv", "gauges.csv"))
    g = read_gauge_csv(summary.gauge_csv)
    gauge = g.set_index("time")["discharge_m3s"].rename("Q_m3s")
    with torch.no_grad():
        lat = prov.lateral_inflow(times, ids).double().numpy()
        runoff = prov.runoff(times).numpy()
    area = hf.catchment_area_km2.reindex(prov.catchment_ids)
    p = pd.DataFrame({c: forcing[c]["precip_rate"].reindex(times).to_numpy() * 3600.0 for c in prov.catchment_ids},
                     index=times)
    precip = (p * area.to_numpy()).sum(axis=1) / area.sum()
    res = NgenRun(hf, prov, times, summary, gauge, pd.Series(lat.sum(1), index=times, name="lateral_m3s"),
                  precip.rename("precip_mm_h"), pd.Series(runoff.sum(0), index=prov.catchment_ids, name="runoff_mm"),
                  0.0, [])
    pd.DataFrame({"precip_mm_h": res.precip_mm_h, "lateral_total_m3s": res.lateral_total,
                  "gauge_m3s": gauge.reindex(times).to_numpy()}).rename_axis("time").to_csv(
        out / "gauge_hydrograph.csv", float_format="%.6g")
    if ocfg.get("plots", True):
        res.pngs = figures(res, out)
    res.wall_s = time.perf_counter() - t_start
    return res


def figures(res: NgenRun, out: Path) -> list[Path]:
    """The gauge hydrograph (with precipitation and unrouted lateral inflow) and a map."""
    from rivergraph.plots import _plt, plot_network_map, save

    plt = _plt()
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
    import xarray as xr

    with xr.open_dataset(res.summary.path) as ds:  # the file just written: feature_id order = network order
        qmean = pd.Series(ds["streamflow"].mean("time").values, index=ds["feature_id"].values.astype(str))
    fig = plot_network_map(net, qmean.reindex(net.ids.astype(str)).to_numpy(), label="mean discharge (m3/s)")
    ax = fig.axes[0]
    dv = res.hydrofabric.divides.copy()
    dv["runoff_mm"] = res.runoff_mm.reindex(dv["divide_id"]).to_numpy()
    dv.plot(ax=ax, column="runoff_mm", cmap="Blues", alpha=0.45, edgecolor="k", linewidth=0.5, zorder=0,
            legend=True, legend_kwds={"label": "LSTM runoff, Dec 2015 (mm)", "shrink": 0.7})
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
    ap.add_argument("--out", default="out/ngen_01073000")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = run(args.config, args.out)
    s, b = res.summary, res.summary.balance
    gid, fp = next(iter(res.hydrofabric.gauges.items()))
    q = res.gauge
    print(f"network: {len(res.hydrofabric.network)} flowpaths, {len(res.hydrofabric.divides)} divides "
          f"({res.hydrofabric.catchment_area_km2.sum():.2f} km2); gauge USGS {gid} at {fp}")
    print(f"period {res.times[0]} .. {res.times[-1]} ({len(res.times)} h); LSTM {res.provider.mode}, "
          f"spin-up cycles {res.provider.spinup_cycles}")
    print(f"basin precipitation {res.precip_mm_h.sum():.1f} mm; LSTM runoff {res.runoff_mm.round(1).to_dict()} mm")
    print(f"discharge at {fp}: mean {q.mean():.3f} m3/s, max {q.max():.3f} m3/s at {q.idxmax()}, "
          f"min {q.min():.3f} m3/s")
    print(f"mass balance: {b}")
    print(f"{s}")
    print(f"wall time {res.wall_s:.1f} s (routing + LSTM in route_to_file {s.seconds:.2f} s); no observations "
          "ship for this month, so no score")
    for p in res.pngs:
        print(f"wrote {p}")
    return res


if __name__ == "__main__":
    main()
