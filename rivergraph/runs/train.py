"""``rivergraph train`` and ``rivergraph route RUN_DIR``: a training run writes a run directory (``config.yml``
as run, the checkpoint, ``summary.json``, parameters, scores, figures); routing with a run needs nothing else."""
from __future__ import annotations

import math
import time as _time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ..graph.network import NetworkError, RiverNetwork
from ..io.atomic import atomic_path
from ..metrics import kge, nse
from ..models.params import ParameterNet
from ..models.router import MuskingumCunge
from ..training import (LossSpec, fit_power_law, identifiable_reaches, load_checkpoint, n_sensitivity,
                               route_gauges, storm_inflow, train, twin_law, twin_observations)


# ------------------------------------------------------------------------------ config-driven runs
def _load_inputs(cfg):
    """(net, q_lat [T, N] float32, times, base [N] or None) for a :class:`~rivergraph.config.Config`."""
    from ..datasets import is_dataset, resolve_network
    from ..io.readers import read_forcing_npz

    ns = cfg.network
    net, data = resolve_network(ns.source, None, ns.format, **ns.reader_kwargs())
    src = cfg.forcing.source
    if is_dataset(src):
        q, times = data["q_lateral"].double(), data["time"]
    elif src == "synthetic_storms":
        s = cfg.forcing.storms
        base = None if data is None else data["q_lateral"].double().mean(0).numpy()
        q = storm_inflow(net, s.hours, base=base, seed=s.seed, storms_per_week=s.storms_per_week,
                         mean_depth_mm=s.mean_depth_mm, mean_duration_h=s.mean_duration_h,
                         radius_km=tuple(s.radius_km), response_h=s.response_h, quiet_h=s.quiet_h,
                         dt_s=cfg.routing.dt_s)
        times = pd.date_range(pd.Timestamp(s.start), periods=s.hours, freq=pd.Timedelta(seconds=cfg.routing.dt_s))
    elif str(src).endswith(".nc"):
        from ..io.nhm import read_segment_series

        t, vals = read_segment_series(src, net)
        q, times = _hold_rows(torch.from_numpy(vals), pd.DatetimeIndex(t), cfg.routing.dt_s)
    else:
        q, times = read_forcing_npz(src, net)
    if len(times) != q.shape[0]:
        raise ValueError(f"forcing has {q.shape[0]} rows but {len(times)} times")
    return net, q.float(), times


def _hold_rows(x: torch.Tensor, times: pd.DatetimeIndex, dt_s: float) -> tuple[torch.Tensor, pd.DatetimeIndex]:
    """Rows at a regular step coarser than ``dt_s`` (daily NHM series) held constant over their ``dt_s`` steps:
    ([T * k, ...], the step-start times, UTC). A step that is not a whole multiple of ``dt_s`` is an error."""
    step = (times[1] - times[0]).total_seconds() if len(times) > 1 else dt_s
    k = step / dt_s
    if abs(k - round(k)) > 1e-9 or k < 1:
        raise ValueError(f"series step {step} s is not a whole multiple of routing.dt_s {dt_s} s")
    k = int(round(k))
    if len(times) > 1 and not (np.diff(times.asi8) == np.diff(times.asi8)[0]).all():
        raise ValueError("series times are not regular")
    start = times[0].tz_localize("UTC") if times.tz is None else times[0]
    new = pd.date_range(start, periods=len(times) * k, freq=pd.Timedelta(seconds=dt_s))
    return (x.repeat_interleave(k, 0) if k > 1 else x), new


_BANKFULL = ("width_coef", "p")


def _fixed_params(cfg, net: RiverNetwork) -> dict:
    out = {}
    for k, v in cfg.routing.params.items():
        if k in _BANKFULL and v == "bankfull":
            from ..physics.channels import bankfull_power_law_p, parameter_spec

            q = cfg.routing.params.get("width_exp", cfg.routing.params.get("q"))
            if not isinstance(q, (int, float)):
                raise ValueError(f"routing.params.{k}: 'bankfull' needs a numeric routing.params.width_exp")
            for c in ("top_width_m", "bankfull_depth_m"):
                if c not in net.attrs:
                    raise NetworkError(f"routing.params.{k}: 'bankfull' needs network column '{c}'")
            spec = parameter_spec(k)
            out[k] = np.clip(bankfull_power_law_p(net.attr("top_width_m"), net.attr("bankfull_depth_m"), float(q)),
                             spec.lo, spec.hi)
            continue
        if isinstance(v, str):
            if v not in net.attrs:
                raise NetworkError(f"routing.fixed.{k}: network has no column '{v}'")
            out[k] = net.attr(v)
        else:
            out[k] = float(v)
    return out


