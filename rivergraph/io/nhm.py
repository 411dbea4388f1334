"""Readers for the USGS National Hydrologic Model (NHM) / PRMS segment network, its gauges and time series.

Layout (pywatershed's netCDF parameter files, e.g. the Delaware River Basin ``drb_2yr`` test case):

``parameters_dis_seg.nc`` (dimension ``nsegment``; ``npoigages``)
    ``nhm_seg`` national segment id; ``tosegment`` the downstream segment as a **1-based position** in this file
    (0 = outlet; ``tosegment_nhm`` repeats it as a national id and is cross-checked); ``seg_length`` (m),
    ``seg_slope`` (m/m), ``seg_width`` (bankfull width, m), ``seg_depth`` (bankfull depth, m), ``seg_elev`` (m),
    ``seg_lat`` (deg N), ``seg_cum_area`` (acres; its units attribute says "unknown", but it matches the USGS
    drainage areas of the gauges in acres: median ratio 1.009 at the 101 complete DRB gauges), ``segment_type``,
    ``poi_gage_id`` / ``poi_gage_segment`` (gauge -> 1-based segment position).
``parameters_PRMSChannel.nc`` (``nsegment``; ``nhru``)
    ``mann_n`` (s m^-1/3), ``x_coef`` (Muskingum X), ``hru_segment`` (HRU -> 1-based segment position, 0 = none).
``parameters_dis_hru.nc`` (``nhru``)
    ``hru_area`` (acres), ``hru_elev`` (in PRMS's ``elev_units``: 0 = feet, 1 = metres, from ``myparam.param``),
    ``hru_slope`` (decimal fraction), ``hru_lat`` / ``hru_lon``.

**Slope floor.** PRMS's muskingum_mann (and pywatershed 2.0.4 ``PRMSChannel``) replaces ``seg_slope < 1e-7`` by
1e-4, but only *after* the bankfull velocity v = sqrt(S) d^(2/3) / n that sets K is computed (pywatershed's
own comment calls this a bug), so in PRMS the floor never changes K. This reader floors at PRMS's 1e-7 by default
(``min_slope=``; rivergraph's default elsewhere is the NWM's 1e-5); the smallest slope in the DRB is 2e-6.

Units are converted to rivergraph's (m, m/m, km2, m3/s): 1 acre = 4.0468564224e-3 km2; 1 ft3/s = 0.028316846592
m3/s; a time series whose ``units`` attribute is not a known discharge unit is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..graph.network import NetworkError, RiverNetwork, build_network

__all__ = ["read_nhm", "read_prms_gauges", "read_segment_series", "read_hru_params", "prms_param",
           "hru_to_segment", "GaugeObservations", "ACRE_TO_KM2", "CFS_TO_M3S", "PRMS_MIN_SLOPE", "is_nhm_file"]

ACRE_TO_KM2 = 4.0468564224e-3
"""1 international acre in km2 (43,560 ft2, 1 ft = 0.3048 m)."""
CFS_TO_M3S = 0.028316846592
"""1 ft3/s in m3/s (0.3048^3)."""
MI2_TO_KM2 = 2.589988110336
PRMS_MIN_SLOPE = 1e-7
"""PRMS / pywatershed's seg_slope floor (values below are replaced by 1e-4 after K is computed; see module doc)."""
_DISCHARGE_UNITS = {"cfs": CFS_TO_M3S, "ft3 s-1": CFS_TO_M3S, "ft3/s": CFS_TO_M3S, "ft^3/s": CFS_TO_M3S,
                    "cubic feet per second": CFS_TO_M3S, "m3 s-1": 1.0, "m3/s": 1.0, "cms": 1.0}


