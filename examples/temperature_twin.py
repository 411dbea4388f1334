"""Synthetic twin on the real Lower Colorado (TX) network: known parameter fields -> temperatures at
gauges -> learn a ParameterNet from attributes -> recover the fields and predict at held-out reaches.

Setup (all documented in docs/temperature.md):
- network: NWM v2.1 Lower Colorado, 11,248 reaches (shipped); routing: Muskingum-Cunge trapezoid with the
  NWM channel parameters, fixed (not learned here);
- lateral inflow: the shipped NWM q_lateral averaged per reach over its 28 hours (late-August 2021 low
  flow), held constant; 7 days hourly from 2021-08-20 00 UTC, the first 2 days are spin-up;
- forcing: synthetic central-Texas summer weather (:func:`rivergraph.models.temperature.synthetic_texas_forcing`;
  there is no air temperature in the shipped data);
- truth: smooth, known functions of reach attributes for shade, ke_scale and gw_frac (below);
  "observations" = true hourly temperature + N(0, 0.1 degC) noise at the training gauges;
- split: wet USGS-gauged reaches (flow > 0.01 m3/s), ~70 % train / 30 % held out; every other wet reach
  is "ungauged" and also held out.

Run: ``OMP_NUM_THREADS=1 python examples/temperature_twin.py --epochs 150 --out twin_out``
(a few minutes on one core); writes metrics.json, temperature.nc and twin.png to --out.
"""
from __future__ import annotations

import argparse
import json
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rivergraph.io.atomic import atomic_path
from rivergraph.datasets import load_lower_colorado
from rivergraph.models.temperature import (DEFAULTS, StreamTemperature, TemperatureResult, synthetic_texas_forcing, temperature_parameter_net)
from rivergraph.io.cf import write_temperature
from rivergraph.plots import plot_reach_map, save
from rivergraph.training import fit

LEARNED = ("shade", "ke_scale", "gw_frac")


def true_fields(net) -> dict[str, torch.Tensor]:
    """Known parameter fields: small streams shaded, large rivers open; ke_scale rising with elevation
    (windier uplands); more groundwater in steep headwaters. Arbitrary but smooth in the attributes."""
    a = net.attrs
    da = a["drainage_area_km2"].to_numpy(np.float64)
    elev = a["elevation_m"].to_numpy(np.float64)
    slope = a["slope"].to_numpy(np.float64)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    return {"shade": torch.from_numpy(0.1 + 0.7 / (1.0 + (da / 50.0) ** 0.7)),
            "ke_scale": torch.from_numpy(0.7 + 0.9 * sig((elev - 450.0) / 120.0)),
            "gw_frac": torch.from_numpy(0.1 + 0.6 * sig((np.log10(slope) + 2.3) * 2.0))}


