"""Weather for the stream-temperature model from netCDF (:class:`rivergraph.models.temperature.HeatForcing`).

PRMS-SNTemp driver files have their own reader (:mod:`rivergraph.io.sntemp`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..graph import RiverNetwork
from ..models.temperature import HeatForcing

__all__ = ["read_forcing_netcdf"]


def read_forcing_netcdf(path, net: RiverNetwork, time) -> HeatForcing:
    """Read a :class:`HeatForcing` from netCDF: variables ``air_temp`` (degC, required), ``shortwave``
    (W m-2), ``rel_humidity`` (0-1), ``wind`` (m/s), each on dims (time, reach) with a ``reach`` coordinate of
    network reach ids and a ``time`` coordinate (UTC) covering ``time``. Missing optional variables: clear-sky
    shortwave, humidity 0.6, wind 2 m/s."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"forcing file not found: {path}")
    time = pd.DatetimeIndex(time)
    tu = time.tz_convert("UTC").tz_localize(None) if time.tz is not None else time
    with xr.open_dataset(path) as ds:
        if "air_temp" not in ds:
            raise KeyError(f"{path}: forcing needs the variable 'air_temp' (degC); has {sorted(ds.data_vars)}")
        for c in ("time", "reach"):
            if c not in ds.coords:
                raise KeyError(f"{path}: forcing needs the coordinate '{c}'")
        ids = pd.Index(ds["reach"].values)
        missing = pd.Index(net.ids).difference(ids)
        if len(missing):
            raise ValueError(f"{path}: no forcing for reaches {missing[:10].tolist()} ({len(missing)} missing)")
        ftime = pd.DatetimeIndex(ds["time"].values)
        if ftime.tz is not None:
            ftime = ftime.tz_convert("UTC").tz_localize(None)
        absent = tu.difference(ftime)
        if len(absent):
            raise ValueError(f"{path}: forcing has no values at {len(absent)} times of the run, first {absent[0]} UTC")
        sel = ds.sel(reach=net.ids, time=tu)

        def var(name, default):
            if name not in sel:
                return default
            v = sel[name]
            if set(v.dims) != {"time", "reach"}:
                raise ValueError(f"{path}: '{name}' must have dims (time, reach), has {v.dims}")
            return torch.from_numpy(v.transpose("time", "reach").values.astype(np.float64))

        air = var("air_temp", None)
        if float(np.nanmax(air.numpy())) > 70.0:
            raise ValueError(f"{path}: air_temp above 70 degC: give degrees Celsius, not kelvin")
        return HeatForcing(air, var("shortwave", None), var("rel_humidity", 0.6), var("wind", 2.0))