def _files(path: str | Path) -> dict[str, Path]:
    """The NHM parameter files beside ``path`` (a ``parameters_dis_seg.nc`` or the folder holding it)."""
    path = Path(path)
    d = path if path.is_dir() else path.parent
    seg = path if path.is_file() else d / "parameters_dis_seg.nc"
    if not seg.is_file():
        raise FileNotFoundError(f"NHM segment parameters not found: {seg}")
    return {"seg": seg, "channel": d / "parameters_PRMSChannel.nc", "hru": d / "parameters_dis_hru.nc",
            "param": d / "myparam.param"}


def is_nhm_file(path: str | Path) -> bool:
    """True for a netCDF holding a PRMS ``tosegment`` variable (an NHM segment parameter file)."""
    import xarray as xr

    try:
        with xr.open_dataset(path, decode_times=False) as ds:
            return "tosegment" in ds.variables
    except (OSError, ValueError):
        return False


def prms_param(path: str | Path, name: str) -> np.ndarray:
    """Values of one parameter from a PRMS text parameter file (``myparam.param``): after a ``####`` line come
    the name, the number of dimensions, the dimension names, the value count, the type code and the values."""
    lines = Path(path).read_text().splitlines()
    for i, ln in enumerate(lines):
        if ln.strip() == "####" and i + 1 < len(lines) and lines[i + 1].split()[0] == name:
            ndim = int(lines[i + 2])
            j = i + 3 + ndim
            count, typ = int(lines[j]), int(lines[j + 1])
            vals = lines[j + 2:j + 2 + count]
            return np.array(vals, dtype=np.int64 if typ == 1 else np.float64)
    raise KeyError(f"{path}: parameter '{name}' not found")


def _positions_to_ids(pos: np.ndarray, ids: np.ndarray, what: str, path) -> np.ndarray:
    """1-based segment positions (0 = none) -> national ids (0 = none); out-of-range positions name the rows."""
    pos = np.asarray(pos, dtype=np.int64)
    bad = (pos < 0) | (pos > len(ids))
    if bad.any():
        raise NetworkError(f"{path}: {what} has positions outside 0..{len(ids)} at rows "
                           f"{np.flatnonzero(bad)[:10].tolist()} (values {pos[bad][:10].tolist()})")
    return np.where(pos > 0, ids[np.maximum(pos - 1, 0)], 0)