def _select_gauges(cfg, net: RiverNetwork) -> tuple[np.ndarray, np.ndarray]:
    """Sorted gauge positions and their ids."""
    g = net.gauges()
    if cfg.gauges.ids is not None:
        want = [str(x) for x in cfg.gauges.ids]
        unknown = sorted(set(want) - set(g.to_numpy()))
        if unknown:
            raise NetworkError(f"gauges.ids not on any reach of the network: {unknown[:10]}")
        g = g[g.isin(want)]
    pos = np.sort(g.index.to_numpy().astype(np.int64))
    if cfg.gauges.max_upstream_reaches is not None:
        pos = np.array([p for p in pos if net.upstream_mask([p]).sum() <= cfg.gauges.max_upstream_reaches],
                       dtype=np.int64)
    if len(pos) == 0:
        raise ValueError("no gauges selected (check gauges.ids / gauges.max_upstream_reaches)")
    return pos, g.loc[pos].to_numpy().astype(str)


def _observations(cfg, net, q, times, gauges, gauge_ids, fixed):
    """(obs [T, G] float32, n_true [N] or None)."""
    src = cfg.observations.source
    if src == "twin":
        tw = cfg.observations.twin
        n_true = twin_law(net, tw.prefactor, tw.exponent)
        obs = twin_observations(net, q, gauges, n_true, fixed=fixed, dt_s=cfg.routing.dt_s, mode=cfg.routing.mode,
                                noise=tw.noise, seed=tw.seed)
        return obs.float(), n_true
    if str(src).endswith(".nc"):
        from ..io.nhm import read_prms_gauges

        g = read_prms_gauges(src, net)
        tab = pd.DataFrame(g.discharge_m3s, index=pd.DatetimeIndex(g.time), columns=g.ids)
        missing = sorted(set(gauge_ids) - set(g.ids))
        if missing:
            raise ValueError(f"observations file {src} has no gauges {missing[:10]}")
        held, t = _hold_rows(torch.tensor(tab[list(gauge_ids)].to_numpy()), tab.index, cfg.routing.dt_s)
        if len(t) != len(times) or t[0] != times[0]:
            raise ValueError(f"observations {src} cover {t[0]}..{t[-1]}, the forcing {times[0]}..{times[-1]}")
        return held.float(), None
    from ..io.gauges import gauge_table, read_gauge_csv

    tab = gauge_table(read_gauge_csv(src), times, gauge_ids)
    return torch.tensor(tab.to_numpy(dtype=np.float32)), None


def _build_pnet(cfg) -> ParameterNet:
    from ..models.params import OutputSpec

    torch.manual_seed(cfg.training.seed)
    outs = {k: OutputSpec(v.lo, v.hi, v.scaling, v.init) for k, v in cfg.model.outputs.items()}
    return ParameterNet(outs, cfg.model.attributes, cfg.model.log_columns, cfg.model.hidden)


def _per_gauge_scores(sim, obs, start) -> pd.DataFrame:
    s, o = sim[start:], obs[start:]
    return pd.DataFrame({"nse": nse(s, o).numpy(), "kge": kge(s, o).numpy()})


