"""Joint discharge + temperature training, synthetic twin on a real Lower Colorado subnetwork.

A ParameterNet maps reach attributes to Manning's n (routing) and shade, ke_scale (heat). Truth: n from the
DDR-style law n = 0.0915 A^-0.131 (rivergraph.training.twin_law), shade and ke_scale as in temperature_twin.py.
Lateral inflow: stochastic storms on top of the NWM q_lateral mean (rivergraph.training.storm_inflow), so that
discharge carries information on n. Observations at the USGS-gauged reaches of the subnetwork: discharge with
5 % lognormal noise and temperature with 0.1 degC noise; ~70 % of the gauges train, the rest are held out.
Three runs with loss weights (w_discharge, w_temperature) = (1, 0), (0, 1), (1, 1) (rivergraph.models.temperature.
joint_loss) show what each observation type identifies.

Run: ``OMP_NUM_THREADS=1 python examples/temperature_joint_twin.py --epochs 60`` (a few minutes).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch

from rivergraph.datasets import load_lower_colorado
from rivergraph.metrics import nse
from rivergraph.models.params import ROUTING_OUTPUTS, OutputSpec
from rivergraph.models.temperature import (TEMPERATURE_OUTPUTS, StreamTemperature, joint_loss, synthetic_texas_forcing, temperature_parameter_net)
from rivergraph.training import fit, storm_inflow, twin_law

try:
    from temperature_twin import true_fields
except ImportError:  # run from another folder
    import importlib.util
    from pathlib import Path

    _s = importlib.util.spec_from_file_location("temperature_twin", Path(__file__).with_name("temperature_twin.py"))
    _m = importlib.util.module_from_spec(_s)
    _s.loader.exec_module(_m)
    true_fields = _m.true_fields

GAUGE_REACH = 5718784  # outlet of an 824-reach subnetwork holding 13 gauged reaches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    full, data = load_lower_colorado()
    net = full.upstream_subnetwork([GAUGE_REACH])
    N, T, spin = len(net), 168, 48
    base = data["q_lateral"].double().mean(0).numpy()[full.positions(net.ids)]
    q = storm_inflow(net, T, base=base, seed=args.seed, storms_per_week=6.0, quiet_h=spin)
    time = pd.date_range("2021-08-20", periods=T, freq="h", tz="UTC")
    forcing = synthetic_texas_forcing(net, time, seed=args.seed)
    model = StreamTemperature(net, dt=3600.0)
    truth = {k: v for k, v in true_fields(net).items() if k != "gw_frac"}
    truth["n"] = torch.from_numpy(twin_law(net))
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        r = model(q, forcing, routing_params={"n": truth["n"]}, shade=truth["shade"], ke_scale=truth["ke_scale"])
    gauges = np.array(sorted(net.gauges().index))
    rng.shuffle(gauges)
    n_train = int(round(0.7 * len(gauges)))
    train, held = np.sort(gauges[:n_train]), np.sort(gauges[n_train:])
    q_obs = r.discharge[spin:] * torch.exp(0.05 * torch.randn(T - spin, N, generator=gen, dtype=torch.float64))
    t_obs = r.temperature[spin:] + 0.1 * torch.randn(T - spin, N, generator=gen, dtype=torch.float64)
    print(f"{N} reaches, {len(train)} training gauges, {len(held)} held-out gauges; "
          f"peak outlet flow {float(r.discharge[:, -1].max()):.1f} m3/s")
    specs = {"n": OutputSpec(*_bounds(ROUTING_OUTPUTS["n"]), init=0.05),
             "shade": OutputSpec(*_bounds(TEMPERATURE_OUTPUTS["shade"]), init=0.2),
             "ke_scale": OutputSpec(*_bounds(TEMPERATURE_OUTPUTS["ke_scale"]), init=1.0)}
    results = {}
    for wq, wt in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        torch.manual_seed(args.seed)
        pnet = temperature_parameter_net(specs).double()
        pnet.scaler.fit(net)
        feats = pnet.scaler.transform(net, torch.float64)

        def loss_fn(pn, _item, wq=wq, wt=wt) -> torch.Tensor:
            p = pn(feats)
            out = model(q, forcing, routing_params={"n": p["n"]}, shade=p["shade"], ke_scale=p["ke_scale"])
            return joint_loss(out.discharge[spin:, train], q_obs[:, train], out.temperature[spin:, train],
                              t_obs[:, train], wq, wt)

        # the package's trainer on one item (the whole subnetwork); no clipping, no early stopping
        fit_res = fit(pnet, [None], loss_fn, epochs=args.epochs, lr=args.lr, clip=None, patience=args.epochs,
                      seed=args.seed, progress=False)
        with torch.no_grad():
            p = pnet(feats)
            out = model(q, forcing, routing_params={"n": p["n"]}, shade=p["shade"], ke_scale=p["ke_scale"])
        res = {"final_loss": round(fit_res.history[-1]["train_loss"], 4),
               "best_loss": round(fit_res.best_val_loss, 4)}
        for k in specs:
            d = p[k] - truth[k]
            res[f"{k}_rmse"] = round(float(torch.sqrt((d * d).mean())), 4)
        for name, idx in (("train", train), ("heldout", held)):
            res[f"{name}_nse_Q"] = round(float(nse(out.discharge[spin:, idx], r.discharge[spin:, idx]).mean()), 4)
            dt_ = out.temperature[spin:, idx] - r.temperature[spin:, idx]
            res[f"{name}_rmse_T_degC"] = round(float(torch.sqrt((dt_ * dt_).mean())), 4)
        results[f"w_discharge={wq:g}, w_temperature={wt:g}"] = res
        print(f"(w_Q, w_T) = ({wq:g}, {wt:g}):", res)
    init = {k: round(float(torch.sqrt(((torch.full_like(truth[k], specs[k].init) - truth[k]) ** 2).mean())), 4)
            for k in specs}
    print(json.dumps({"parameter_rmse_at_init": init, "runs": results}, indent=1))
    return 0


def _bounds(spec: OutputSpec) -> tuple:
    return spec.lo, spec.hi, spec.scaling


if __name__ == "__main__":
    raise SystemExit(main())
