"""Streaming model outputs: CF-convention netCDF / zarr (time x reach) and CSV at gauges.

:func:`route_to_file` routes lateral inflow in time chunks, carrying ``router.state`` from one chunk to
the next (identical to one long call), and appends every chunk to the output, so neither the routed flow
nor (with a callable forcing) the lateral inflow of a long run is ever held whole in memory.

Files follow the CF conventions 1.8 discrete-sampling-geometry ``timeSeries`` layout (orthogonal arrays,
time the unlimited first dimension as in the NWM's own CHRTOUT files): ``streamflow(time, reach)`` in
``m3 s-1`` with standard name ``water_volume_transport_in_river_channel``, ``reach_id(reach)``
(``cf_role = timeseries_id``), ``lat``/``lon`` (degrees) where the network has them, and a CF time axis
(``seconds since 1970-01-01 00:00:00``, UTC). Row i carries the time stamp of forcing row i; with
``output="mean"`` routers it is the mean flow over that forcing interval (``cell_methods = time: mean``).
Files are written to a temporary name beside the target and renamed on success (never half-written).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time as _time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_path
from ..models.router import MassBalance, MuskingumCunge, RoutingState

__all__ = ["route_to_file", "OutputSummary", "read_gauge_csv", "TIME_UNITS"]

TIME_UNITS = "seconds since 1970-01-01 00:00:00"
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
Forcing = torch.Tensor | np.ndarray | Callable[[int, int], torch.Tensor]


@dataclass
class OutputSummary:
    """What :func:`route_to_file` wrote: steps, reaches, files, wall time (s) and the run's mass balance."""

    path: Path
    gauge_csv: Path | None
    steps: int
    reaches: int
    chunks: int
    seconds: float
    balance: MassBalance | None
    state: RoutingState | None

    def __str__(self) -> str:
        s = (f"wrote {self.steps} steps x {self.reaches} reaches to {self.path} in {self.chunks} chunk(s), "
             f"{self.seconds:.1f} s")
        if self.gauge_csv is not None:
            s += f"; gauges to {self.gauge_csv}"
        if self.balance is not None:
            s += f"; mass balance relative error {self.balance.relative_error:.2e}"
        return s


def _times(times, start, n_rows: int, step_s: float) -> pd.DatetimeIndex:
    if times is not None:
        t = pd.DatetimeIndex(times)
        t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
        if len(t) != n_rows:
            raise ValueError(f"times has {len(t)} entries but the forcing has {n_rows} rows")
        return t
    if start is None:
        raise ValueError("give the output time axis: times=[...] (one per forcing row) or start='YYYY-mm-dd HH:MM'")
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
    return pd.DatetimeIndex([t0 + pd.Timedelta(seconds=step_s * i) for i in range(n_rows)])


def _variable_attrs(router: MuskingumCunge) -> dict:
    method = {"mean": "time: mean", "end": "time: point", "rapid": "time: mean"}[router.output]
    return {"standard_name": "water_volume_transport_in_river_channel", "long_name": "routed discharge",
            "units": "m3 s-1", "cell_methods": method, "coordinates": "reach_id lat lon",
            "routing_mode": router.mode, "routing_dt_s": router.dt}


def _global_attrs(router: MuskingumCunge) -> dict:
    return {"Conventions": "CF-1.8", "featureType": "timeSeries", "title": "rivergraph routed discharge",
            "source": f"rivergraph MuskingumCunge (mode {router.mode}, scheme {router.scheme}, dt {router.dt} s)",
            "history": f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%SZ} rivergraph.io.route_to_file"}


def _reach_coords(net, cols: np.ndarray) -> dict:
    """reach_id / lat / lon (numpy) for the written columns; lat/lon only if the network has both."""
    ids = net.ids[cols]
    out = {"reach_id": ids.astype(str) if ids.dtype.kind in "OUS" else ids.astype(np.int64)}
    if "lat" in net.attrs and "lon" in net.attrs:
        out["lat"] = net.attrs["lat"].to_numpy(np.float64)[cols]
        out["lon"] = net.attrs["lon"].to_numpy(np.float64)[cols]
    return out


_COORD_ATTRS = {
    "reach_id": {"cf_role": "timeseries_id", "long_name": "reach identifier of the source network"},
    "lat": {"standard_name": "latitude", "units": "degrees_north", "long_name": "reach latitude"},
    "lon": {"standard_name": "longitude", "units": "degrees_east", "long_name": "reach longitude"},
    "time": {"standard_name": "time", "long_name": "valid time", "units": TIME_UNITS, "calendar": "standard",
             "axis": "T"},
}