def run_training(cfg, resume: bool = True, progress: bool = True) -> int:
    """``rivergraph train``: load inputs per config, train, write parameters / plots / scores; returns 0."""
    t0 = _time.perf_counter()
    write_run_config(cfg, Path(cfg.output.dir))
    net, q, times = _load_inputs(cfg)
    fixed = _fixed_params(cfg, net)
    gauges, gauge_ids = _select_gauges(cfg, net)
    print(f"rivergraph train: network {cfg.network.source} ({len(net)} reaches), forcing {cfg.forcing.source} "
          f"({q.shape[0]} steps of {cfg.routing.dt_s:g} s), observations {cfg.observations.source} at "
          f"{len(gauges)} gauges, {cfg.training.epochs} epochs -> {cfg.output.dir}", flush=True)
    obs, n_true = _observations(cfg, net, q, times, gauges, gauge_ids, fixed)
    if cfg.gauges.complete_only:
        keep = torch.isfinite(obs).all(0).numpy()
        if not keep.any():
            raise ValueError("gauges.complete_only: no gauge is observed at every forcing row")
        gauges, gauge_ids, obs = gauges[keep], gauge_ids[keep], obs[:, torch.from_numpy(keep)]
    held = np.zeros(len(gauges), dtype=bool)
    if cfg.gauges.holdout_roots:
        from ..training.gauge_splits import holdout_by_tree

        held = holdout_by_tree(net, gauges, gauge_ids, cfg.gauges.holdout_roots)
    pnet = _build_pnet(cfg)
    pnet.scaler.fit(net)
    tr = cfg.training
    if tr.train_end is not None:
        end = pd.Timestamp(tr.train_end)
        end = end.tz_localize("UTC") if end.tz is None and times.tz is not None else end
        train_steps = int((times < end).sum())
        if not 1 < train_steps < q.shape[0]:
            raise ValueError(f"training.train_end {tr.train_end} leaves {train_steps} of {q.shape[0]} rows to train")
    else:
        train_steps = max(2, int(round(tr.train_fraction * q.shape[0])))
    warm = int(round(tr.warmup_hours * 3600.0 / cfg.routing.dt_s))
    spec = LossSpec(tr.loss, tr.aggregate, warm)
    tg, tobs = gauges[~held], obs[:, torch.from_numpy(~held)]
    # with train_end the trainer sees only the training rows: nothing of the test period steers training
    T_fit = train_steps if tr.train_end is not None else q.shape[0]
    res = train(pnet, net, q[:T_fit], tobs[:T_fit], tg, train_steps=train_steps, epochs=tr.epochs, lr=tr.lr,
                batch_size=tr.batch_size, clip=tr.clip, spec=spec, patience=tr.patience, seed=tr.seed,
                dt_s=cfg.routing.dt_s, fixed=fixed, mode=cfg.routing.mode, checkpoint=cfg.checkpoint_path,
                resume=resume, progress=progress)
    summary = write_outputs(cfg, net, pnet, q, times, tobs, tg, gauge_ids[~held], fixed, n_true, train_steps, res)
    if tr.train_end is not None or held.any():
        from .report import write_split_report

        summary += "\n" + write_split_report(cfg, net, pnet, q, times, obs, gauges, gauge_ids, held, fixed,
                                             train_steps, warm)
    print(summary + f"\nwall time {_time.perf_counter() - t0:.1f} s; outputs in {cfg.output.dir}")
    return 0


def run_routing(cfg, checkpoint: str | Path | None = None) -> int:
    """Route a training config's forcing with a checkpoint's parameters (default ``output.dir/checkpoint.pt``);
    prefer ``rivergraph route RUN_DIR`` (:func:`route_run`)."""
    ck = load_checkpoint(checkpoint or cfg.checkpoint_path)
    pnet = ParameterNet.from_config(ck["param_net"])
    pnet.load_state_dict(ck["best_model"] or ck["model"])
    net, q, times = _load_inputs(cfg)
    print(write_routing(cfg, net, pnet, q, times, _fixed_params(cfg, net)))
    return 0


# ----------------------------------------------------------------------------------------- outputs
def _save_fig(fig, path: Path) -> None:
    from ..plots import save

    save(fig, path, dpi=110)


