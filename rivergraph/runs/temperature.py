"""``rivergraph temperature CONFIG.yaml``: discharge and stream temperature on any network and forcing.

The network and the lateral inflow are named as in ``rivergraph route`` (``network``, ``runoff``, ``mapping``,
``period``; without ``runoff`` the network dataset's own lateral inflow, e.g. the shipped Lower Colorado NWM
q_lateral); the weather is synthetic central-Texas summer, a netCDF file (``read_forcing_netcdf``) or a
PRMS-SNTemp drivers file (``read_sntemp_drivers``, NHM networks). Outputs: ``temperature.nc`` (the CF layout of
:mod:`rivergraph.io.cf`; reaches with outflow below ``dry_m3s`` are NaN: no flowing water to have a
temperature) and ``temperature.png`` (a map where the network has lat/lon, else the distribution per reach).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["run_temperature", "run_config"]


def _inputs(cfg, base: Path):
    """(net, time [T] UTC, dt_s, q_lat [T, N] m3/s float64) after the spin-up rows (first inflow held)."""
    from ..datasets import resolve_network
    from .route import read_lateral_inflow

    ns = cfg.network
    net, data = resolve_network(ns.source, base, ns.format, **ns.reader_kwargs())
    if cfg.runoff is None:
        if data is None or "q_lateral" not in data:
            raise ValueError(f"network '{ns.source}' is not a dataset with its own lateral inflow: give a "
                             "'runoff' section (as in rivergraph route)")
        q = torch.as_tensor(data["q_lateral"]).double()
        time = pd.DatetimeIndex(data["time"])
        time = time.tz_localize("UTC") if time.tz is None else time.tz_convert("UTC")
        step = float(data["dt_s"])
    else:
        time, step, q = read_lateral_inflow(cfg, net, base)
    dt = float(cfg.dt_s or step)
    if abs(dt - step) > 1e-6:
        raise ValueError(f"dt_s {dt:g} s differs from the lateral-inflow interval {step:g} s")
    spin = int(round(cfg.spinup_hours * 3600.0 / dt))
    q = torch.cat([q[:1].expand(spin, -1), q], 0)
    time = pd.date_range(time[0] - pd.Timedelta(seconds=spin * dt), periods=q.shape[0], freq=pd.Timedelta(seconds=dt))
    return net, time, dt, q, spin


def _forcing(cfg, net, time, base: Path):
    from ..config.base import resolve_path
    from ..io.weather import read_forcing_netcdf
    from ..models.temperature import synthetic_texas_forcing

    f = cfg.forcing
    if f.kind == "netcdf":
        return read_forcing_netcdf(resolve_path(f.path, base), net, time)
    if f.kind == "prms_sntemp":
        from ..io.sntemp import read_sntemp_drivers

        drv = read_sntemp_drivers(resolve_path(f.path, base), net, wind=f.wind)
        days = pd.DatetimeIndex(drv.time)
        days = days.tz_localize("UTC") if days.tz is None else days.tz_convert("UTC")
        # spin-up rows before the file's first day repeat it
        pos = np.clip(days.get_indexer(time.floor("D")), -2, None)
        if (pos == -1).any() and (time[pos == -1] >= days[0]).any():
            first = time[(pos == -1) & (time >= days[0])][0]
            raise ValueError(f"{f.path}: the drivers have no day {first.date()} of the run ({days[0].date()} .. "
                             f"{days[-1].date()})")
        pos = torch.from_numpy(np.where(pos < 0, 0, pos))
        g = drv.forcing
        pick = lambda x: x.index_select(0, pos) if torch.is_tensor(x) and x.ndim == 2 else x  # noqa: E731
        return type(g)(**{k: pick(getattr(g, k)) for k in g.__dataclass_fields__})
    return synthetic_texas_forcing(net, time, seed=f.seed)


def run_temperature(path) -> int:
    """Route the configured lateral inflow, compute water temperature with the configured forcing and parameters,
    write temperature.nc (CF, :func:`rivergraph.io.cf.write_temperature`) and temperature.png."""
    from tqdm import tqdm

    from ..config.base import read_yaml_mapping
    from ..config.sections import RoutingSection
    from ..config.temperature import TemperatureConfig
    from ..io.cf import write_temperature
    from ..models.temperature import StreamTemperature, TemperatureResult
    from ..plots import plot_reach_map, save
    from .route import route_parameters

    path = Path(path)
    base = path.parent
    cfg = TemperatureConfig.model_validate(read_yaml_mapping(path))
    out_dir = Path(cfg.output_dir)
    dtype = getattr(torch, cfg.dtype)
    bar = tqdm(total=4, desc="temperature", unit="stage")
    net, time, dt, q, spin = _inputs(cfg, base)
    forcing = _forcing(cfg, net, time, base)
    model = StreamTemperature(net, dt=dt, mode=cfg.mode, equilibrium=cfg.equilibrium,
                              surface_exchange=cfg.surface_exchange)
    rparams = route_parameters(RoutingSection(mode=cfg.mode, params=cfg.routing_params), net, base)
    bar.set_postfix_str("routing")
    with torch.no_grad():
        hyd = model.route(q.to(dtype), rparams)
        bar.update()
        bar.set_postfix_str("heat")
        res = model.temperature(hyd, forcing, time=time, **cfg.parameters.model_dump())
        bar.update()
    keep = slice(spin, None)
    res = TemperatureResult(res.temperature[keep], res.discharge[keep], res.equilibrium[keep], res.lateral_temp[keep])
    flowing = res.discharge >= cfg.dry_m3s
    shown = TemperatureResult(torch.where(flowing, res.temperature, torch.nan), res.discharge, res.equilibrium,
                              res.lateral_temp)
    write_temperature(out_dir / "temperature.nc", net, time[keep], shown)
    bar.update()
    wet = flowing.all(0).numpy()
    gauges = [p for p in net.gauges().index if wet[p]][: cfg.plot_gauges] if "gage" in net.attrs else []
    series = {f"reach {net.ids[p]} (gauge {str(net.attrs['gage'].iloc[p]).strip()})": res.temperature[:, p].numpy()
              for p in gauges}
    vals = res.temperature.mean(0).numpy().copy()
    vals[~wet] = np.nan
    title = "mean water temperature, flowing reaches (degC)"
    if {"lat", "lon"} <= set(net.attrs):
        fig = plot_reach_map(net, vals, title, series, time[keep])
    else:
        fig = _distribution_figure(vals, series, time[keep], title)
    save(fig, out_dir / "temperature.png", dpi=110)
    bar.update()
    bar.close()
    tw = res.temperature[:, wet]
    print(f"{len(net)} reaches, {int(wet.sum())} flowing (>= {cfg.dry_m3s:g} m3/s every step), {len(time) - spin} "
          f"steps of {dt:g} s after {spin} spin-up steps; water temperature on flowing reaches: mean "
          f"{float(tw.mean()):.2f}, min {float(tw.min()):.2f}, max {float(tw.max()):.2f} degC")
    print(f"wrote {out_dir / 'temperature.nc'} and {out_dir / 'temperature.png'}")
    return 0


def _distribution_figure(vals, series, time, title):
    """Histogram of the per-reach mean beside the gauged series (networks without longitude)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if series else 1, figsize=(13 if series else 6.5, 5))
    ax = axes[0] if series else axes
    ax.hist(vals[np.isfinite(vals)], bins=40)
    ax.set_xlabel(title)
    ax.set_ylabel("reaches")
    if series:
        for name, v in series.items():
            axes[1].plot(time, v, lw=0.8, label=name)
        axes[1].set_ylabel("degC")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


run_config = run_temperature
"""Deprecated name of :func:`run_temperature`."""
