"""Forcing readers: NextGen per-catchment forcing (AORC-format CSV files ``cat-*.csv`` or the ngen
``forcing.nc`` with ``ids`` and ``Time``) -> ``{catchment id: DataFrame}`` on a UTC hourly index.

The AORC-format columns keep their names and units (``precip_rate`` mm/s = kg m-2 s-1,
``TMP_2maboveground`` K, ``SPFH_2maboveground`` kg/kg, ``UGRD/VGRD_10maboveground`` m/s, ``PRES_surface``
Pa, ``DSWRF/DLWRF_surface`` W/m2); turning them into a model's inputs is
:func:`rivergraph.runoff.derive_inputs`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["read_ngen_forcing", "ForcingError"]


class ForcingError(ValueError):
    """A forcing file or folder that cannot be read as given; the message names the file, id or column."""


def _check_frame(df: pd.DataFrame, cid: str, src: str) -> pd.DataFrame:
    if df.index.has_duplicates:
        raise ForcingError(f"{src}: catchment {cid!r} has duplicate times, e.g. {df.index[df.index.duplicated()][0]}")
    if not df.index.is_monotonic_increasing:
        df = df.sort_index()
    return df


def _read_csv_dir(path: Path, ids: Sequence[str] | None, time_col: str) -> dict[str, pd.DataFrame]:
    files = {p.stem: p for p in sorted(path.glob("*.csv"))} if path.is_dir() else {path.stem: path}
    if ids is not None:
        missing = [i for i in ids if i not in files]
        if missing:
            raise ForcingError(f"{path}: no forcing file for catchment(s) {missing[:8]} (files: {sorted(files)[:8]})")
        files = {i: files[i] for i in ids}
    if not files:
        raise ForcingError(f"{path}: no *.csv forcing files")
    out = {}
    for cid, p in files.items():
        df = pd.read_csv(p, skipinitialspace=True)
        df.columns = [str(c).strip() for c in df.columns]
        if time_col not in df.columns:
            raise ForcingError(f"{p}: no time column {time_col!r}; columns are {list(df.columns)[:12]}")
        df.index = pd.DatetimeIndex(pd.to_datetime(df.pop(time_col), utc=True), name="time")
        out[cid] = _check_frame(df.astype(np.float64), cid, str(p))
    return out


def _read_netcdf(path: Path, ids: Sequence[str] | None) -> dict[str, pd.DataFrame]:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        if "ids" not in ds or "Time" not in ds:
            raise ForcingError(f"{path}: not an ngen forcing netCDF (needs variables 'ids' and 'Time')")
        cdim = ds["ids"].dims[0]
        all_ids = [str(i) for i in ds["ids"].values]
        want = all_ids if ids is None else list(ids)
        missing = [i for i in want if i not in all_ids]
        if missing:
            raise ForcingError(f"{path}: no forcing for catchment(s) {missing[:8]} (has {all_ids[:8]})")
        names = [v for v in ds.data_vars if v not in ("ids", "Time") and ds[v].dims[:1] == (cdim,) and ds[v].ndim == 2]
        out = {}
        for cid in want:
            k = all_ids.index(cid)
            t = ds["Time"].isel({cdim: k}).values
            if np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer):
                times = pd.to_datetime(t.astype(np.int64), unit="ns", utc=True)  # ngen: ns since 1970 UTC
            else:
                times = pd.to_datetime(t, utc=True)
            df = pd.DataFrame({v: ds[v].isel({cdim: k}).values.astype(np.float64) for v in names},
                              index=pd.DatetimeIndex(times, name="time"))
            out[cid] = _check_frame(df, cid, str(path))
    return out


def read_ngen_forcing(path: str | Path, catchment_ids: Sequence[str] | None = None,
                      time_col: str = "time") -> dict[str, pd.DataFrame]:
    """Read NextGen catchment forcing.

    Args:
        path: a folder of ``cat-N.csv`` files (file stem = catchment id; a ``time`` column in UTC, then one
            column per variable), one such CSV, or an ngen ``forcing.nc`` (variables ``ids`` [catchment],
            ``Time`` [catchment, time] in ns since 1970-01-01 UTC, and ``[catchment, time]`` variables).
        catchment_ids: which catchments to read (default all); a missing one is an error naming it.
        time_col: the CSV time column.

    Returns:
        ``{catchment id: DataFrame}`` indexed by tz-aware UTC times (interval starts), columns as in the
        file (AORC names and units).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"forcing not found: {path}")
    if path.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        return _read_netcdf(path, catchment_ids)
    return _read_csv_dir(path, catchment_ids, time_col)