def read_nhm(path: str | Path, *, min_slope: float = PRMS_MIN_SLOPE, min_drainage_area_km2: float = 0.01,
             **kw) -> RiverNetwork:
    """Read an NHM / PRMS segment network (``parameters_dis_seg.nc``, or the folder holding it).

    Reach ids are ``nhm_seg``; downstream ids come from the 1-based ``tosegment`` positions (0 = outlet),
    cross-checked against ``tosegment_nhm`` where present. Columns: ``length_m``, ``slope``, ``top_width_m``
    (bankfull ``seg_width``), ``bankfull_depth_m`` (``seg_depth``), ``elevation_m``, ``lat``,
    ``drainage_area_km2`` (``seg_cum_area`` acres -> km2), ``segment_type``, ``gage`` (``poi_gage_id`` on its
    ``poi_gage_segment``; several gauges on one segment are joined with ``,``), and, from
    ``parameters_PRMSChannel.nc`` beside it, ``n`` (``mann_n``), ``musx`` (``x_coef``) and
    ``catchment_area_km2`` (the areas of the HRUs draining to each segment through ``hru_segment``, from
    ``parameters_dis_hru.nc``). ``net.report`` records segments with zero drainage area and the HRUs draining to
    no segment. ``min_slope`` defaults to PRMS's floor 1e-7 (module docstring). Drainage areas below
    ``min_drainage_area_km2`` (the DRB's connector 3558 has ``seg_cum_area = 0``: no HRU drains to it) are raised to
    it, so that log-area features exist; the raised segments are listed in ``report["zero_drainage_area"]``.
    """
    import xarray as xr

    f = _files(path)
    with xr.open_dataset(f["seg"], decode_times=False) as ds:
        for v in ("nhm_seg", "tosegment", "seg_length", "seg_slope"):
            if v not in ds.variables:
                raise NetworkError(f"{f['seg']}: not an NHM segment file (missing variable '{v}')")
        ids = ds["nhm_seg"].values.astype(np.int64)
        to = _positions_to_ids(ds["tosegment"].values, ids, "tosegment", f["seg"])
        if "tosegment_nhm" in ds.variables:
            tn = ds["tosegment_nhm"].values.astype(np.int64)
            bad = tn != to
            if bad.any():
                raise NetworkError(f"{f['seg']}: tosegment and tosegment_nhm disagree at segments "
                                   f"{ids[bad][:10].tolist()}")
        attrs = pd.DataFrame({"length_m": ds["seg_length"].values.astype(float),
                              "slope": ds["seg_slope"].values.astype(float)})
        for src, dst, mult in (("seg_width", "top_width_m", 1.0), ("seg_depth", "bankfull_depth_m", 1.0),
                               ("seg_elev", "elevation_m", 1.0), ("seg_lat", "lat", 1.0),
                               ("seg_cum_area", "drainage_area_km2", ACRE_TO_KM2),
                               ("segment_type", "segment_type", 1.0)):
            if src in ds.variables:
                attrs[dst] = ds[src].values.astype(float) * mult
        gage = np.full(len(ids), "", dtype=object)
        if "poi_gage_id" in ds.variables and "poi_gage_segment" in ds.variables:
            gid = [str(g).strip() for g in ds["poi_gage_id"].values]
            gpos = _positions_to_ids(ds["poi_gage_segment"].values, np.arange(1, len(ids) + 1), "poi_gage_segment",
                                     f["seg"])
            for g, p in zip(gid, gpos):
                if p > 0:
                    gage[p - 1] = g if not gage[p - 1] else f"{gage[p - 1]},{g}"
        attrs["gage"] = gage
    report = {}
    if f["channel"].is_file():
        with xr.open_dataset(f["channel"], decode_times=False) as ch:
            if "nhm_seg" in ch.variables and not np.array_equal(ch["nhm_seg"].values.astype(np.int64), ids):
                raise NetworkError(f"{f['channel']}: nhm_seg order differs from {f['seg'].name}")
            if "mann_n" in ch.variables:
                attrs["n"] = ch["mann_n"].values.astype(float)
            if "x_coef" in ch.variables:
                attrs["musx"] = ch["x_coef"].values.astype(float)
            if "hru_segment" in ch.variables and f["hru"].is_file():
                hru = read_hru_params(f["hru"], channel=f["channel"])
                local = np.zeros(len(ids))
                on = hru["segment_pos"].to_numpy() >= 0
                np.add.at(local, hru["segment_pos"].to_numpy()[on], hru["area_km2"].to_numpy()[on])
                attrs["catchment_area_km2"] = local
                report["hrus_without_segment"] = int((~on).sum())
    if "drainage_area_km2" in attrs:
        zero = attrs["drainage_area_km2"].to_numpy() < min_drainage_area_km2
        report["zero_drainage_area"] = ids[zero].tolist()
        attrs.loc[zero, "drainage_area_km2"] = min_drainage_area_km2
    kw.setdefault("outlet_ids", (0,))  # tosegment 0 = outlet: an nhm_seg id 0 is an error, not an outlet
    net = build_network(ids, to, attrs, source=f"nhm:{f['seg'].name}", min_slope=min_slope, **kw)
    net.report.update(report)
    return net


