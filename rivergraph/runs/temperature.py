"""``rivergraph temperature CONFIG.yaml``: discharge and stream temperature on the shipped Lower Colorado network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["run_temperature", "run_config"]


def run_temperature(path) -> int:
    """Route the shipped Lower Colorado NWM lateral inflow (28 h from 2021-08-23 13 UTC, after ``spinup_hours``
    with the first hour held), compute water temperature with the configured forcing and parameters, write
    temperature.nc (the CF layout, :mod:`rivergraph.io.cf`) and temperature.png."""
    from tqdm import tqdm

    from ..config.base import read_yaml_mapping
    from ..config.temperature import TemperatureConfig
    from ..datasets import load_dataset
    from ..io.cf import write_temperature
    from ..models.temperature import StreamTemperature, TemperatureResult, read_forcing_netcdf, synthetic_texas_forcing
    from ..plots import plot_reach_map, save

    cfg = TemperatureConfig.model_validate(read_yaml_mapping(path))
    out_dir = Path(cfg.output_dir)
    dtype = getattr(torch, cfg.dtype)
    bar = tqdm(total=4, desc="temperature", unit="stage")
    net, data = load_dataset(cfg.network)
    spin = cfg.spinup_hours
    q = data["q_lateral"].to(dtype)
    q = torch.cat([q[:1].expand(spin, -1), q], 0)
    time = pd.date_range(data["time"][0] - pd.Timedelta(hours=spin), periods=q.shape[0], freq="h", tz="UTC")
    if cfg.forcing.kind == "netcdf":
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
    write_temperature(out_dir / "temperature.nc", net, time[keep], res)
    bar.update()
    wet = (res.discharge.min(0).values > 0.01).numpy()
    gauges = [p for p in net.gauges().index if wet[p]][: cfg.plot_gauges]
    series = {f"reach {net.ids[p]} (gauge {net.attrs['gage'].iloc[p].strip()})": res.temperature[:, p].numpy()
              for p in gauges}
    vals = res.temperature.mean(0).numpy().copy()
    vals[~wet] = np.nan
    save(plot_reach_map(net, vals, "mean water temperature, flowing reaches (degC)", series, time[keep]),
         out_dir / "temperature.png", dpi=110)
    bar.update()
    bar.close()
    tw = res.temperature[:, wet]
    print(f"{len(net)} reaches, {int(wet.sum())} flowing (> 0.01 m3/s), {len(time) - spin} hourly steps "
          f"after {spin} h spin-up; water temperature on flowing reaches: mean {float(tw.mean()):.2f}, "
          f"min {float(tw.min()):.2f}, max {float(tw.max()):.2f} degC")
    print(f"wrote {out_dir / 'temperature.nc'} and {out_dir / 'temperature.png'}")
    return 0


run_config = run_temperature
"""Deprecated name of :func:`run_temperature`."""
