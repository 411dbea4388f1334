"""Stream temperature on the 456-segment Delaware River Basin (NHM) network against PRMS-SNTemp (issue 17).

Drives :class:`rivergraph.models.StreamTemperature` with the drivers pywatershed 3.0.0's PRMS-SNTemp used,
per segment-day (``../shared/data/delaware_nhm_2yr/derived_streamtemp/drb_pws3_streamtemp_drivers.nc``):
air temperature, humidity, cloud cover, shortwave (Langleys/day -> W m-2: 1 Ly = 41,840 J m-2), PRMS's dynamic
shade (applied to the shortwave; rivergraph's own shade parameter then 0), flow width, the lateral-inflow shares
(surface, subsurface, groundwater) and the snowmelt share melt/(melt + rain) of PRMS's ``lat_inflow``. Flows:
(a) PRMS's own daily outflow and lateral inflow, (b) the NHM lateral inflow routed by rivergraph's
Muskingum-Cunge at daily steps. PRMS's boxcar means of air temperature over gw_tau = 45 and ss_tau = 15 days
are represented by exponential filters of the same mean age (tau = window / 2: 22.5 and 7.5 days). Wind is not
a PRMS driver (PRMS takes evaporation from the potential ET); rivergraph's Dalton law uses 2 m/s.

Surface-exchange formulations (:mod:`rivergraph.physics.exchange`), flows (a): ``chapra_edinger`` (the default:
sky longwave, Dalton and Bowen at the air temperature), ``prms_sntemp`` (PRMS-SNTemp's balance: sky longwave,
vegetation longwave and Bowen at the inflow water temperature, sky shaded, evaporation from PRMS's potential ET
``seg_potet``, friction heat, ground conduction to the groundwater temperature; over the whole water surface) and
``prms_sntemp_as_coded`` (the same over width x length/1000, as PRMS 5's twavg applies it: a reproduction mode).
Diagnostic: the surface exchange off (a conservative tracer of PRMS's lateral-inflow temperatures).

Scores: per-segment RMSE, bias and NSE of the daily water temperature against PRMS-SNTemp's seg_tave_water in
1980 (1979 is spin-up), over the 455 segments PRMS gives a temperature for, and without the 20 connector
segments of PRMS's shortwave defect. Heat budget: PRMS's 11 terms (W) next to rivergraph's (J per day / 86,400
s) for a few segments and months.

    python examples/temperature_delaware.py [--data ../shared/data] [--json out.json] [--figures docs/figures]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rivergraph.io.nhm import CFS_TO_M3S, read_nhm, read_segment_series
from rivergraph.io.sntemp import read_sntemp_drivers
from rivergraph.models.temperature import HeatForcing, StreamTemperature

DAY = 86400.0
PRMS_TAU = {"gw_tau_days": 45.0 / 2.0, "ss_tau_days": 15.0 / 2.0}
"""PRMS-SNTemp's boxcar windows (days) as exponential time constants of the same mean age."""
SEGMENTS_SHOWN = (2007, 2012, 4205, 1552)
MONTHS_SHOWN = (1, 4, 7, 10)


def default_data() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load(data: Path) -> dict:
    """Network (NHM reader) and, in its reach order, the PRMS-SNTemp drivers, temperatures and heat terms."""
    import xarray as xr

    drb = data / "delaware_nhm_2yr"
    st = drb / "derived_streamtemp"
    net = read_nhm(drb / "raw")
    out = {"net": net}
    drv = read_sntemp_drivers(st / "drb_pws3_streamtemp_drivers.nc", net)
    out.update(drv.raw)
    out["time"], out["drivers"] = drv.time, drv
    with xr.open_dataset(st / "drb_pws3_streamtemp_drivers.nc") as ds:
        out["defect"] = ds["seginc_swrad_defect"].sel(nhm_seg=net.ids).values.astype(bool)
    with xr.open_dataset(st / "drb_pws3_streamtemp.nc") as ds:
        ds = ds.sel(nhm_seg=net.ids)
        out["ref"] = ds["seg_tave_water"].transpose("time", "nhm_seg").values.astype(np.float64)
        out["ref_status"] = ds["seg_tave_water_status"].transpose("time", "nhm_seg").values
        out["ref_lat"] = ds["seg_tave_lat"].transpose("time", "nhm_seg").values.astype(np.float64)
    with xr.open_dataset(st / "drb_pws3_streamtemp_energy_fluxes.nc") as ds:
        ds = ds.sel(nhm_seg=net.ids)
        out["flux"] = {v: ds[v].transpose("time", "nhm_seg").values.astype(np.float64) for v in ds.data_vars}
    t, q = read_segment_series(drb / "derived" / "seg_lateral_inflow.nc", net)
    out["q_lat_nhm"] = q
    return out