class _NetCDFWriter:
    """Appends (time, reach) chunks to a netCDF4 file with an unlimited time dimension."""

    def __init__(self, path: Path, router: MuskingumCunge, coords: dict, dtype: str):
        import netCDF4

        self.ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        n = len(coords["reach_id"])
        self.ds.createDimension("time", None)
        self.ds.createDimension("reach", n)
        self.ds.setncatts(_global_attrs(router))
        t = self.ds.createVariable("time", "f8", ("time",))
        t.setncatts(_COORD_ATTRS["time"])
        for name, values in coords.items():
            kind = str if values.dtype.kind == "U" else values.dtype
            v = self.ds.createVariable(name, kind, ("reach",))
            v.setncatts(_COORD_ATTRS[name])
            v[:] = values.astype(object) if kind is str else values
        q = self.ds.createVariable("streamflow", dtype, ("time", "reach"), zlib=True, complevel=1,
                                   chunksizes=(1, n), fill_value=np.nan)
        q.setncatts(_variable_attrs(router))
        self.n = 0

    def append(self, seconds: np.ndarray, Q: np.ndarray) -> None:
        k = len(seconds)
        self.ds["time"][self.n:self.n + k] = seconds
        self.ds["streamflow"][self.n:self.n + k, :] = Q
        self.n += k

    def close(self) -> None:
        self.ds.close()


def _zarr_kwargs() -> dict:
    """Write zarr format 2 (consolidated metadata), readable by zarr-python 2 and 3 alike."""
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is a dependency
        raise ValueError("writing .zarr needs the 'zarr' package (pip install zarr)") from exc
    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


class _ZarrWriter:
    """Appends (time, reach) chunks to a zarr store through xarray (``append_dim='time'``)."""

    def __init__(self, path: Path, router: MuskingumCunge, coords: dict, dtype: str):
        self.path, self.coords, self.dtype = path, coords, dtype
        self.attrs, self.var_attrs = _global_attrs(router), _variable_attrs(router)
        self.first = True
        self.kw = _zarr_kwargs()

    def append(self, seconds: np.ndarray, Q: np.ndarray) -> None:
        import xarray as xr

        var_attrs = {k: v for k, v in self.var_attrs.items() if k != "coordinates"}
        ds = xr.Dataset({"streamflow": (("time", "reach"), Q.astype(self.dtype), var_attrs)},
                        coords={"time": ("time", seconds, _COORD_ATTRS["time"])}, attrs=self.attrs)
        if self.first:
            ds = ds.assign_coords({k: ("reach", v, _COORD_ATTRS[k]) for k, v in self.coords.items()})
            ds.to_zarr(self.path, mode="w", encoding={"streamflow": {"chunks": (len(seconds), Q.shape[1])}},
                       **self.kw)
            self.first = False
        else:
            ds.to_zarr(self.path, append_dim="time", **self.kw)

    def close(self) -> None:
        pass


