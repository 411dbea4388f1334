"""Runoff depth rates (mm/h, mm/day) over a catchment area <-> discharge (m3/s)."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ._common import RunoffError, _fmt, _id_hint

__all__ = ["depth_rate_seconds", "depth_rate_to_discharge", "discharge_to_depth_rate", "CFS_TO_M3S"]

CFS_TO_M3S = 0.0283168
"""Cubic feet per second to m3/s (0.3048**3 = 0.028316846592, rounded as USGS does)."""

_DEPTH_RATE_SECONDS = {"mm/h": 3600.0, "mm/hr": 3600.0, "mm/d": 86400.0, "mm/day": 86400.0,
                       "mm/s": 1.0}


def depth_rate_seconds(units: str) -> float:
    """Seconds per time unit of a depth-rate unit name (e.g. ``"mm/h"`` -> 3600); unknown names raise."""
    try:
        return _DEPTH_RATE_SECONDS[units.strip().lower()]
    except KeyError:
        raise RunoffError(f"unknown depth-rate units {units!r}; use one of "
                          f"{sorted(_DEPTH_RATE_SECONDS)}") from None


def _area_like(area_km2, x):
    if isinstance(x, pd.DataFrame) and isinstance(area_km2, (pd.Series, Mapping)):
        area = pd.Series(area_km2)
        missing = [c for c in x.columns if c not in area.index]
        if missing:
            raise RunoffError(f"no catchment area for column(s) {_fmt(missing)}{_id_hint(missing, area.index)}")
        return area.reindex(x.columns).to_numpy(dtype=float)
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(np.asarray(area_km2, dtype=np.float64) if not isinstance(area_km2, torch.Tensor)
                               else area_km2, dtype=x.dtype, device=x.device)
    return np.asarray(area_km2, dtype=float) if not np.isscalar(area_km2) else float(area_km2)


def depth_rate_to_discharge(runoff, area_km2, units: str = "mm/h"):
    """Convert a runoff depth rate over a catchment to discharge in m3/s.

    ``Q [m3/s] = runoff [mm per unit time] * 1e-3 [m/mm] * area [km2] * 1e6 [m2/km2] / seconds per unit``,
    i.e. ``runoff * area / 3.6`` for mm/h and ``runoff * area / 86.4`` for mm/day.

    Args:
        runoff: depth rate, a float, numpy array, torch tensor (``[..., C]``; differentiable) or pandas
            object (a DataFrame's columns are catchments).
        area_km2: catchment area(s) in km2, broadcast against the last dimension of ``runoff`` (a
            Series/mapping keyed by column for a DataFrame).
        units: ``'mm/h'`` or ``'mm/day'`` (also ``'mm/d'``, ``'mm/s'``).

    Returns:
        Discharge in m3/s, same type and shape as ``runoff``.
    """
    factor = 1e3 / depth_rate_seconds(units)  # 1e-3 m/mm * 1e6 m2/km2 / seconds
    return runoff * _area_like(area_km2, runoff) * factor


def discharge_to_depth_rate(discharge, area_km2, units: str = "mm/h"):
    """Inverse of :func:`depth_rate_to_discharge`: discharge (m3/s) over ``area_km2`` -> depth rate in
    ``units`` (mm/h or mm/day)."""
    factor = 1e3 / depth_rate_seconds(units)
    return discharge / (_area_like(area_km2, discharge) * factor)