def rmse(a, b) -> float:
    return float(torch.sqrt(torch.mean((a - b) ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="twin_out")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    dtype = torch.float32

    net, data = load_lower_colorado()
    N = len(net)
    spin, T = 48, 168
    time = pd.date_range("2021-08-20", periods=T, freq="h", tz="UTC")
    q = data["q_lateral"].double().mean(0).expand(T, N).to(dtype).contiguous()
    forcing = synthetic_texas_forcing(net, time, seed=args.seed)
    forcing.air_temp, forcing.shortwave, forcing.rel_humidity = (
        x.to(dtype) for x in (forcing.air_temp, forcing.shortwave, forcing.rel_humidity))
    model = StreamTemperature(net, dt=3600.0)
    with torch.no_grad():
        hyd = model.route(q)  # routing fixed: route once, reuse
        truth = {k: v.to(dtype) for k, v in true_fields(net).items()}
        t_true = model.temperature(hyd, forcing, **truth).temperature

    Qmin = hyd.Q.index_select(1, model.sched.sorted_pos).min(0).values
    wet = (Qmin > 0.01).numpy()
    gauged = np.array(sorted(set(net.gauges().index.to_numpy()) & set(np.flatnonzero(wet))))
    rng.shuffle(gauged)
    n_train = int(round(0.7 * len(gauged)))
    train, held = np.sort(gauged[:n_train]), np.sort(gauged[n_train:])
    ungauged = np.setdiff1d(np.flatnonzero(wet), gauged)
    obs = t_true[spin:, train] + 0.1 * torch.randn(T - spin, len(train), dtype=dtype)

    pnet = temperature_parameter_net({k: model_spec(k) for k in LEARNED})
    pnet.scaler.fit(net)
    feats = pnet.scaler.transform(net, dtype)

    def predict(params) -> TemperatureResult:
        return model.temperature(hyd, forcing, **params)

    def scores(params) -> dict:
        with torch.no_grad():
            tw = predict(params).temperature[spin:]
        ref = t_true[spin:]
        return {"train_gauges": rmse(tw[:, train], ref[:, train]), "heldout_gauges": rmse(tw[:, held], ref[:, held]),
                "ungauged_wet_reaches": rmse(tw[:, ungauged], ref[:, ungauged])}

    default = {k: torch.full((N,), float(DEFAULTS[k]), dtype=dtype) for k in LEARNED}
    before = scores(default)
    print(f"{len(train)} training gauges, {len(held)} held-out gauges, {len(ungauged)} ungauged wet reaches")
    print("RMSE degC with default parameters:", {k: round(v, 3) for k, v in before.items()})
    t0 = _time.time()

    def loss_fn(pn, _item) -> torch.Tensor:  # RMSE (degC) at the training gauges after spin-up
        tw = predict(pn(feats)).temperature[spin:, train]
        return torch.sqrt(torch.mean((tw - obs) ** 2))

    # the package's trainer: one item (the whole network) per epoch, Adam, no clipping, no early stopping;
    # the lowest-loss weights are kept
    fit(pnet, [None], loss_fn, epochs=args.epochs, lr=args.lr, clip=None, patience=args.epochs, seed=args.seed,
        desc="twin training")
    train_s = _time.time() - t0
    with torch.no_grad():
        learned = pnet(feats)
    after = scores(learned)
    recovery = {}
    wet_idx = np.flatnonzero(wet)
    lat_idx = np.flatnonzero(wet & (q[0].numpy() > 0))
    for k in LEARNED:
        idx = lat_idx if k == "gw_frac" else wet_idx  # gw_frac acts only where lateral inflow enters
        a, b = learned[k][idx].double(), truth[k][idx].double()
        recovery[k] = {"reaches": int(len(idx)), "rmse": rmse(a, b), "corr": float(np.corrcoef(a, b)[0, 1]),
                       "true_mean": float(b.mean()), "learned_mean": float(a.mean()),
                       "default": float(DEFAULTS[k]), "default_rmse": rmse(torch.full_like(b, DEFAULTS[k]), b)}
    summary = {"epochs": args.epochs, "train_seconds": round(train_s, 1), "n_train_gauges": len(train),
               "n_heldout_gauges": len(held), "n_ungauged_wet": len(ungauged),
               "rmse_degC_default_params": before, "rmse_degC_learned": after, "parameter_recovery": recovery}
    print(json.dumps(summary, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    with torch.no_grad():
        res = predict(learned)
    write_temperature(out / "temperature.nc", net, time, res)
    series = {}
    for pos in held[:3]:
        series[f"true {net.ids[pos]}"] = t_true[:, pos].numpy()
        series[f"learned {net.ids[pos]}"] = res.temperature[:, pos].numpy()
    vals = res.temperature[spin:].mean(0).numpy().copy()
    vals[~wet] = np.nan
    save(plot_reach_map(net, vals, "mean water temperature, wet reaches (degC)", series, time), out / "twin.png")
    print(f"wrote {out / 'metrics.json'}, {out / 'temperature.nc'}, {out / 'twin.png'}")
    return 0


def model_spec(name):
    from rivergraph.models.params import OutputSpec
    from rivergraph.models.temperature import TEMPERATURE_OUTPUTS

    s = TEMPERATURE_OUTPUTS[name]
    return OutputSpec(s.lo, s.hi, s.scaling, init=float(DEFAULTS[name]))


if __name__ == "__main__":
    raise SystemExit(main())
