"""Runoff providers: the :class:`RunoffProvider` interface a router consumes and its table-backed
implementation :class:`PrecomputedRunoff` (the LSTM provider is in :mod:`rivergraph.runoff.lstm_provider`)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch

from ._common import RunoffError, _as_utc, _fmt, _id_hint

__all__ = ["RunoffProvider", "PrecomputedRunoff"]


@runtime_checkable
class RunoffProvider(Protocol):
    """Anything that supplies lateral inflow to a router."""

    def lateral_inflow(self, times: pd.DatetimeIndex, reach_ids: Sequence) -> torch.Tensor:
        """Lateral inflow in m3/s at ``times`` (UTC; naive = UTC) for ``reach_ids``: ``[T, N]``."""
        ...


class PrecomputedRunoff:
    """Lateral inflow (m3/s) read from a table: time x reach.

    Use :meth:`from_netcdf` (a ``(time, reach)`` variable, e.g. RAPID's ``Qext``), :meth:`from_csv` /
    :meth:`from_parquet` (wide: a time column, one column per reach id), :meth:`from_file` (by suffix)
    or the constructor with a DataFrame (DatetimeIndex, reach-id columns, m3/s).
    """

    def __init__(self, data: pd.DataFrame, source: str = "DataFrame"):
        self.source = source
        data = data.copy()
        data.index = _as_utc(data.index, f"{source}: time axis")
        if data.index.has_duplicates:
            raise RunoffError(f"{source}: duplicate times, e.g. {data.index[data.index.duplicated()][0]}")
        if data.columns.has_duplicates:
            raise RunoffError(f"{source}: duplicate reach ids {_fmt(data.columns[data.columns.duplicated()])}")
        self.data = data.sort_index()
        self._pos = {c: i for i, c in enumerate(self.data.columns)}
        self._values = self.data.to_numpy(dtype=np.float32)

    def __repr__(self) -> str:
        t = self.data.index
        return (f"PrecomputedRunoff({self.source}: {len(t)} times {t[0] if len(t) else ''} .. "
                f"{t[-1] if len(t) else ''}, {self.data.shape[1]} reaches)")

    @property
    def times(self) -> pd.DatetimeIndex:
        return self.data.index

    @property
    def reach_ids(self) -> list:
        return list(self.data.columns)

    @staticmethod
    def _int_columns(df: pd.DataFrame) -> pd.DataFrame:
        """Text column names that are canonical integers ('10', not '010') become ints."""
        cols = [str(c) for c in df.columns]
        if cols and all(re.fullmatch(r"-?[1-9]\d*|0", c) for c in cols):
            df.columns = [int(c) for c in cols]
        return df

    @classmethod
    def from_netcdf(cls, path: str | Path, variable: str | None = None, time_dim: str = "time",
                    reach_dim: str | None = None) -> "PrecomputedRunoff":
        """From a netCDF file via xarray: ``variable`` (default: the only 2-D variable over ``time_dim``
        that is not a time-bounds variable) over ``(time_dim, reach_dim)``; reach ids from the
        ``reach_dim`` coordinate (positions if it has none). Values are taken as m3/s (a warning if the
        variable's ``units`` attribute says otherwise)."""
        import xarray as xr

        with xr.open_dataset(path) as ds:
            if variable is None:
                bounds = {ds[time_dim].attrs.get("bounds")} if time_dim in ds else set()
                cands = [v for v in ds.data_vars if ds[v].ndim == 2 and time_dim in ds[v].dims
                         and (reach_dim is None or reach_dim in ds[v].dims)
                         and v not in bounds and not str(v).endswith(("_bnds", "_bounds"))]
                if len(cands) != 1:
                    raise RunoffError(f"{path}: cannot choose the runoff variable (candidates {_fmt(cands)}); "
                                      "pass variable=")
                variable = cands[0]
            if variable not in ds:
                raise RunoffError(f"{path}: no variable {variable!r}; variables are {_fmt(ds.data_vars)}")
            da = ds[variable]
            if time_dim not in da.dims or da.ndim != 2:
                raise RunoffError(f"{path}: {variable!r} has dims {da.dims}; expected ({time_dim!r}, reach)")
            if reach_dim is None:
                reach_dim = next(d for d in da.dims if d != time_dim)
            units = str(da.attrs.get("units", "")).replace(" ", "")
            if units and units.lower() not in ("m3/s", "m3s-1", "m^3/s", "m3.s-1", "m3s^-1"):
                warnings.warn(f"{path}: {variable!r} has units {units!r}; lateral inflow is taken as m3/s",
                              RuntimeWarning, stacklevel=2)
            da = da.transpose(time_dim, reach_dim).load()
            reach = (ds[reach_dim].values if reach_dim in ds.coords else np.arange(da.shape[1]))
            df = pd.DataFrame(da.values, index=pd.DatetimeIndex(ds[time_dim].values),
                              columns=[r.item() if hasattr(r, "item") else r for r in reach])
        return cls(df, source=f"{Path(path).name}:{variable}")

    @classmethod
    def from_csv(cls, path: str | Path, time_col: str = "time") -> "PrecomputedRunoff":
        """From a wide CSV: column ``time_col`` (ISO times, UTC unless an offset is given) and one column
        per reach id (m3/s)."""
        df = pd.read_csv(path)
        return cls._from_wide(df, time_col, str(path))

    @classmethod
    def from_parquet(cls, path: str | Path, time_col: str = "time") -> "PrecomputedRunoff":
        """From a wide parquet file (as :meth:`from_csv`; the time may also be the index). Needs pyarrow
        or fastparquet."""
        try:
            df = pd.read_parquet(path)
        except ImportError as e:
            raise RunoffError(f"{path}: reading parquet needs pyarrow or fastparquet ({e})") from None
        if time_col not in df.columns and isinstance(df.index, pd.DatetimeIndex):
            df = df.reset_index(names=time_col)
        return cls._from_wide(df, time_col, str(path))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "PrecomputedRunoff":
        """Dispatch on the suffix: ``.nc``/``.nc4``/``.netcdf``, ``.csv``, ``.parquet``/``.pq``."""
        suffix = Path(path).suffix.lower()
        if suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
            return cls.from_netcdf(path, **kwargs)
        if suffix == ".csv":
            return cls.from_csv(path, **kwargs)
        if suffix in (".parquet", ".pq"):
            return cls.from_parquet(path, **kwargs)
        raise RunoffError(f"{path}: unknown runoff file type {suffix!r} (use .nc, .csv or .parquet)")

    @classmethod
    def _from_wide(cls, df: pd.DataFrame, time_col: str, source: str) -> "PrecomputedRunoff":
        if time_col not in df.columns:
            raise RunoffError(f"{source}: no time column {time_col!r}; columns are {_fmt(df.columns)}")
        times = pd.to_datetime(df[time_col], utc=True)
        df = cls._int_columns(df.drop(columns=[time_col]))
        df.index = pd.DatetimeIndex(times)
        return cls(df, source=source)

    def lateral_inflow(self, times: pd.DatetimeIndex | Sequence, reach_ids: Sequence) -> torch.Tensor:
        """``[T, N]`` float32 m3/s at ``times`` for ``reach_ids``. Times must be on the table's time axis
        exactly and reach ids must be columns; otherwise an error names the missing ones."""
        t = _as_utc(times)
        pos_t = self.data.index.get_indexer(t)
        if (pos_t < 0).any():
            miss = t[pos_t < 0]
            raise RunoffError(f"{self.source}: {len(miss)} requested time(s) are not on the time axis "
                              f"({self.times[0]} .. {self.times[-1]}, {len(self.times)} steps), e.g. "
                              f"{_fmt([str(m) for m in miss[:5]])}")
        reach_ids = list(reach_ids)
        miss = [r for r in reach_ids if r not in self._pos]
        if miss:
            raise RunoffError(f"{self.source}: no lateral inflow for reach id(s) {_fmt(miss)}"
                              f"{_id_hint(miss, self.reach_ids)}")
        vals = self._values[np.ix_(pos_t, [self._pos[r] for r in reach_ids])]
        if not np.isfinite(vals).all():
            bad = [reach_ids[j] for j in np.where(~np.isfinite(vals).all(axis=0))[0]]
            raise RunoffError(f"{self.source}: missing (NaN) lateral inflow for reach id(s) {_fmt(bad)}")
        return torch.from_numpy(np.ascontiguousarray(vals))