def read_hru_params(path: str | Path, channel: str | Path | None = None,
                    param_file: str | Path | None = None) -> pd.DataFrame:
    """HRU table from ``parameters_dis_hru.nc``: ``nhm_id``, ``area_km2`` (acres -> km2), ``elev_m`` (converted
    from PRMS's ``elev_units``, read from ``myparam.param`` beside the file or ``param_file``: 0 = feet, 1 =
    metres; without the file, metres are assumed and ``elev_units`` is recorded as NaN), ``slope`` (m/m),
    ``slope_m_per_km``, ``lat``, ``lon`` and, with ``parameters_PRMSChannel.nc`` (``channel``, default beside it),
    ``segment_pos`` (0-based segment position of ``hru_segment``, -1 = drains to no segment)."""
    import xarray as xr

    path = Path(path)
    with xr.open_dataset(path, decode_times=False) as ds:
        df = pd.DataFrame({"nhm_id": ds["nhm_id"].values.astype(np.int64),
                           "area_km2": ds["hru_area"].values.astype(float) * ACRE_TO_KM2})
        elev = ds["hru_elev"].values.astype(float) if "hru_elev" in ds else None
        for src, dst in (("hru_slope", "slope"), ("hru_lat", "lat"), ("hru_lon", "lon")):
            if src in ds.variables:
                df[dst] = ds[src].values.astype(float)
    param_file = Path(param_file) if param_file else path.parent / "myparam.param"
    units = float(prms_param(param_file, "elev_units")[0]) if param_file.is_file() else float("nan")
    if elev is not None:
        if units == 0:
            elev = elev * 0.3048
        elif not (units == 1 or np.isnan(units)):
            raise ValueError(f"{param_file}: elev_units {units} is neither 0 (feet) nor 1 (metres)")
        df["elev_m"] = elev
    df.attrs["elev_units"] = units
    if "slope" in df:
        df["slope_m_per_km"] = df["slope"] * 1000.0
    channel = Path(channel) if channel else path.parent / "parameters_PRMSChannel.nc"
    if channel.is_file():
        with xr.open_dataset(channel, decode_times=False) as ch:
            if "nhm_id" in ch.variables and not np.array_equal(ch["nhm_id"].values.astype(np.int64), df["nhm_id"]):
                raise ValueError(f"{channel}: nhm_id order differs from {path.name}")
            df["segment_pos"] = ch["hru_segment"].values.astype(np.int64) - 1
    return df


def hru_to_segment(values: np.ndarray, segment_pos: np.ndarray, n_segments: int) -> np.ndarray:
    """Sum HRU values ([..., H], e.g. m3/s) onto segments ([..., n_segments]) through 0-based ``segment_pos``
    (-1 = drains to no segment: dropped, as in PRMS, whose channel ignores HRUs with ``hru_segment = 0``)."""
    values = np.asarray(values, dtype=np.float64)
    segment_pos = np.asarray(segment_pos, dtype=np.int64)
    if values.shape[-1] != len(segment_pos):
        raise ValueError(f"values have {values.shape[-1]} HRUs, segment map has {len(segment_pos)}")
    if (segment_pos >= n_segments).any():
        raise ValueError(f"segment positions beyond the {n_segments} segments")
    M = np.zeros((len(segment_pos), n_segments))
    on = segment_pos >= 0
    M[np.flatnonzero(on), segment_pos[on]] = 1.0
    return values @ M


def _discharge_factor(units: str | None, what: str) -> float:
    key = (units or "").strip().lower()
    if key not in _DISCHARGE_UNITS:
        raise ValueError(f"{what}: unknown discharge units '{units}' (known: {sorted(_DISCHARGE_UNITS)})")
    return _DISCHARGE_UNITS[key]