def write_parameters(net: RiverNetwork, params: Mapping[str, np.ndarray], path_stem: Path,
                     extra: Mapping[str, np.ndarray] | None = None) -> Path:
    """Learned parameters per reach joined to reach ids: a GeoPackage (layer ``parameters``) when the network has
    geometry, else CSV; written atomically. Returns the path written."""
    df = pd.DataFrame({"reach_id": net.ids})
    for c in ("drainage_area_km2", "gage"):
        if c in net.attrs:
            df[c] = net.attrs[c].to_numpy()
    for k, v in {**params, **(extra or {})}.items():
        df[k] = np.asarray(v)
    if net.geometry is not None:
        import geopandas as gpd

        path = path_stem.with_suffix(".gpkg")
        gdf = gpd.GeoDataFrame(df, geometry=list(net.geometry), crs=getattr(net.geometry, "crs", None))
        with atomic_path(path) as tmp:
            gdf.to_file(tmp, driver="GPKG", layer="parameters")
        return path
    path = path_stem.with_suffix(".csv")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def write_outputs(cfg, net, pnet, q, times, obs, gauges, gauge_ids, fixed, n_true, train_steps, res) -> str:
    """Parameters (GPKG/CSV), n-vs-area plot, hydrographs, per-gauge scores and a JSON summary; returns a summary."""
    import json

    out = Path(cfg.output.dir)
    with torch.no_grad():
        params = {k: v.double().numpy() for k, v in pnet.parameters_for(net).items()}
    upstream = net.upstream_mask(gauges)
    lines = [f"epochs {res.epochs_run} (best {res.best_epoch}, val loss {res.best_val_loss:.4g}"
             f"{', stopped early' if res.stopped_early else ''}); training {res.wall_s:.1f} s"]
    summary = {"epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss,
               "train_wall_s": res.wall_s, "gauges": len(gauges), "reaches_upstream": int(upstream.sum()),
               "history": res.history}
    extra = {}
    if n_true is not None:
        extra["n_true"] = n_true
    if "n" in params and "drainage_area_km2" in net.attrs:
        A = net.attr("drainage_area_km2")
        fit = fit_power_law(A[upstream], params["n"][upstream])
        summary.update(fit_prefactor=fit[0], fit_exponent=fit[1])
        lines.append(f"learned n ~ {fit[0]:.4f} A^{fit[1]:.4f} (reaches upstream of gauges)")
        q_sens = q if cfg.training.train_end is None else q[:train_steps]
        sens = n_sensitivity(net, q_sens, gauges, params["n"], fixed=fixed, dt_s=cfg.routing.dt_s,
                             mode=cfg.routing.mode, probes=cfg.output.sensitivity_probes)
        ident = identifiable_reaches(sens, upstream)
        fit_id = fit_power_law(A[ident], params["n"][ident])
        summary.update(identifiable_reaches=int(ident.sum()), fit_prefactor_identifiable=fit_id[0],
                       fit_exponent_identifiable=fit_id[1])
        extra["n_sensitivity"] = sens
        hidden = upstream & ~ident
        lines.append(f"  on the {int(ident.sum())} identifiable reaches (n sensitivity >= 1% of the median; "
                     f"the other {int(hidden.sum())} hardly show at any gauge): n ~ {fit_id[0]:.4f} A^{fit_id[1]:.4f}")
        truth = None
        if n_true is not None:
            tw = cfg.observations.twin
            truth = (tw.prefactor, tw.exponent)
            rel = np.abs(params["n"][upstream] / n_true[upstream] - 1.0)
            summary.update(true_prefactor=tw.prefactor, true_exponent=tw.exponent,
                           median_rel_n_error=float(np.median(rel)), p90_rel_n_error=float(np.quantile(rel, 0.9)))
            lines.append(f"truth n = {tw.prefactor} A^{tw.exponent}: exponent error "
                         f"{abs(fit[1] / tw.exponent - 1) * 100:.1f}%, median per-reach n error "
                         f"{np.median(rel) * 100:.2f}% (90th pct {np.quantile(rel, 0.9) * 100:.1f}%)")
            rel_id = float(np.median(np.abs(params["n"][ident] / n_true[ident] - 1)))
            summary["median_rel_n_error_identifiable"] = rel_id
            lines.append(f"  identifiable reaches: exponent error {abs(fit_id[1] / tw.exponent - 1) * 100:.1f}%, "
                         f"median n error {rel_id * 100:.2f}%")
            bias = {}
            edges = (0.0, 1.0, 10.0, 100.0, 1000.0, math.inf)
            for lo, hi in zip(edges[:-1], edges[1:]):
                m = upstream & (A >= lo) & (A < hi)
                if m.any():
                    bias[f"{lo:g}-{hi:g}"] = {"reaches": int(m.sum()),
                                          "median_signed_rel_error": float(np.median(params["n"][m] / n_true[m] - 1))}
            summary["n_error_by_area_km2"] = bias
            lines.append("  median signed n error by drainage area: " + ", ".join(
                f"{k}: {v['median_signed_rel_error']:+.1%} ({v['reaches']})" for k, v in bias.items()))
        if cfg.output.plots:
            from ..plots import plot_n_fit

            _save_fig(plot_n_fit(A, params["n"], upstream, fit, truth), out / "n_vs_area.png")
    write_parameters(net, params, out / "parameters", extra)
    sim = route_gauges(pnet, net, q, gauges, fixed=fixed, dt_s=cfg.routing.dt_s, mode=cfg.routing.mode)
    scores = _per_gauge_scores(sim, obs, train_steps if train_steps < q.shape[0] else 0)
    scores.insert(0, "gage", gauge_ids)
    scores.insert(0, "reach_id", net.ids[gauges])
    with atomic_path(out / "gauge_scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    period = "validation" if train_steps < q.shape[0] else "training"
    summary["median_nse"] = float(np.nanmedian(scores["nse"]))
    lines.append(f"median NSE over {len(gauges)} gauges ({period} period): {summary['median_nse']:.4f}")
    if cfg.output.plots:
        from ..plots import plot_sim_obs

        _save_fig(plot_sim_obs(times, sim.numpy(), obs.numpy(), gauge_ids, train_steps), out / "hydrographs.png")
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return "\n".join(lines)


def write_routing(cfg, net, pnet, q, times, fixed, out: Path | None = None) -> str:
    """Route every reach with the learned parameters, streamed in chunks: ``discharge.nc`` (the CF layout,
    :mod:`rivergraph.io.cf`) and ``gauges.csv`` (:mod:`rivergraph.io.gauges`) in ``out`` (default
    ``output.dir``); returns a summary."""
    from ..io.writer import route_to_file

    out = Path(cfg.output.dir) if out is None else Path(out)
    router = MuskingumCunge(net, dt=cfg.routing.dt_s, mode=cfg.routing.mode)
    with torch.no_grad():
        params = dict(fixed)
        params.update(pnet.parameters_for(net))
    gauges = out / "gauges.csv" if len(net.gauges()) else None
    s = route_to_file(router, q, out / "discharge.nc", times=times, gauge_csv=gauges, **params)
    lines = [f"routed {len(net)} reaches x {len(times)} steps; {s.balance}"]
    if gauges is not None:
        lines.append(f"discharge at {len(net.gauges())} gauges -> {gauges}")
    lines.append(f"discharge at every reach -> {out / 'discharge.nc'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ run directories
RUN_CONFIG = "config.yml"


def write_run_config(cfg, out: Path) -> Path:
    """Dump the validated config into the run directory as ``config.yml``, with input paths made absolute so that
    the run directory is usable from anywhere (``rivergraph route RUN_DIR``)."""
    import yaml

    from ..datasets import is_dataset
    from ..io.atomic import atomic_path

    d = cfg.model_dump(mode="json")
    for sec, key in (("network", "source"), ("forcing", "source"), ("observations", "source")):
        v = d[sec][key]
        if not is_dataset(v) and Path(v).exists():
            d[sec][key] = str(Path(v).resolve())
    d["output"]["dir"] = str(Path(out).resolve())
    with atomic_path(Path(out) / RUN_CONFIG) as tmp:
        tmp.write_text("# written by rivergraph train: the run's validated config\n" + yaml.safe_dump(d, sort_keys=False))
    return Path(out) / RUN_CONFIG


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (a folder with config.yml)."""
    return Path(path).is_dir() and (Path(path) / RUN_CONFIG).is_file()


def load_run(run_dir: str | Path):
    """``(TrainConfig, ParameterNet)`` of a run directory (its config.yml and best checkpoint)."""
    from ..config.train import load_config

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {RUN_CONFIG}; written by rivergraph train)")
    cfg = load_config(run_dir / RUN_CONFIG)
    ck_path = run_dir / cfg.output.checkpoint
    if not ck_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint {cfg.output.checkpoint} (training did not finish an epoch)")
    ck = load_checkpoint(ck_path)
    pnet = ParameterNet.from_config(ck["param_net"])
    pnet.load_state_dict(ck["best_model"] or ck["model"])
    return cfg, pnet


def run_parameters(run_dir: str | Path, net: RiverNetwork | None = None):
    """``(mode, dt_s, params)`` of a trained run for routing another network / period: the learned parameters
    on ``net`` (default the run's network) and the run's fixed ones."""
    cfg, pnet = load_run(run_dir)
    if net is None:
        net = _load_inputs(cfg)[0]
    with torch.no_grad():
        params = {**_fixed_params(cfg, net), **pnet.parameters_for(net)}
    return cfg.routing.mode, cfg.routing.dt_s, params


def route_run(run_dir: str | Path) -> int:
    """``rivergraph route RUN_DIR``: route the run's forcing on its network with its learned parameters;
    writes discharge.nc and gauges.csv into the run directory."""
    cfg, pnet = load_run(run_dir)
    net, q, times = _load_inputs(cfg)
    print(write_routing(cfg, net, pnet, q, times, _fixed_params(cfg, net), out=Path(run_dir)))
    return 0
