"""Reader of PRMS-SNTemp driver files: the per segment-day inputs of a PRMS / pywatershed stream-temperature run
as a :class:`rivergraph.models.temperature.HeatForcing` (plus the flows and widths the run used).

Layout (pywatershed 3.0.0 ``PRMSStreamTempHumidityCBH`` drivers, e.g. ``drb_pws3_streamtemp_drivers.nc`` of the
Delaware River Basin; dims ``(time, nhm_seg)``): ``seg_tave_air`` (degC), ``seg_humid`` (fraction),
``seg_ccov`` (cloud cover, fraction), ``seg_shade`` (fraction), ``seginc_swrad`` (Langleys/day), ``seg_melt``
and ``seg_rain`` (inches), ``seginc_sroff`` / ``seginc_ssflow`` / ``seginc_gwflow`` (cfs: the surface,
subsurface and groundwater parts of the lateral inflow), ``seg_lateral_inflow``, ``seg_outflow`` (cfs),
``seg_flow_width``, ``seg_flow_depth`` (m).

Conversions (Sanders et al. 2017, USGS TM 6-D4; PRMS ``stream_temp.f90``): shortwave 1 Ly/day = 41,840 J m-2 /
86,400 s; PRMS's shade (topographic + riparian) applied to the shortwave here, so rivergraph's ``shade``
parameter adds to it; groundwater and subsurface shares = their flows / lateral inflow; snowmelt share
melt / (melt + rain) on days with melt (PRMS ``lat_inflow``: surface and subsurface water at melt_temp then;
with rain 0 any melt amount makes it 1). PRMS gives no wind (it takes evaporation from the potential ET), so
``wind`` is left to the caller. For the ``prms_sntemp`` surface exchange (:mod:`rivergraph.physics.exchange`)
the forcing also carries ``pet`` = ``seg_potet`` (inches/day -> mm/day), ``sky_shade`` = ``seg_shade`` and
``veg_shade`` = ``seg_svi`` (the riparian vegetation shade index, where the file has it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .nhm import CFS_TO_M3S

__all__ = ["SNTempDrivers", "read_sntemp_drivers", "LY_PER_DAY_TO_WM2"]

LY_PER_DAY_TO_WM2 = 41840.0 / 86400.0
"""1 Langley per day in W m-2."""

_NEEDED = ("seg_tave_air", "seg_humid", "seg_ccov", "seg_shade", "seginc_swrad", "seg_melt", "seg_rain",
           "seginc_ssflow", "seginc_gwflow", "seg_lateral_inflow", "seg_outflow", "seg_flow_width",
           "seg_flow_depth")


@dataclass
class SNTempDrivers:
    """``time`` [T]; ``forcing`` (HeatForcing, [T, N] in network order); PRMS's ``outflow_m3s``,
    ``lateral_m3s``, ``width_m``, ``depth_m`` [T, N] numpy; ``raw``: the file's variables [T, N] numpy."""

    time: pd.DatetimeIndex
    forcing: object
    outflow_m3s: np.ndarray
    lateral_m3s: np.ndarray
    width_m: np.ndarray
    depth_m: np.ndarray
    raw: dict


def read_sntemp_drivers(path: str | Path, net, wind: float = 2.0) -> SNTempDrivers:
    """Read a PRMS-SNTemp drivers file for the reaches of ``net`` (matched by ``nhm_seg`` id, every reach must be
    in the file); ``wind`` (m/s) for rivergraph's Dalton evaporation. Non-finite values name the variable and
    segments."""
    import xarray as xr

    from ..models.temperature import HeatForcing

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PRMS-SNTemp drivers file not found: {path}")
    with xr.open_dataset(path) as ds:
        missing = [v for v in _NEEDED if v not in ds]
        if missing:
            raise KeyError(f"{path}: not a PRMS-SNTemp drivers file (missing {missing})")
        segs = pd.Index(ds["nhm_seg"].values.astype(np.int64))
        absent = pd.Index(np.asarray(net.ids, dtype=np.int64)).difference(segs)
        if len(absent):
            raise ValueError(f"{path}: no drivers for segments {absent[:10].tolist()} ({len(absent)} missing)")
        ds = ds.sel(nhm_seg=np.asarray(net.ids, dtype=np.int64))
        time = pd.DatetimeIndex(ds["time"].values)
        raw = {v: ds[v].transpose("time", "nhm_seg").values.astype(np.float64) for v in ds.data_vars
               if ds[v].dims == ("time", "nhm_seg") or set(ds[v].dims) == {"time", "nhm_seg"}}
    for v in _NEEDED:
        bad = ~np.isfinite(raw[v])
        if bad.any():
            raise ValueError(f"{path}: non-finite '{v}' at segments {np.asarray(net.ids)[bad.any(0)][:10].tolist()}")
    lat = raw["seg_lateral_inflow"]
    pos = lat > 0
    safe = np.where(pos, lat, 1.0)
    gw = np.where(pos, raw["seginc_gwflow"] / safe, 0.0)
    ss = np.where(pos, raw["seginc_ssflow"] / safe, 0.0)
    tot = gw + ss
    over = tot > 1.0  # float32 rounding of the parts in the file
    gw, ss = gw / np.where(over, tot, 1.0), ss / np.where(over, tot, 1.0)
    melt, rain = raw["seg_melt"], raw["seg_rain"]
    melt_share = np.where(melt > 0, melt / np.where(melt > 0, melt + rain, 1.0), 0.0)
    sw = raw["seginc_swrad"] * LY_PER_DAY_TO_WM2 * (1.0 - np.clip(raw["seg_shade"], 0.0, 1.0))
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
    forcing = HeatForcing(t(raw["seg_tave_air"]), t(sw), t(np.clip(raw["seg_humid"], 0.01, 1.0)), wind,
                          t(np.clip(raw["seg_ccov"], 0.0, 1.0)), gw_share=t(np.clip(gw, 0.0, 1.0)),
                          ss_share=t(np.clip(ss, 0.0, 1.0)), melt_share=t(np.clip(melt_share, 0.0, 1.0)),
                          pet=t(raw["seg_potet"] * 25.4) if "seg_potet" in raw else None,
                          sky_shade=t(np.clip(raw["seg_shade"], 0.0, 1.0)),
                          veg_shade=t(np.clip(raw["seg_svi"], 0.0, 1.0)) if "seg_svi" in raw else None)
    return SNTempDrivers(time, forcing, raw["seg_outflow"] * CFS_TO_M3S, lat * CFS_TO_M3S, raw["seg_flow_width"],
                         raw["seg_flow_depth"], raw)