def forcing(d: dict) -> HeatForcing:
    """HeatForcing from PRMS's drivers (:func:`rivergraph.io.sntemp.read_sntemp_drivers`)."""
    return d["drivers"].forcing


def hydraulics(model: StreamTemperature, d: dict, flows: str):
    """(a) ``prms``: PRMS's outflow and lateral inflow; (b) ``routed``: NHM lateral inflow routed here."""
    width = torch.from_numpy(np.maximum(d["seg_flow_width"], 0.1))
    vol_end = torch.from_numpy(d["seg_flow_width"][-1] * d["seg_flow_depth"][-1] * model.network.attrs["length_m"].to_numpy())
    if flows == "prms":
        Q = torch.from_numpy(d["seg_outflow"] * CFS_TO_M3S)
        q = torch.from_numpy(d["seg_lateral_inflow"] * CFS_TO_M3S)
        return model.hydraulics_from_flows(Q, q, width, vol_end)
    q = torch.from_numpy(d["q_lat_nhm"])
    with torch.no_grad():
        hyd = model.route(q)
    hyd.width = width.index_select(1, model.sched.order)  # PRMS's flow width, as in (a)
    return hyd


def scores(sim: np.ndarray, ref: np.ndarray, keep: np.ndarray) -> pd.DataFrame:
    """Per-segment RMSE, bias (sim - ref) and NSE over the rows ``keep``; NaN reference days are skipped."""
    s, r = sim[keep], ref[keep]
    ok = np.isfinite(r)
    n = ok.sum(0)
    e = np.where(ok, s - r, 0.0)
    rm = np.where(ok, r, 0.0).sum(0) / np.maximum(n, 1)
    var = np.where(ok, (r - rm) ** 2, 0.0).sum(0)
    return pd.DataFrame({"n": n, "rmse": np.sqrt((e ** 2).sum(0) / np.maximum(n, 1)), "bias": e.sum(0) / np.maximum(n, 1),
                         "nse": 1.0 - (e ** 2).sum(0) / np.where(var > 0, var, np.nan)})


def summary(tab: pd.DataFrame, mask: np.ndarray) -> dict:
    t = tab[mask & (tab["n"] > 0).to_numpy()]
    return {"segments": int(len(t)), "median_rmse": round(float(t["rmse"].median()), 3),
            "mean_rmse": round(float(t["rmse"].mean()), 3), "median_bias": round(float(t["bias"].median()), 3),
            "median_nse": round(float(t["nse"].median()), 3), "p90_rmse": round(float(t["rmse"].quantile(0.9)), 3)}


def budget_side_by_side(d: dict, results: dict, net, year_rows: np.ndarray) -> pd.DataFrame:
    """Monthly means (W per segment) of PRMS's heat terms and rivergraph's (``results``: formulation -> result with
    a budget), for SEGMENTS_SHOWN x MONTHS_SHOWN."""
    fx = d["flux"]
    prms = {"shortwave": fx["solar_radiation"], "longwave_in": fx["atmospheric_longwave"] + fx["longwave_vegetation"],
            "longwave_out": fx["longwave_emission"], "evaporation": fx["evaporative_cooling"],
            "sensible": -fx["convective_exchange"], "friction+ground": fx["friction_heat"] + fx["groundwater_conduction"],
            "advection_in": fx["heat_upstream"] + fx["heat_lateral"], "outflow": fx["heat_outflow"]}
    models = {"PRMS": prms}
    for name, res in results.items():
        b = {k: v.numpy() / DAY for k, v in res.budget.items()}
        zero = np.zeros_like(b["shortwave_J"])
        ours = {"shortwave": b["shortwave_J"], "longwave_in": b["longwave_in_J"] + b.get("vegetation_longwave_J", zero),
                "longwave_out": -b["longwave_out_J"], "evaporation": -b["evaporation_J"], "sensible": b["sensible_J"],
                "friction+ground": b.get("friction_J", zero) + b.get("ground_conduction_J", zero),
                "lin_residual": b["linearisation_residual_J"],
                "advection_in": b["advection_in_J"] + b["lateral_in_J"], "outflow": b["outflow_J"]}
        models[name] = ours
    rows = []
    month = d["time"].month.to_numpy()
    for seg in SEGMENTS_SHOWN:
        i = int(np.flatnonzero(net.ids == seg)[0])
        for mth in MONTHS_SHOWN:
            sel = year_rows & (month == mth)
            for who, terms in models.items():
                row = {"segment": seg, "month": mth, "model": who}
                row.update({k: float(v[sel, i].mean()) / 1e6 for k, v in terms.items()})
                rows.append(row)
    return pd.DataFrame(rows)