@contextmanager
def _atomic_dir(path: Path) -> Iterator[Path]:
    """Like :func:`rivergraph._atomic.atomic_path` for a directory store (zarr): build it under a temporary
    name beside ``path``, then swap it in (an existing store is moved aside and removed only after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    shutil.rmtree(tmp)
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _forcing_rows(forcing: Forcing, n_steps: int | None) -> tuple[Callable[[int, int], torch.Tensor], int]:
    if callable(forcing) and not torch.is_tensor(forcing):
        if n_steps is None:
            raise ValueError("a callable forcing needs n_steps (the number of forcing rows to route)")
        return forcing, int(n_steps)
    q = torch.as_tensor(forcing)
    if q.ndim != 2:
        raise ValueError(f"forcing must be [T, N] (time x reach), got shape {tuple(q.shape)}")
    T = q.shape[0] if n_steps is None else int(n_steps)
    if T > q.shape[0]:
        raise ValueError(f"n_steps={T} but the forcing has only {q.shape[0]} rows")
    return (lambda t0, t1: q[t0:t1]), T


def route_to_file(router: MuskingumCunge, forcing: Forcing, path: str | Path, *,
                  times: Sequence | pd.DatetimeIndex | None = None, start=None, n_steps: int | None = None,
                  chunk_size: int | None = None, reaches: Sequence[int] | None = None, gauge_csv: str | Path | None = None,
                  state: RoutingState | None = None, hot_start: bool = True, dtype: str = "float32",
                  progress: bool = False, **params) -> OutputSummary:
    """Route ``forcing`` chunk by chunk and stream the discharge to a CF netCDF (``.nc``) or zarr (``.zarr``).

    Args:
        router: the router (its ``forcing_dt`` is the interval of each forcing / output row, s).
        forcing: lateral inflow (m3/s) [T, N] in network order, or a callable ``forcing(t0, t1) -> [t1-t0, N]``
            returning rows t0..t1-1 (then only one chunk of forcing is in memory at a time; needs ``n_steps``).
        path: output file; the suffix picks the format (``.nc``/``.nc4``/``.netcdf`` or ``.zarr``).
        times: time stamp (UTC) of each forcing row; or ``start`` (first row) with rows ``forcing_dt`` apart.
        n_steps: rows to route (default: all rows of a tensor forcing).
        chunk_size: forcing rows routed and written per chunk (memory ~ chunk_size x N). The wavefront sweeps
            ``rows + network depth`` diagonals per call, so chunks much shorter than the network depth (in
            reaches) are slow; the default is ``2 x depth`` rows (at least 24), capped at 64 MB per [rows, N]
            float64 array (the router holds several), and never more than the run.
        reaches: reach positions to write (default all); routing only what is needed to get them is cheaper.
        gauge_csv: also write a long CSV (time, gage, reach_id, discharge_m3s) at the network's gauges.
        state, hot_start: initial state, as for :meth:`MuskingumCunge.forward`.
        dtype: on-disk dtype of ``streamflow`` (``float32`` or ``float64``).
        progress: show a tqdm progress bar.
        **params: routing parameters (tensors are used as they are; gradients are not tracked).
    Returns:
        :class:`OutputSummary`; ``summary.state`` continues the run.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".nc4", ".netcdf", ".zarr"):
        raise ValueError(f"output {path}: unknown format '{suffix}'; use .nc (netCDF4) or .zarr")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got '{dtype}'")
    net = router.network
    N = len(net)
    get_rows, T = _forcing_rows(forcing, n_steps)
    if T < 1:
        raise ValueError("nothing to route: the forcing has no rows")
    if chunk_size is None:
        chunk_size = max(1, min(max(24, 2 * net.depth), (64 << 20) // (8 * N)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    step_s = router.dt * router.nsub
    stamps = _times(times, start, T, step_s)
    seconds = ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
    cols = np.arange(N) if reaches is None else np.asarray(list(reaches), dtype=np.int64)
    if len(cols) == 0 or cols.min() < 0 or cols.max() >= N:
        raise ValueError(f"reaches must be positions in [0, {N})")
    gauges = net.gauges() if gauge_csv is not None else pd.Series(dtype=object)
    if gauge_csv is not None and gauges.empty:
        raise ValueError("gauge_csv was asked for but the network has no gauged reaches (empty 'gage' column)")
    g_pos = gauges.index.to_numpy(np.int64)
    route_cols = None if reaches is None else np.unique(np.concatenate([cols, g_pos]))
    where = (lambda p: p) if route_cols is None else (lambda p: np.searchsorted(route_cols, p))
    coords = _reach_coords(net, cols)
    params = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in params.items()}

    from tqdm.auto import tqdm

    t_start = _time.perf_counter()
    inflow = outflow = drift = 0.0
    s_start = s_end = None
    n_chunks = 0
    zarr = suffix == ".zarr"
    with (_atomic_dir(path) if zarr else atomic_path(path)) as tmp, \
            _gauge_writer(gauge_csv) as gcsv, \
            tqdm(total=T, unit="step", desc=f"routing -> {path.name}", disable=not progress) as bar:
        writer = (_ZarrWriter if zarr else _NetCDFWriter)(tmp, router, coords, dtype)
        try:
            for t0 in range(0, T, chunk_size):
                t1 = min(T, t0 + chunk_size)
                q = get_rows(t0, t1)
                q = torch.as_tensor(q)
                if q.shape != (t1 - t0, N):
                    raise ValueError(f"forcing rows {t0}..{t1 - 1}: expected shape ({t1 - t0}, {N}), "
                                     f"got {tuple(q.shape)}")
                with torch.no_grad():
                    Q = router(q, state=state, hot_start=hot_start, outputs=route_cols, **params)
                state = router.state
                Qn = Q.detach().cpu().numpy()
                writer.append(seconds[t0:t1], Qn[:, where(cols)])
                if gcsv is not None:
                    _write_gauges(gcsv, stamps[t0:t1], gauges, net.ids[g_pos], Qn[:, where(g_pos)])
                b = router.balance
                inflow, outflow, drift = inflow + b.inflow_m3, outflow + b.outflow_m3, drift + b.parameter_drift_m3
                s_start = b.storage_start_m3 if s_start is None else s_start
                s_end = b.storage_end_m3
                n_chunks += 1
                bar.update(t1 - t0)
        finally:
            writer.close()
    balance = MassBalance(inflow, outflow, s_start, s_end, drift)
    return OutputSummary(path, None if gauge_csv is None else Path(gauge_csv), T, len(cols), n_chunks,
                         _time.perf_counter() - t_start, balance, state)


@contextmanager
def _gauge_writer(gauge_csv):
    if gauge_csv is None:
        yield None
        return
    with atomic_path(gauge_csv) as tmp, open(tmp, "w", newline="") as fh:
        fh.write("time,gage,reach_id,discharge_m3s\n")
        yield fh


def _write_gauges(fh, stamps: pd.DatetimeIndex, gauges: pd.Series, reach_ids: np.ndarray, Q: np.ndarray) -> None:
    T, G = Q.shape
    df = pd.DataFrame({"time": np.repeat(stamps.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(), G),
                       "gage": np.tile(gauges.to_numpy(dtype=str), T), "reach_id": np.tile(reach_ids, T),
                       "discharge_m3s": Q.reshape(-1)})
    df.to_csv(fh, header=False, index=False, float_format="%.6g")


def read_gauge_csv(path: str | Path) -> pd.DataFrame:
    """Read a gauge CSV written by :func:`route_to_file` (time UTC, gage str, reach_id, discharge_m3s)."""
    df = pd.read_csv(path, dtype={"gage": str})
    missing = {"time", "gage", "discharge_m3s"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a rivergraph gauge CSV, missing column(s) {sorted(missing)}")
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df
