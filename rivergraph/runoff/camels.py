"""Readers for the CAMELS-US text files: Daymet basin-mean forcing, USGS daily streamflow, attributes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ._common import RunoffError, _fmt
from .units import CFS_TO_M3S

__all__ = ["read_camels_daymet", "read_camels_streamflow", "read_camels_attributes"]


def read_camels_daymet(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a CAMELS-US basin-mean Daymet forcing file (``*_lump_cida_forcing_leap.txt``).

    Returns:
        ``(daily, meta)``: daily is indexed by naive local calendar dates with the file's columns
        (``prcp(mm/day)``, ``tmax(C)``, ``tmin(C)``, ``srad(W/m2)``, ...); meta has ``latitude``
        (degrees), ``elevation_m`` and ``area_km2`` (from the header's area in m2 -- the area
        neuralhydrology uses to turn streamflow into mm).
    """
    path = Path(path)
    with open(path) as f:
        head = [next(f) for _ in range(3)]
    try:
        meta = {"latitude": float(head[0]), "elevation_m": float(head[1]), "area_km2": float(head[2]) / 1e6}
    except ValueError:
        raise RunoffError(f"{path}: expected 3 header lines (latitude, elevation m, area m2)") from None
    df = pd.read_csv(path, sep=r"\s+", skiprows=3)
    dates = pd.to_datetime(dict(year=df["Year"], month=df["Mnth"], day=df["Day"]))
    df = df.drop(columns=["Year", "Mnth", "Day", "Hr"])
    df.index = pd.DatetimeIndex(dates, name="date")
    return df, meta


def read_camels_streamflow(path: str | Path, drop_estimated: bool = False) -> pd.Series:
    """Read a CAMELS-US USGS daily streamflow file (``*_streamflow_qc.txt``: gauge, year, month, day,
    discharge in cfs, flag) -> daily mean discharge in m3/s (``cfs * 0.0283168``) indexed by local
    calendar date; missing values (-999, negative) become NaN; ``drop_estimated`` also masks flag
    ``A:e`` (estimated) values."""
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["gauge", "year", "month", "day", "q_cfs", "flag"],
                     dtype={"gauge": str, "flag": str})
    q = df["q_cfs"].astype(float).where(df["q_cfs"] >= 0) * CFS_TO_M3S
    if drop_estimated:
        q = q.where(~df["flag"].fillna("").str.contains(":e"))
    idx = pd.DatetimeIndex(pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"])), name="date")
    return pd.Series(q.to_numpy(), index=idx, name="q_m3s")


def read_camels_attributes(attr_dir: str | Path, basins: Sequence[str] | None = None,
                           columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read and join the CAMELS ``camels_*.txt`` attribute tables (';'-separated) in ``attr_dir``,
    indexed by gauge id (8-character strings). Units as in CAMELS (e.g. ``elev_mean`` m,
    ``slope_mean`` m/km, ``area_gages2`` km2)."""
    frames = []
    for p in sorted(Path(attr_dir).glob("camels_*.txt")):
        df = pd.read_csv(p, sep=";", dtype={"gauge_id": str}).set_index("gauge_id")
        frames.append(df)
    if not frames:
        raise RunoffError(f"{attr_dir}: no camels_*.txt attribute tables")
    out = frames[0]
    for df in frames[1:]:
        out = out.join(df[[c for c in df.columns if c not in out.columns]], how="outer")
    if basins is not None:
        miss = [b for b in basins if b not in out.index]
        if miss:
            raise RunoffError(f"{attr_dir}: no attributes for basin(s) {_fmt(miss)}")
        out = out.loc[list(basins)]
    if columns is not None:
        miss = [c for c in columns if c not in out.columns]
        if miss:
            raise RunoffError(f"{attr_dir}: no attribute column(s) {_fmt(miss)}")
        out = out[list(columns)]
    return out