def figure(d, sims, tabs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net, time = d["net"], d["time"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    for ax, seg in zip(axes.flat[:3], SEGMENTS_SHOWN[:3]):
        i = int(np.flatnonzero(net.ids == seg)[0])
        ax.plot(time, d["ref"][:, i], "k", lw=1.2, label="PRMS-SNTemp")
        for name, sim in sims.items():
            ax.plot(time, sim[:, i], lw=0.9, label=f"rivergraph, {name}")
        ax.plot(time, d["seg_tave_air"][:, i], color="0.7", lw=0.5, label="air")
        ax.set_title(f"segment {seg}")
        ax.tick_params(axis="x", rotation=30)
        ax.set_ylabel("degC")
        ax.legend(fontsize=7)
    ax = axes.flat[3]
    for name, tab in tabs.items():
        ax.hist(tab["rmse"].dropna(), bins=40, range=(0, 6), alpha=0.6, label=name)
    ax.set_xlabel("1980 RMSE vs PRMS-SNTemp per segment (degC)")
    ax.set_ylabel("segments")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


FORMULATIONS = ("chapra_edinger", "prms_sntemp", "prms_sntemp_as_coded")


def run(d: dict, flows: str, params: dict | None = None, budget: bool = False, exchange: bool = True,
        surface_exchange: str = "chapra_edinger"):
    net = d["net"]
    model = StreamTemperature(net, dt=DAY, mode="trapezoid", exchange=exchange, surface_exchange=surface_exchange)
    hyd = hydraulics(model, d, flows)
    p = {"shade": 0.0, **PRMS_TAU}
    p.update(params or {})
    with torch.no_grad():
        res = model.temperature(hyd, forcing(d), budget=budget, **p)
    return res, model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(default_data()))
    ap.add_argument("--json", default=None)
    ap.add_argument("--figures", default=None, help="folder for delaware_vs_prms.png and the budget table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    d = load(Path(args.data))
    net = d["net"]
    if "bottom_width_m" not in net.attrs:  # for flows (b): rectangular-ish channel of PRMS's bankfull width
        net.attrs["bottom_width_m"] = net.attrs["top_width_m"]
        net.attrs["side_slope"] = 1.0
    y80 = (d["time"].year == 1980)
    has_ref = np.isfinite(d["ref"]).any(0)
    out, sims, tabs, budgets = {}, {}, {}, {}
    for flows in ("prms", "routed"):
        res, model = run(d, flows, budget=(flows == "prms"))
        sim = res.temperature.numpy()
        tab = scores(sim, d["ref"], y80)
        tab.index = net.ids
        sims[f"flows {flows}, chapra_edinger"], tabs[f"flows {flows}, chapra_edinger"] = sim, tab
        out[f"flows_{flows}"] = {"all": summary(tab, has_ref), "without_defect": summary(tab, has_ref & ~d["defect"]),
                                 "volume_clamped_m3": getattr(model, "report", {}).get("volume_clamped_m3")}
        if flows == "prms":
            budgets["chapra_edinger"] = res
    # the surface-exchange formulations side by side, flows (a)
    out["formulations_flows_prms"] = {"chapra_edinger": out["flows_prms"]["all"]}
    for name in FORMULATIONS[1:]:
        res, model = run(d, "prms", budget=True, surface_exchange=name)
        budgets[name] = res
        tab = scores(res.temperature.numpy(), d["ref"], y80)
        out["formulations_flows_prms"][name] = {**summary(tab, has_ref), **{
            k: v for k, v in model.report.items() if k.startswith("reference")}}
        if name == "prms_sntemp_as_coded":
            sims["flows prms, prms_sntemp_as_coded"], tabs["flows prms, prms_sntemp_as_coded"] = res.temperature.numpy(), tab
    bud = budget_side_by_side(d, budgets, net, y80)
    # diagnostic: no surface exchange at all, PRMS's lateral-inflow temperatures only advected and mixed
    res, _ = run(d, "prms", exchange=False)
    out["flows_prms_exchange_off"] = {"all": summary(scores(res.temperature.numpy(), d["ref"], y80), has_ref)}
    print(json.dumps(out, indent=1))
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 2):
        print("heat terms, monthly means 1980, MW per segment:")
        print(bud.to_string(index=False))
    if args.figures:
        fdir = Path(args.figures)
        figure(d, sims, tabs, fdir / "temperature_delaware_vs_prms.png")
        bud.to_csv(fdir / "temperature_delaware_heat_budget.csv", index=False, float_format="%.3f")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
