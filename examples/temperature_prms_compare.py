"""Compare rivergraph's reach heat model with PRMS-SNTemp on one Delaware River Basin segment (daily).

pywatershed 2.0.4 (PyPI) ships no stream-temperature process, so the independent reference is the
PRMS-SNTemp simulation in ../shared/data/delaware_river_dl/prms_sntemp_drivers beside the repository (river-dl test
data, CC0): ``seg_tave_water`` (PRMS-SNTemp water temperature) driven by ``seg_tave_air``, ``seg_humid``
and ``seg_outflow``, plus observed daily water temperature (obs_temp.csv).

Setup (assumptions, documented in docs/temperature.md): one reach, daily step; all of PRMS's segment
outflow enters as lateral inflow; channel n = 0.04, side slope 1, length 5 km, slope ``seg_slope``, bottom
width 4 Qmean^0.5 m (a Leopold & Maddock 1953 style width); shortwave = daily-mean FAO-56 clear-sky at the
segment latitude, halved on days with rain (cloud proxy); humidity = PRMS's 0.7; wind 2 m/s.
Runs: (a) default parameters; (b) the 7 temperature scalars fitted by gradient descent to PRMS-SNTemp
over 2003-10-01..2005-09-30 and evaluated on 2005-10-01..2006-10-15 (and against observations).

Run: ``OMP_NUM_THREADS=1 python examples/temperature_prms_compare.py [--segment 2007] [--data DIR]``
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rivergraph import build_network
from rivergraph.models.params import OutputSpec
from rivergraph.models.temperature import DEFAULTS, TEMPERATURE_OUTPUTS, HeatForcing, StreamTemperature
from rivergraph.physics.heat import clear_sky_shortwave
from rivergraph.training import fit

DATA = Path(os.environ.get("RIVERGRAPH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") \
    / "delaware_river_dl"
"""``$RIVERGRAPH_DATA/delaware_river_dl``, else ``../shared/data/delaware_river_dl`` beside the repository."""


def stats(sim: np.ndarray, ref: np.ndarray) -> dict:
    m = np.isfinite(ref) & np.isfinite(sim)
    d = sim[m] - ref[m]
    return {"n": int(m.sum()), "rmse": round(float(np.sqrt(np.mean(d * d))), 3), "bias": round(float(d.mean()), 3),
            "corr": round(float(np.corrcoef(sim[m], ref[m])[0, 1]), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segment", type=int, default=2007)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--iters", type=int, default=200, help="fitting iterations (0: defaults only)")
    ap.add_argument("--json-only", action="store_true", help="return the results instead of printing them")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import xarray as xr

    root = Path(args.data)
    ds = xr.open_zarr(root / "prms_sntemp_drivers").sel(segs_test=args.segment).load()
    attrs = pd.read_csv(root / "test_seg_attr.csv").set_index("seg_id_nat").loc[args.segment]
    days = pd.DatetimeIndex(ds["times_test"].values)
    T = len(days)
    col = lambda v: torch.tensor(ds[v].values, dtype=torch.float64)[:, None]  # noqa: E731
    q, air, rain, tw_prms = col("seg_outflow"), col("seg_tave_air"), col("seg_rain"), col("seg_tave_water")
    lat = float(attrs["hru_lat"])
    lon = float(attrs["hru_long"])
    hourly = pd.date_range(days[0], days[-1] + pd.Timedelta(hours=23), freq="h")
    sw = clear_sky_shortwave(hourly, [lat], [lon]).reshape(T, 24).mean(1, keepdim=True)
    sw = sw * torch.where(rain > 0, 0.5, 1.0)
    forcing = HeatForcing(air, sw, col("seg_humid"), 2.0)
    net = build_network([args.segment], [0], pd.DataFrame({
        "length_m": [5000.0], "slope": [float(ds["seg_slope"].mean())], "n": [0.04],
        "bottom_width_m": [4.0 * float(q.mean()) ** 0.5], "side_slope": [1.0]}))
    model = StreamTemperature(net, dt=86400.0)
    with torch.no_grad():
        hyd = model.route(q)
    obs = pd.read_csv(root / "obs_temp.csv", parse_dates=["date"])
    obs = obs[obs.seg_id_nat == args.segment].set_index("date")["temp_c"].reindex(days).to_numpy(np.float64)
    train = (days >= "2003-10-01") & (days < "2005-10-01")
    test = days >= "2005-10-01"

    def run(params):
        return model.temperature(hyd, forcing, T0=tw_prms[0], **params).temperature[:, 0]

    def report(sim):
        sim = sim.detach().numpy()
        ref = tw_prms[:, 0].numpy()
        return {"vs_prms_train": stats(sim[train], ref[train]), "vs_prms_test": stats(sim[test], ref[test]),
                "vs_obs_test": stats(sim[test], obs[test]), "vs_obs_all": stats(sim, obs)}

    out = {"segment": args.segment, "days": T, "prms_vs_obs_test": stats(tw_prms[:, 0].numpy()[test], obs[test]),
           "prms_vs_obs_all": stats(tw_prms[:, 0].numpy(), obs)}
    with torch.no_grad():
        sim0 = run({})
    out["default"] = report(sim0)
    if args.iters == 0:
        return out if args.json_only else (print(json.dumps(out, indent=1)) or 0)
    # fit the scalars (through their bounded squashing) to PRMS-SNTemp on the training period
    names = list(TEMPERATURE_OUTPUTS)
    specs = {k: OutputSpec(TEMPERATURE_OUTPUTS[k].lo, TEMPERATURE_OUTPUTS[k].hi, TEMPERATURE_OUTPUTS[k].scaling)
             for k in names}
    inside = lambda k: min(max(float(DEFAULTS[k]), specs[k].lo + 1e-3 * (specs[k].hi - specs[k].lo)),  # noqa: E731
                           specs[k].hi - 1e-3 * (specs[k].hi - specs[k].lo))
    z = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(specs[k].unsquash(inside(k)), dtype=torch.float64))
                                for k in names})
    ref = tw_prms[:, 0]
    mtrain = torch.as_tensor(train)

    def loss_fn(zs, _item) -> torch.Tensor:  # RMSE (degC) against PRMS-SNTemp over the training period
        sim = run({k: specs[k].squash(zs[k]) for k in names})
        return torch.sqrt(torch.mean((sim[mtrain] - ref[mtrain]) ** 2))

    # the package's trainer on the unconstrained scalars: Adam, one item, no clipping or early stopping
    fit(z, [None], loss_fn, epochs=args.iters, lr=0.05, clip=None, patience=args.iters, progress=False)
    with torch.no_grad():
        fitted = {k: float(specs[k].squash(z[k])) for k in names}
        sim1 = run(fitted)
    out["fitted_params"] = {k: round(v, 3) for k, v in fitted.items()}
    out["fitted"] = report(sim1)
    if args.json_only:
        return out
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