def read_segment_series(path: str | Path, net: RiverNetwork | None = None,
                        var: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A PRMS / pywatershed segment time series (``seg_lateral_inflow.nc``, ``seg_outflow.nc``: time x
    ``nhm_seg``, cfs) as ``(time [T] datetime64, values [T, N] float64 m3/s)``, columns in ``net``'s reach order
    when given (every reach must be in the file). Non-finite or negative values name the segments."""
    import xarray as xr

    path = Path(path)
    with xr.open_dataset(path) as ds:
        if var is None:
            cands = [v for v in ds.data_vars if ds[v].ndim == 2]
            if len(cands) != 1:
                raise ValueError(f"{path}: pass var= (2-D variables: {cands})")
            var = cands[0]
        da = ds[var]
        seg_dim = next((d for d in da.dims if d in ("nhm_seg", "nsegment")), None)
        if seg_dim is None or "time" not in da.dims:
            raise ValueError(f"{path}: '{var}' must have dims (time, nhm_seg), got {da.dims}")
        da = da.transpose("time", seg_dim)
        fac = _discharge_factor(da.attrs.get("units"), f"{path}:{var}")
        vals = da.values.astype(np.float64) * fac
        time = ds["time"].values
        segs = ds[seg_dim].values.astype(np.int64) if seg_dim in ds.coords else None
    if net is not None:
        if segs is None:
            if vals.shape[1] != len(net):
                raise ValueError(f"{path}: {vals.shape[1]} segments, network has {len(net)}")
        else:
            where = {int(s): i for i, s in enumerate(segs)}
            missing = [int(i) for i in net.ids if int(i) not in where]
            if missing:
                raise ValueError(f"{path}: segments {missing[:10]} of the network are not in the file")
            vals = vals[:, [where[int(i)] for i in net.ids]]
            segs = net.ids
    bad = ~np.isfinite(vals) | (vals < 0)
    if bad.any():
        cols = np.flatnonzero(bad.any(0))[:10]
        raise ValueError(f"{path}: non-finite or negative '{var}' at segments "
                         f"{(segs[cols] if segs is not None else cols).tolist()}")
    return time, vals


@dataclass
class GaugeObservations:
    """Observed discharge at PRMS POI gauges: ``ids`` [G] (USGS ids), ``positions`` [G] (0-based reach positions
    in the network), ``time`` [T], ``discharge_m3s`` [T, G] (NaN = missing), ``drainage_area_km2`` [G] (USGS),
    ``names`` [G]."""

    ids: np.ndarray
    positions: np.ndarray
    time: np.ndarray
    discharge_m3s: np.ndarray
    drainage_area_km2: np.ndarray
    names: np.ndarray

    @property
    def complete(self) -> np.ndarray:
        """[G] gauges with an observation on every day."""
        return np.isfinite(self.discharge_m3s).all(0)

    def select(self, mask: np.ndarray) -> "GaugeObservations":
        m = np.asarray(mask)
        return GaugeObservations(self.ids[m], self.positions[m], self.time, self.discharge_m3s[:, m],
                                 self.drainage_area_km2[m], self.names[m])


def read_prms_gauges(path: str | Path, net: RiverNetwork) -> GaugeObservations:
    """Observed daily discharge at PRMS POI gauges (``drb_2yr_gage_poi_obs.nc``: ``discharge`` (poi_id, time) in
    ft3/s, ``drainage_area`` mi2) placed on ``net`` through its ``gage`` column (from ``poi_gage_segment``, see
    :func:`read_nhm`). Gauges are matched by id, not by file order (the two files order them differently);
    gauges of the file that are on no segment are an error naming them. Negative discharge is masked (NaN)."""
    import xarray as xr

    where = {}
    for pos, g in net.gauges().items():
        for gid in str(g).split(","):
            where[gid.strip()] = int(pos)
    with xr.open_dataset(path) as ds:
        ids = np.array([str(i).strip() for i in ds["poi_id"].values])
        da = ds["discharge"]
        if da.dims[0] != "poi_id":
            da = da.transpose("poi_id", "time")
        q = da.values.astype(np.float64).T * _discharge_factor(da.attrs.get("units"), f"{path}:discharge")
        time = ds["time"].values
        area = (ds["drainage_area"].values.astype(float) * MI2_TO_KM2 if "drainage_area" in ds
                else np.full(len(ids), np.nan))
        names = ds["poi_name"].values.astype(str) if "poi_name" in ds else ids.copy()
    missing = [i for i in ids if i not in where]
    if missing:
        raise NetworkError(f"{path}: gauges {missing[:10]} are on no segment of the network (gage column)")
    q = np.where(q < 0, np.nan, q)
    return GaugeObservations(ids, np.array([where[i] for i in ids], dtype=np.int64), time, q, area, names)
