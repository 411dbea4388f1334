"""The one CF-1.8 output layout of rivergraph (discharge, temperature, lateral inflow per reach and time).

Every rivergraph command that writes reach time series (``rivergraph route``, ``rivergraph train``'s outputs,
``rivergraph temperature``, :func:`rivergraph.io.route_to_file`, the BMI's output file) writes this layout
through :class:`CFWriter`, and every command that reads one (``rivergraph plot map --flow``, ``rivergraph
route``'s hot start) reads it through :func:`open_output`.

Layout (CF conventions 1.8, discrete sampling geometry ``featureType = timeSeries``, orthogonal arrays, as the
NWM's own CHRTOUT files):

- dimensions ``time`` (unlimited, first) and ``feature_id`` (one per written reach);
- ``feature_id(feature_id)``: the reach id of the source network (integer, or text for ids such as
  ``wb-12``), ``cf_role = timeseries_id``. The name is the NWM's (CHRTOUT ``feature_id`` = Route_Link ``link``),
  so that NWM tools and users find it where they expect;
- ``time(time)``: ``seconds since 1970-01-01 00:00:00``, UTC, standard calendar. Row i carries the time stamp
  of forcing row i; for discharge routed with ``output='mean'`` it is the mean over that interval
  (``cell_methods = time: mean``), else the value at its end;
- ``lat(feature_id)``, ``lon(feature_id)`` (degrees) where the network has both;
- data variables ``(time, feature_id)`` from :data:`VARIABLES`: ``streamflow`` (m3 s-1, the NWM's name),
  ``water_temperature`` (degC), ``equilibrium_temperature``, ``lateral_inflow_temperature``, ``q_lateral``.

Files are written to a temporary name beside the target and renamed on success (never half-written), with
permissions from the umask (:func:`rivergraph.io.atomic.atomic_path`). Files in the layouts rivergraph wrote
before this one (``reach_id`` / ``reach`` coordinates, ``discharge`` variable) are still read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_dir, atomic_path

__all__ = ["CFWriter", "VARIABLES", "TIME_UNITS", "REACH_DIM", "open_output", "reach_ids_of", "write_discharge",
           "write_temperature",
           "time_seconds"]

TIME_UNITS = "seconds since 1970-01-01 00:00:00"
REACH_DIM = "feature_id"
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")

VARIABLES: dict[str, dict] = {
    "streamflow": {"standard_name": "water_volume_transport_in_river_channel", "long_name": "routed discharge",
                   "units": "m3 s-1"},
    "q_lateral": {"long_name": "lateral inflow into the reach", "units": "m3 s-1"},
    "water_temperature": {"long_name": "reach water temperature at end of step", "units": "degC"},
    "equilibrium_temperature": {"long_name": "equilibrium water temperature", "units": "degC"},
    "lateral_inflow_temperature": {"long_name": "temperature of the lateral inflow", "units": "degC"},
}
"""The variables of the layout: name -> CF attributes (``units`` always set)."""

_COORD_ATTRS = {
    REACH_DIM: {"cf_role": "timeseries_id", "long_name": "reach identifier of the source network"},
    "lat": {"standard_name": "latitude", "units": "degrees_north", "long_name": "reach latitude"},
    "lon": {"standard_name": "longitude", "units": "degrees_east", "long_name": "reach longitude"},
    "time": {"standard_name": "time", "long_name": "valid time", "units": TIME_UNITS, "calendar": "standard",
             "axis": "T"},
}
_LEGACY = {"reach_id": REACH_DIM, "reach": REACH_DIM, "discharge": "streamflow"}


def time_seconds(times) -> np.ndarray:
    """UTC seconds since 1970 of ``times`` (naive stamps are UTC)."""
    t = pd.DatetimeIndex(times)
    t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
    return ((t - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def _reach_coords(net, cols: np.ndarray) -> dict[str, np.ndarray]:
    ids = np.asarray(net.ids)[cols]
    out = {REACH_DIM: ids.astype(str) if ids.dtype.kind in "OUS" else ids.astype(np.int64)}
    if "lat" in net.attrs and "lon" in net.attrs:
        out["lat"] = net.attrs["lat"].to_numpy(np.float64)[cols]
        out["lon"] = net.attrs["lon"].to_numpy(np.float64)[cols]
    return out


class CFWriter:
    """Streams ``(time, feature_id)`` chunks of one or more :data:`VARIABLES` to a CF netCDF (``.nc``) or zarr
    (``.zarr``) file; use as a context manager (the file appears under its name only if the block succeeds)::

        with CFWriter("flow.nc", net, ["streamflow"]) as w:
            for t0, t1 in chunks:
                w.append(times[t0:t1], streamflow=Q_chunk)      # [t1 - t0, n_reaches]

    Args:
        path: output file; the suffix picks the format (``.nc``/``.nc4``/``.netcdf`` or ``.zarr``).
        network: the :class:`~rivergraph.RiverNetwork` (reach ids, lat/lon).
        variables: names from :data:`VARIABLES`.
        reaches: reach positions written (default all), in this order.
        dtype: on-disk dtype (``float32`` or ``float64``).
        attrs: extra global attributes; variable_attrs: extra attributes per variable (e.g. ``cell_methods``).
    """

    def __init__(self, path: str | Path, network, variables: Sequence[str] = ("streamflow",), *,
                 reaches: Sequence[int] | np.ndarray | None = None, dtype: str = "float32",
                 attrs: Mapping | None = None, variable_attrs: Mapping[str, Mapping] | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".nc", ".nc4", ".netcdf", ".zarr"):
            raise ValueError(f"output {self.path}: unknown format '{suffix}'; use .nc (netCDF4) or .zarr")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got '{dtype}'")
        unknown = [v for v in variables if v not in VARIABLES]
        if unknown or not variables:
            raise ValueError(f"unknown output variable(s) {unknown}; known: {sorted(VARIABLES)}")
        N = len(network)
        cols = np.arange(N) if reaches is None else np.asarray(list(reaches), dtype=np.int64)
        if len(cols) == 0 or cols.min() < 0 or cols.max() >= N:
            raise ValueError(f"reaches must be positions in [0, {N})")
        self.cols, self.variables, self.dtype = cols, list(variables), dtype
        self.coords = _reach_coords(network, cols)
        now = f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%SZ}"
        self.attrs = {"Conventions": "CF-1.8", "featureType": "timeSeries", "title": "rivergraph output",
                      "source": "rivergraph", "history": f"{now} rivergraph", **dict(attrs or {})}
        self.var_attrs = {v: {**VARIABLES[v], "coordinates": " ".join(k for k in ("lat", "lon") if k in self.coords),
                              **dict((variable_attrs or {}).get(v, {}))} for v in self.variables}
        for a in self.var_attrs.values():
            if not a["coordinates"]:
                del a["coordinates"]
        self.zarr = suffix == ".zarr"
        self.rows = 0
        self._ctx = None
        self._ds = None

    # -------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "CFWriter":
        self._ctx = atomic_dir(self.path) if self.zarr else atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        if not self.zarr:
            self._open_netcdf()
        return self

    def __exit__(self, *exc) -> bool:
        try:
            if self._ds is not None:
                self._ds.close()
                self._ds = None
        finally:
            ctx, self._ctx = self._ctx, None
            return bool(ctx.__exit__(*exc))

    def _open_netcdf(self) -> None:
        import netCDF4

        ds = self._ds = netCDF4.Dataset(self._tmp, "w", format="NETCDF4")
        n = len(self.cols)
        ds.createDimension("time", None)
        ds.createDimension(REACH_DIM, n)
        ds.setncatts(self.attrs)
        ds.createVariable("time", "f8", ("time",)).setncatts(_COORD_ATTRS["time"])
        for name, values in self.coords.items():
            kind = str if values.dtype.kind == "U" else values.dtype
            v = ds.createVariable(name, kind, (REACH_DIM,))
            v.setncatts(_COORD_ATTRS[name])
            v[:] = values.astype(object) if kind is str else values
        for name in self.variables:
            v = ds.createVariable(name, self.dtype, ("time", REACH_DIM), zlib=True, complevel=1,
                                  chunksizes=(1, n), fill_value=np.nan)
            v.setncatts(self.var_attrs[name])

    # ----------------------------------------------------------------------------------- append
    def append(self, times, **arrays) -> None:
        """Append rows: ``times`` (k stamps, UTC) and one ``[k, n_reaches]`` array (numpy or tensor) per variable
        (columns in the writer's reach order; all variables at every call)."""
        if self._ctx is None:
            raise RuntimeError("CFWriter.append outside its 'with' block")
        if set(arrays) != set(self.variables):
            raise ValueError(f"append needs exactly the variables {self.variables}, got {sorted(arrays)}")
        sec = time_seconds(times)
        k = len(sec)
        data = {}
        for name, a in arrays.items():
            a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
            if a.shape != (k, len(self.cols)):
                raise ValueError(f"{name}: expected shape ({k}, {len(self.cols)}) (times x written reaches), "
                                 f"got {a.shape}")
            data[name] = a.astype(self.dtype, copy=False)
        if self.zarr:
            self._append_zarr(sec, data)
        else:
            self._ds["time"][self.rows:self.rows + k] = sec
            for name, a in data.items():
                self._ds[name][self.rows:self.rows + k, :] = a
        self.rows += k

    def _append_zarr(self, sec: np.ndarray, data: dict) -> None:
        import xarray as xr

        attrs = {v: {k: x for k, x in a.items() if k != "coordinates"} for v, a in self.var_attrs.items()}
        ds = xr.Dataset({v: (("time", REACH_DIM), a, attrs[v]) for v, a in data.items()},
                        coords={"time": ("time", sec, _COORD_ATTRS["time"])}, attrs=self.attrs)
        kw = _zarr_kwargs()
        if self.rows == 0:
            ds = ds.assign_coords({k: (REACH_DIM, v, _COORD_ATTRS[k]) for k, v in self.coords.items()})
            enc = {v: {"chunks": (len(sec), len(self.cols))} for v in data}
            ds.to_zarr(self._tmp, mode="w", encoding=enc, **kw)
        else:
            ds.to_zarr(self._tmp, append_dim="time", **kw)


def _zarr_kwargs() -> dict:
    """Write zarr format 2 (consolidated metadata), readable by zarr-python 2 and 3 alike."""
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is a dependency
        raise ValueError("writing .zarr needs the 'zarr' package (pip install zarr)") from exc
    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


def write_discharge(Q, network, times, path: str | Path, *, reaches: Sequence[int] | None = None,
                    dtype: str = "float32", attrs: Mapping | None = None) -> Path:
    """Write discharge you already hold, ``Q [T, N]`` (m3/s; ``[T, len(reaches)]`` with ``reaches``), at ``times``
    (UTC) as a CF ``streamflow`` file (``.nc`` or ``.zarr``); returns the path."""
    with CFWriter(path, network, ["streamflow"], reaches=reaches, dtype=dtype, attrs=attrs) as w:
        w.append(times, streamflow=Q)
    return Path(path)


def open_output(path: str | Path):
    """Open a rivergraph output (``.nc`` or ``.zarr``) as an :class:`xarray.Dataset` in the layout above: reach
    dimension and coordinate ``feature_id``, ``streamflow`` for discharge, times decoded (naive UTC). Older
    rivergraph layouts (``reach_id``/``reach``, ``discharge``) are renamed on the fly."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"output file not found: {path}")
    ds = xr.open_zarr(path) if path.suffix.lower() == ".zarr" else xr.open_dataset(path)
    ren = {}
    for old, new in _LEGACY.items():
        if old in ds.variables and new not in ds.variables:
            ren[old] = new
    if "reach_id" in ren and "reach" in ds.dims:   # legacy: dim 'reach' with coordinate 'reach_id'
        ds = ds.swap_dims({"reach": "reach_id"}).drop_vars([v for v in ("reach",) if v in ds.variables])
        ren.pop("reach", None)
    ds = ds.rename(ren) if ren else ds
    if REACH_DIM not in ds.dims:
        ds.close()
        raise ValueError(f"{path}: not a rivergraph output (no '{REACH_DIM}' dimension; has {list(ds.dims)})")
    return ds


def reach_ids_of(ds) -> np.ndarray:
    """The reach ids of an opened output (``feature_id``), as int64 when numeric, else str."""
    ids = np.asarray(ds[REACH_DIM].values)
    return ids.astype(str) if ids.dtype.kind in "OUS" else ids.astype(np.int64)


def write_temperature(path: str | Path, network, times, result, dtype: str = "float32") -> Path:
    """Write a :class:`rivergraph.models.temperature.TemperatureResult` (water temperature, discharge,
    equilibrium and lateral-inflow temperature, [T, N]) in the CF layout; returns the path."""
    with CFWriter(path, network, ["water_temperature", "streamflow", "equilibrium_temperature",
                                  "lateral_inflow_temperature"], dtype=dtype,
                  attrs={"title": "rivergraph stream temperature", "source": "rivergraph.models.temperature"},
                  variable_attrs={"streamflow": {"long_name": "routed outflow at end of step",
                                                 "cell_methods": "time: point"}}) as w:
        w.append(times, water_temperature=result.temperature, streamflow=result.discharge,
                 equilibrium_temperature=result.equilibrium, lateral_inflow_temperature=result.lateral_temp)
    return Path(path)
