"""Config-driven runs: ``rivergraph train`` / ``route`` / ``temperature`` (inputs, outputs, run directories)."""
from __future__ import annotations

import argparse
import math
import time as _time
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
import pandas as pd
import torch

from .graph.network import NetworkError, RiverNetwork
from .io.atomic import atomic_path
from .metrics import kge, nse
from .models.params import ParameterNet
from .models.router import MuskingumCunge
from .models.temperature import (DEFAULTS, TEMPERATURE_OUTPUTS, StreamTemperature, TemperatureResult,
                                 read_forcing_netcdf, synthetic_texas_forcing)
from .training import (LossSpec, fit_power_law, identifiable_reaches, load_checkpoint, n_sensitivity,
                       route_gauges, storm_inflow, train, twin_law, twin_observations)


# ----------------------------------------------------------------------------------------------- CLI
def register_train_cli(subparsers) -> None:
    """Add the ``train`` and ``route`` subcommands."""
    p = subparsers.add_parser("train", help="train a parameter network through the router",
                              description="Train a parameter network (attributes -> Manning's n ...) through the "
                                          "Muskingum-Cunge router against gauges, as set in CONFIG.yaml.")
    p.add_argument("config", help="YAML configuration file (see docs/training.md)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.set_defaults(func=_cmd_train)
    r = subparsers.add_parser("route", help="route lateral inflow with trained parameters",
                              description="Route the configured lateral inflow with the parameters of a trained "
                                          "checkpoint; writes discharge at every reach (NetCDF) and at gauges (CSV).")
    r.add_argument("config", help="YAML configuration file (the one used for training)")
    r.add_argument("--checkpoint", default=None, help="checkpoint to use (default: output.dir/checkpoint.pt)")
    r.set_defaults(func=_cmd_route)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config.schema import load_config

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
    return run_training(cfg, resume=not args.no_resume)


def _cmd_route(args: argparse.Namespace) -> int:
    from .config.schema import load_config

    cfg = load_config(args.config)
    return run_routing(cfg, checkpoint=args.checkpoint)


# ------------------------------------------------------------------------------ config-driven runs
def _load_inputs(cfg):
    """(net, q_lat [T, N] float32, times, base [N] or None) for a :class:`~rivergraph.config.Config`."""
    from .datasets import load_lower_colorado
    from .io.readers import read_network

    data = None
    if cfg.network == "lower_colorado":
        net, data = load_lower_colorado()
    else:
        net = read_network(cfg.network)
    src = cfg.forcing.source
    if src == "lower_colorado":
        q, times = data["q_lateral"].double(), data["time"]
    elif src == "synthetic_storms":
        s = cfg.forcing.storms
        base = None if data is None else data["q_lateral"].double().mean(0).numpy()
        q = storm_inflow(net, s.hours, base=base, seed=s.seed, storms_per_week=s.storms_per_week,
                         mean_depth_mm=s.mean_depth_mm, mean_duration_h=s.mean_duration_h,
                         radius_km=tuple(s.radius_km), response_h=s.response_h, quiet_h=s.quiet_h,
                         dt_s=cfg.routing.dt_s)
        times = pd.date_range(pd.Timestamp(s.start), periods=s.hours, freq=pd.Timedelta(seconds=cfg.routing.dt_s))
    else:
        with np.load(src, allow_pickle=False) as z:
            missing = [k for k in ("q_lateral", "reach_ids", "time") if k not in z]
            if missing:
                raise ValueError(f"forcing file {src} lacks array(s) {missing}")
            cols = net.positions(z["reach_ids"].tolist())
            if len(cols) != len(net):
                raise NetworkError(f"forcing file {src} has {len(cols)} reaches, the network {len(net)}")
            q = torch.zeros(z["q_lateral"].shape[0], len(net), dtype=torch.float64)
            q[:, torch.from_numpy(cols)] = torch.from_numpy(np.asarray(z["q_lateral"], dtype=np.float64))
            times = pd.DatetimeIndex(pd.to_datetime(z["time"], utc=True))
    if len(times) != q.shape[0]:
        raise ValueError(f"forcing has {q.shape[0]} rows but {len(times)} times")
    return net, q.float(), times


def _fixed_params(cfg, net: RiverNetwork) -> dict:
    out = {}
    for k, v in cfg.routing.fixed.items():
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
    df = pd.read_csv(src, dtype={"gage": str})
    missing = {"time", "gage", "discharge_m3s"} - set(df.columns)
    if missing:
        raise ValueError(f"observations file {src} lacks column(s) {sorted(missing)}")
    df["time"] = pd.to_datetime(df["time"], utc=True)
    if "quality" in df:
        df.loc[df["quality"] == 0, "discharge_m3s"] = np.nan
    tab = df.pivot_table(index="time", columns="gage", values="discharge_m3s", aggfunc="mean")
    tab = tab.reindex(index=times.tz_convert("UTC") if times.tz is not None else times.tz_localize("UTC"),
                      columns=gauge_ids)
    return torch.tensor(tab.to_numpy(dtype=np.float32)), None


def _build_pnet(cfg) -> ParameterNet:
    from .models.params import OutputSpec

    torch.manual_seed(cfg.training.seed)
    outs = {k: OutputSpec(v.lo, v.hi, v.scaling, v.init) for k, v in cfg.model.outputs.items()}
    return ParameterNet(outs, cfg.model.attributes, cfg.model.log_columns, cfg.model.hidden)


def _per_gauge_scores(sim, obs, start) -> pd.DataFrame:
    s, o = sim[start:], obs[start:]
    return pd.DataFrame({"nse": nse(s, o).numpy(), "kge": kge(s, o).numpy()})


def run_training(cfg, resume: bool = True, progress: bool = True) -> int:
    """``rivergraph train``: load inputs per config, train, write parameters / plots / scores; returns 0."""
    t0 = _time.perf_counter()
    net, q, times = _load_inputs(cfg)
    fixed = _fixed_params(cfg, net)
    gauges, gauge_ids = _select_gauges(cfg, net)
    obs, n_true = _observations(cfg, net, q, times, gauges, gauge_ids, fixed)
    pnet = _build_pnet(cfg)
    pnet.scaler.fit(net)
    tr = cfg.training
    train_steps = max(2, int(round(tr.train_fraction * q.shape[0])))
    warm = int(round(tr.warmup_hours * 3600.0 / cfg.routing.dt_s))
    spec = LossSpec(tr.loss, tr.aggregate, warm)
    res = train(pnet, net, q, obs, gauges, train_steps=train_steps, epochs=tr.epochs, lr=tr.lr,
                batch_size=tr.batch_size, clip=tr.clip, spec=spec, patience=tr.patience, seed=tr.seed,
                dt_s=cfg.routing.dt_s, fixed=fixed, mode=cfg.routing.mode, checkpoint=cfg.checkpoint_path,
                resume=resume, progress=progress)
    summary = write_outputs(cfg, net, pnet, q, times, obs, gauges, gauge_ids, fixed, n_true, train_steps, res)
    print(summary + f"\nwall time {_time.perf_counter() - t0:.1f} s; outputs in {cfg.output.dir}")
    return 0


def run_routing(cfg, checkpoint: str | Path | None = None) -> int:
    """``rivergraph route``: route the configured forcing with a trained checkpoint's parameters."""
    ck = load_checkpoint(checkpoint or cfg.checkpoint_path)
    pnet = ParameterNet.from_config(ck["param_net"])
    pnet.load_state_dict(ck["best_model"] or ck["model"])
    net, q, times = _load_inputs(cfg)
    print(write_routing(cfg, net, pnet, q, times, _fixed_params(cfg, net)))
    return 0


# ----------------------------------------------------------------------------------------- outputs
def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


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


def plot_n_vs_area(area_km2, n, mask, fit, path: Path, truth: tuple[float, float] | None = None) -> None:
    """Scatter of learned n vs drainage area (reaches in ``mask`` highlighted) with the fitted power law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(area_km2[~mask], n[~mask], s=2, c="0.75", label="other reaches")
    ax.scatter(area_km2[mask], n[mask], s=3, c="C0", label="upstream of training gauges")
    a = np.logspace(np.log10(max(area_km2.min(), 1e-3)), np.log10(area_km2.max()), 100)
    ax.plot(a, fit[0] * a ** fit[1], "C3", label=f"fit n = {fit[0]:.4f} A^{fit[1]:.3f}")
    if truth is not None:
        ax.plot(a, truth[0] * a ** truth[1], "k--", label=f"truth n = {truth[0]:.4f} A^{truth[1]:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="drainage area A (km2)", ylabel="Manning's n (s m^-1/3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_hydrographs(times, sim, obs, names, path: Path, split: int | None = None, max_panels: int = 12) -> None:
    """Observed vs simulated discharge (m3/s) at up to ``max_panels`` gauges (largest mean flow first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim, obs = np.asarray(sim), np.asarray(obs)
    with np.errstate(all="ignore"):
        order = np.argsort(-np.nan_to_num(np.nanmean(obs, 0), nan=-1))[:max_panels]
    k = len(order)
    ncol = min(3, k)
    nrow = int(math.ceil(k / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.6 * nrow), squeeze=False, sharex=True)
    for ax, j in zip(axes.flat, order):
        ax.plot(times, obs[:, j], "k", lw=1, label="observed")
        ax.plot(times, sim[:, j], "C0", lw=1, label="simulated")
        if split is not None and split < len(times):
            ax.axvline(times[split], color="C3", lw=0.8, ls=":")
        ax.set_title(str(names[j]), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    axes.flat[0].set_ylabel("Q (m3/s)")
    fig.autofmt_xdate()
    fig.tight_layout()
    _save_fig(fig, path)


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
        sens = n_sensitivity(net, q, gauges, params["n"], fixed=fixed, dt_s=cfg.routing.dt_s,
                             mode=cfg.routing.mode)
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
            plot_n_vs_area(A, params["n"], upstream, fit, out / "n_vs_area.png", truth)
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
        plot_hydrographs(times, sim.numpy(), obs.numpy(), gauge_ids, out / "hydrographs.png", train_steps)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return "\n".join(lines)


def write_routing(cfg, net, pnet, q, times, fixed) -> str:
    """Route every reach with the learned parameters; write discharge.nc (time x reach, m3/s), gauge CSV and,
    with observations, hydrographs; returns a summary."""
    import xarray as xr

    out = Path(cfg.output.dir)
    router = MuskingumCunge(net, dt=cfg.routing.dt_s, mode=cfg.routing.mode)
    with torch.no_grad():
        params = dict(fixed)
        params.update(pnet.parameters_for(net))
        Q = router(q, **params)
    ds = xr.Dataset({"discharge": (("time", "reach"), Q.numpy().astype(np.float32),
                                   {"units": "m3 s-1", "long_name": "routed discharge (interval mean)"})},
                    coords={"time": times.tz_convert(None) if times.tz is not None else times,
                            "reach_id": ("reach", net.ids)})
    with atomic_path(out / "discharge.nc") as tmp:
        ds.to_netcdf(tmp, format="NETCDF4")
    g = net.gauges()
    lines = [f"routed {len(net)} reaches x {len(times)} steps; {router.balance}"]
    if len(g):
        pos = np.sort(g.index.to_numpy().astype(np.int64))
        tab = pd.DataFrame(Q[:, torch.from_numpy(pos)].numpy(), columns=g.loc[pos].to_numpy().astype(str))
        tab.insert(0, "time", times)
        with atomic_path(out / "gauge_discharge.csv") as tmp:
            tab.to_csv(tmp, index=False)
        lines.append(f"discharge at {len(pos)} gauges -> {out / 'gauge_discharge.csv'}")
    lines.append(f"discharge at every reach -> {out / 'discharge.nc'}")
    return "\n".join(lines)


def write_netcdf(path, net: RiverNetwork, time, result: TemperatureResult) -> None:
    """Write water temperature, discharge, equilibrium and lateral temperature (time x reach) to netCDF,
    atomically (CF-style units; reach ids and lat/lon as coordinates)."""
    import xarray as xr

    from .io.atomic import atomic_path

    time = pd.DatetimeIndex(time)
    tu = time.tz_convert("UTC").tz_localize(None) if time.tz is not None else time
    coords = {"time": tu, "reach": net.ids}
    for c in ("lat", "lon"):
        if c in net.attrs:
            coords[c] = ("reach", net.attrs[c].to_numpy(np.float64))
    arr = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    ds = xr.Dataset({
        "water_temperature": (("time", "reach"), arr(result.temperature),
                              {"units": "degC", "long_name": "reach water temperature at end of step"}),
        "discharge": (("time", "reach"), arr(result.discharge),
                      {"units": "m3 s-1", "long_name": "routed outflow at end of step"}),
        "equilibrium_temperature": (("time", "reach"), arr(result.equilibrium), {"units": "degC"}),
        "lateral_inflow_temperature": (("time", "reach"), arr(result.lateral_temp), {"units": "degC"}),
    }, coords=coords, attrs={"source": "rivergraph.models.temperature", "time_zone": "UTC"})
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)


def plot_map(path, net: RiverNetwork, values: np.ndarray, title: str = "water temperature (degC)",
             series: Mapping[str, np.ndarray] | None = None, time=None) -> None:
    """Map of one value per reach (coloured by ``values`` at reach lat/lon, marker size by stream order),
    optionally beside time series (name -> [T] array), saved atomically (format from the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io.atomic import atomic_path

    if not {"lat", "lon"} <= set(net.attrs):
        raise NetworkError("plot_map needs the network columns 'lat' and 'lon'")
    ncol = 2 if series else 1
    fig, axes = plt.subplots(1, ncol, figsize=(6.5 * ncol, 5.5))
    ax = axes[0] if series else axes
    size = 0.5 + 2.0 * net.attrs["order"].to_numpy(np.float64) if "order" in net.attrs else 2.0
    sc = ax.scatter(net.attrs["lon"], net.attrs["lat"], c=values, s=size, cmap="coolwarm", linewidths=0)
    fig.colorbar(sc, ax=ax, label=title)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    if series:
        for name, v in series.items():
            axes[1].plot(time if time is not None else np.arange(len(v)), v, label=name)
        axes[1].set_ylabel("degC")
        axes[1].legend(fontsize=7)
        axes[1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    suffix = "." + str(path).rsplit(".", 1)[-1] if "." in str(path) else ".png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=suffix[1:])
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI
def _config_model():
    from typing import Optional

    from pydantic import BaseModel, ConfigDict, Field

    from .physics.channels import CHANNELS

    class _Forcing(BaseModel):
        model_config = ConfigDict(extra="forbid")
        kind: Literal["synthetic_texas", "netcdf"] = "synthetic_texas"
        seed: int = 0
        path: Optional[str] = None  # kind netcdf: file read by read_forcing_netcdf

    class _Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        shade: float = DEFAULTS["shade"]
        ke_scale: float = DEFAULTS["ke_scale"]
        gw_frac: float = DEFAULTS["gw_frac"]
        ss_frac: float = DEFAULTS["ss_frac"]
        ss_tau_days: float = DEFAULTS["ss_tau_days"]
        gw_tau_days: float = DEFAULTS["gw_tau_days"]
        gw_offset: float = DEFAULTS["gw_offset"]

    class TemperatureConfig(BaseModel):
        """``rivergraph temperature`` configuration (see docs/temperature.md)."""

        model_config = ConfigDict(extra="forbid")
        network: Literal["lower_colorado"] = "lower_colorado"
        mode: Literal[tuple(CHANNELS)] = "trapezoid"
        equilibrium: Literal["energy", "mohseni"] = "energy"
        spinup_hours: int = Field(48, ge=0, le=24 * 60)
        forcing: _Forcing = _Forcing()
        parameters: _Params = _Params()
        output_dir: str = "temperature_out"
        plot_gauges: int = Field(4, ge=0, le=20)
        dtype: Literal["float32", "float64"] = "float64"
        note: Optional[str] = None

    return TemperatureConfig


def run_config(path) -> int:
    """Run ``rivergraph temperature CONFIG.yaml``: route the shipped Lower Colorado NWM lateral inflow
    (28 h from 2021-08-23 13 UTC, after ``spinup_hours`` with the first hour held), compute water
    temperature with the configured forcing and parameters, write temperature.nc and temperature.png."""
    from tqdm import tqdm

    from .config.schema import read_yaml_mapping
    from .datasets import load_lower_colorado

    path = Path(path)
    cfg = _config_model().model_validate(read_yaml_mapping(path))
    for name, v in cfg.parameters.model_dump().items():
        spec = TEMPERATURE_OUTPUTS[name]
        if not spec.lo <= v <= spec.hi:
            raise ValueError(f"{path}: parameters.{name} = {v} is outside its bounds [{spec.lo}, {spec.hi}]")
    out_dir = Path(cfg.output_dir)
    dtype = getattr(torch, cfg.dtype)
    bar = tqdm(total=4, desc="temperature", unit="stage")
    net, data = load_lower_colorado()
    spin = cfg.spinup_hours
    q = data["q_lateral"].to(dtype)
    q = torch.cat([q[:1].expand(spin, -1), q], 0)
    time = pd.date_range(data["time"][0] - pd.Timedelta(hours=spin), periods=q.shape[0], freq="h", tz="UTC")
    if cfg.forcing.kind == "netcdf":
        if not cfg.forcing.path:
            raise ValueError(f"{path}: forcing.kind 'netcdf' needs forcing.path")
        forcing = read_forcing_netcdf(cfg.forcing.path, net, time)
    else:
        forcing = synthetic_texas_forcing(net, time, seed=cfg.forcing.seed)
    model = StreamTemperature(net, dt=float(data["dt_s"]), mode=cfg.mode, equilibrium=cfg.equilibrium)
    bar.set_postfix_str("routing")
    with torch.no_grad():
        hyd = model.route(q)
        bar.update()
        bar.set_postfix_str("heat")
        res = model.temperature(hyd, forcing, time=time, **cfg.parameters.model_dump())
        bar.update()
    keep = slice(spin, None)
    res = TemperatureResult(res.temperature[keep], res.discharge[keep], res.equilibrium[keep], res.lateral_temp[keep])
    write_netcdf(out_dir / "temperature.nc", net, time[keep], res)
    bar.update()
    wet = (res.discharge.min(0).values > 0.01).numpy()
    gauges = [p for p in net.gauges().index if wet[p]][: cfg.plot_gauges]
    series = {f"reach {net.ids[p]} (gauge {net.attrs['gage'].iloc[p].strip()})": res.temperature[:, p].numpy()
              for p in gauges}
    vals = res.temperature.mean(0).numpy().copy()
    vals[~wet] = np.nan
    plot_map(out_dir / "temperature.png", net, vals, "mean water temperature, flowing reaches (degC)", series,
             time[keep])
    bar.update()
    bar.close()
    tw = res.temperature[:, wet]
    print(f"{len(net)} reaches, {int(wet.sum())} flowing (> 0.01 m3/s), {len(time) - spin} hourly steps "
          f"after {spin} h spin-up; water temperature on flowing reaches: mean {float(tw.mean()):.2f}, "
          f"min {float(tw.min()):.2f}, max {float(tw.max()):.2f} degC")
    print(f"wrote {out_dir / 'temperature.nc'} and {out_dir / 'temperature.png'}")
    return 0


def register_temperature_cli(subparsers) -> None:
    """Add the ``temperature`` subcommand."""
    p = subparsers.add_parser(
        "temperature", help="route discharge and stream temperature on the shipped Lower Colorado network",
        description="Route the shipped Lower Colorado NWM lateral inflow and compute water temperature per reach "
                    "(heat transport with surface exchange; synthetic central-Texas weather, see "
                    "docs/temperature.md); writes temperature.nc and temperature.png to output_dir.")
    p.add_argument("config", help="YAML configuration file (e.g. examples/temperature_lower_colorado.yaml)")
    p.set_defaults(func=lambda args: run_config(args.config))


def register_cli(subparsers) -> None:
    """Add the ``train``, ``route`` and ``temperature`` subcommands."""
    register_train_cli(subparsers)
    register_temperature_cli(subparsers)
