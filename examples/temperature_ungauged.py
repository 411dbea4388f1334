"""Ungauged reaches on the Delaware network: temperature parameters learned from segment attributes (issue 17).

Setup (all from ``temperature_delaware.py``): PRMS-SNTemp's drivers and PRMS's own flows, 1979 spin-up, 1980 scored.
A :class:`rivergraph.models.ParameterNet` maps segment attributes (drainage area, slope, length, bankfull width,
elevation, latitude, PRMS's mean dynamic shade, the mean groundwater share of the lateral inflow) to the
temperature parameters ``ke_scale``, ``gw_tau_days``, ``ss_tau_days``, ``gw_offset`` and an extra ``shade``
(on top of PRMS's, which is already in the shortwave), within their published bounds
(:data:`rivergraph.models.temperature.TEMPERATURE_OUTPUTS`). Observations: PRMS-SNTemp's seg_tave_water at the
segments of the 101 complete discharge gauges only. Cross-validation by sub-basin: a sub-basin is the tributary
tree above the point where it joins a segment draining more than ``--mainstem-km2`` (the main stems form one
group of their own); the sub-basins are dealt into ``--folds`` folds, and each fold's segments (gauged or not)
are predicted by the net trained on the gauged segments of the other folds. Reported: held-out per-segment RMSE
against PRMS-SNTemp (1980) next to the default-parameter RMSE on the same segments.

Surface exchange (``--surface-exchange``, :mod:`rivergraph.physics.exchange`): default ``prms_sntemp_as_coded``
(PRMS-SNTemp's balance over width x length/1000, as PRMS 5 applies it: the mode that reproduces the reference);
``prms_sntemp`` (the same balance over the whole water surface) and ``chapra_edinger`` for comparison. Training:
the package trainer :func:`rivergraph.training.fit` (Adam, one item: the whole network over fixed hydraulics).

    python examples/temperature_ungauged.py [--data ../shared/data] [--iters 120] [--folds 3]
        [--surface-exchange NAME] [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time as _time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import temperature_delaware as td  # noqa: E402

from rivergraph.io.nhm import read_prms_gauges  # noqa: E402
from rivergraph.models.params import OutputSpec, ParameterNet  # noqa: E402
from rivergraph.models.temperature import TEMPERATURE_OUTPUTS, StreamTemperature  # noqa: E402
from rivergraph.training import fit  # noqa: E402

LEARNED = {"ke_scale": 1.0, "gw_tau_days": td.PRMS_TAU["gw_tau_days"], "ss_tau_days": td.PRMS_TAU["ss_tau_days"],
           "gw_offset": 0.0, "shade": 0.02}
"""Learned parameters and the value each starts from (the defaults of temperature_delaware.py)."""
ATTRIBUTES = ("drainage_area_km2", "slope", "length_m", "top_width_m", "elevation_m", "lat", "mean_shade",
              "mean_gw_share")


def sub_basins(net, mainstem_km2: float) -> np.ndarray:
    """[N] sub-basin label: the id of the last segment below ``mainstem_km2`` on the way downstream; segments
    draining more than it get label -1 (main stems)."""
    area = net.attrs["drainage_area_km2"].to_numpy()
    down = net.downstream
    lab = np.full(len(net), -1, dtype=np.int64)
    for i in range(len(net)):
        if area[i] > mainstem_km2:
            continue
        j = i
        while down[j] >= 0 and area[down[j]] <= mainstem_km2:
            j = down[j]
        lab[i] = net.ids[j]
    return lab


def folds_of(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """[N] fold 0..k-1 per segment; whole sub-basins per fold, dealt largest first for balance."""
    uniq, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rng = np.random.default_rng(seed)
    fold_of, load = {}, np.zeros(k)
    for u in uniq[order]:
        f = int(np.argmin(load + rng.uniform(0, 1e-3, k)))
        fold_of[u] = f
        load[f] += counts[uniq == u][0]
    return np.array([fold_of[x] for x in labels])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(td.default_data()))
    ap.add_argument("--iters", type=int, default=120)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--mainstem-km2", type=float, default=1500.0)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--surface-exchange", default="prms_sntemp_as_coded",
                    help="surface-exchange formulation (rivergraph.physics.exchange.EXCHANGES)")
    ap.add_argument("--ke-lo", type=float, default=None, help="sensitivity run: lower bound of ke_scale below the "
                    "package's published-range bound (StreamTemperature is called with exchange scaled outside)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = Path(args.data)
    d = td.load(data)
    net = d["net"]
    net.attrs["mean_shade"] = d["seg_shade"].mean(0)
    f = td.forcing(d)
    net.attrs["mean_gw_share"] = f.gw_share.numpy().mean(0)
    gauges = read_prms_gauges(data / "delaware_nhm_2yr" / "raw" / "drb_2yr_gage_poi_obs.nc", net)
    gpos = np.unique(gauges.positions[gauges.complete])
    y80 = np.asarray(d["time"].year == 1980)
    ref = torch.from_numpy(d["ref"])
    has_ref = np.isfinite(d["ref"]).any(0)
    model = StreamTemperature(net, dt=td.DAY, surface_exchange=args.surface_exchange)
    hyd = model.hydraulics_from_flows(torch.from_numpy(d["seg_outflow"] * td.CFS_TO_M3S),
                                      torch.from_numpy(d["seg_lateral_inflow"] * td.CFS_TO_M3S),
                                      torch.from_numpy(np.maximum(d["seg_flow_width"], 0.1)),
                                      torch.from_numpy(d["seg_flow_width"][-1] * d["seg_flow_depth"][-1]
                                                       * net.attrs["length_m"].to_numpy()))
    def run(p):
        """Temperature for parameters p; with --ke-lo, ke_scale acts through the exchange area (K_e A is all the
        scheme uses), so values below the package bound can be explored."""
        if args.ke_lo is None:
            return model.temperature(hyd, f, **p).temperature
        k = p.pop("ke_scale")
        h2 = dataclasses.replace(hyd, width=hyd.width * k.index_select(0, model.sched.order))
        return model.temperature(h2, f, ke_scale=1.0, **p).temperature

    labels = sub_basins(net, args.mainstem_km2)
    fold = folds_of(labels, args.folds)
    with torch.no_grad():
        base = model.temperature(hyd, f, shade=0.0, **td.PRMS_TAU).temperature.numpy()
    base_tab = td.scores(base, d["ref"], y80)
    rows = torch.from_numpy(np.flatnonzero(y80))
    pred = np.full_like(base, np.nan)
    learned = {k: np.full(len(net), np.nan) for k in LEARNED}
    log = []
    for k in range(args.folds):
        train = np.array([p for p in gpos if fold[p] != k and has_ref[p]])
        specs = {n: OutputSpec(TEMPERATURE_OUTPUTS[n].lo, TEMPERATURE_OUTPUTS[n].hi, TEMPERATURE_OUTPUTS[n].scaling,
                               init=v) for n, v in LEARNED.items()}
        if args.ke_lo is not None:
            specs["ke_scale"] = OutputSpec(args.ke_lo, TEMPERATURE_OUTPUTS["ke_scale"].hi, "log", init=1.0)
        pnet = ParameterNet(specs,
                            attributes=ATTRIBUTES, log_columns=("drainage_area_km2", "slope", "length_m",
                                                                "top_width_m"), hidden=(16, 16)).double()
        pnet.scaler.fit(net)
        x = torch.as_tensor(pnet.scaler.transform(net), dtype=torch.float64)
        tr = torch.from_numpy(train)
        obs = ref.index_select(0, rows).index_select(1, tr)
        t0 = _time.time()

        def loss_fn(pn, _item, tr=tr, obs=obs) -> torch.Tensor:  # RMSE (degC) at this fold's training segments
            sim = run(pn(x))
            err = sim.index_select(0, rows).index_select(1, tr) - obs
            return torch.sqrt((err ** 2).nanmean())

        # the package's trainer: Adam on one item (the network), no clipping or early stopping
        res_k = fit(pnet, [None], loss_fn, epochs=args.iters, lr=args.lr, clip=None, patience=args.iters,
                    progress=False)
        for h in res_k.history:
            it = h["epoch"] - 1
            if it % 20 == 0 or it == args.iters - 1:
                log.append({"fold": k, "iter": it, "train_rmse": round(h["train_loss"], 4)})
        print(log[-1], f"{_time.time() - t0:.0f} s", flush=True)
        with torch.no_grad():
            p = pnet(x)
            out = run(dict(p)).numpy()
        held = fold == k
        pred[:, held] = out[:, held]
        for n in LEARNED:
            learned[n][held] = p[n].detach().numpy()[held]
    tab = td.scores(pred, d["ref"], y80)
    ung = has_ref & ~np.isin(np.arange(len(net)), gpos)  # held out and never observed in any fold
    res = {"surface_exchange": args.surface_exchange, "iters": args.iters, "folds": args.folds, "sub_basins": int(len(np.unique(labels))), "train_segments_per_fold":
           [int(sum(1 for p in gpos if fold[p] != k and has_ref[p])) for k in range(args.folds)],
           "held_out_all": {"learned": td.summary(tab, has_ref), "default": td.summary(base_tab, has_ref)},
           "held_out_ungauged_only": {"learned": td.summary(tab, ung), "default": td.summary(base_tab, ung)},
           "learned_parameter_ranges": {n: [round(float(np.nanpercentile(v, q)), 3) for q in (5, 50, 95)]
                                        for n, v in learned.items()},
           "pooled_rmse_held_out": {"learned": round(float(np.sqrt(np.nanmean((pred[y80] - d["ref"][y80]) ** 2))), 3),
                                    "default": round(float(np.sqrt(np.nanmean((base[y80] - d["ref"][y80]) ** 2))), 3)},
           "log": log}
    print(json.dumps({k: v for k, v in res.items() if k != "log"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
