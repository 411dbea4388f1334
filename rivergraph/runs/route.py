"""``rivergraph route CONFIG.yaml``: a user's network and runoff, routed over a period in time chunks.

Pipeline per chunk of forcing rows (memory ~ chunk x reaches, never the whole [T, N]): runoff provider
(catchment values at the chunk's times) -> units to m3/s (depth rates x catchment area) -> catchment -> reach map
(:class:`rivergraph.runoff.CatchmentReachMap`) -> router with the state carried from the previous chunk ->
CF output and gauge CSV appended (:func:`rivergraph.io.route_to_file`). At the end: the final state file, a
``summary.json`` with the mass balance, wall time, reach-steps/s and peak memory.
"""
from __future__ import annotations

import json
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..graph.network import NetworkError, RiverNetwork

__all__ = ["CatchmentRunoff", "run_route", "precomputed_runoff", "dataset_runoff", "lstm_runoff_source",
           "build_runoff",
           "route_parameters", "peak_rss_mb"]

_CFS = 0.0283168466
_DEPTH_S = {"mm/h": 3600.0, "mm/day": 86400.0, "mm/s": 1.0}


@dataclass
class CatchmentRunoff:
    """What a runoff provider hands the route run: ``read(rows) -> [len(rows), C]`` values at the positions
    ``rows`` of ``times`` for ``catchment_ids``, in ``units`` (:data:`rivergraph.config.runoff.RUNOFF_UNITS`).
    ``area_km2`` (per catchment) may be given by the provider; else depth rates take it from the network or the
    mapping table."""

    catchment_ids: list
    times: pd.DatetimeIndex
    units: str
    read: Callable[[slice], np.ndarray]
    area_km2: np.ndarray | None = None
    close: Callable[[], None] = field(default=lambda: None)


def precomputed_runoff(section, network: RiverNetwork, base: Path) -> CatchmentRunoff:
    """A ``precomputed`` provider: netCDF read one slice of rows at a time, CSV / parquet read whole."""
    from ..config.base import resolve_path

    path = resolve_path(section.path, base)
    if not path.exists():
        raise FileNotFoundError(f"runoff.path: file not found: {path}")
    if path.suffix.lower() in (".nc", ".nc4", ".netcdf", ".cdf"):
        import xarray as xr

        ds = xr.open_dataset(path)
        var = section.variable
        if var is None:
            cands = [v for v in ds.data_vars if ds[v].ndim == 2 and section.time in ds[v].dims]
            if len(cands) != 1:
                ds.close()
                raise ValueError(f"{path}: cannot choose the runoff variable (candidates {cands}); set runoff.variable")
            var = cands[0]
        if var not in ds or section.time not in ds[var].dims or ds[var].ndim != 2:
            ds.close()
            raise ValueError(f"{path}: runoff.variable '{var}' must be a 2-D ({section.time}, catchment) variable")
        da = ds[var]
        cdim = next(d for d in da.dims if d != section.time)
        da = da.transpose(section.time, cdim)
        ids = ds[cdim].values if cdim in ds.coords else np.arange(da.shape[1])
        times = pd.DatetimeIndex(ds[section.time].values)
        return CatchmentRunoff([i.item() if hasattr(i, "item") else i for i in ids], times, section.units,
                               lambda rows: np.array(da[rows].values, dtype=np.float64), close=ds.close)
    from ..runoff import PrecomputedRunoff

    pr = PrecomputedRunoff.from_file(path, time_col=section.time)
    vals = pr.data.to_numpy(dtype=np.float64)
    return CatchmentRunoff(list(pr.data.columns), pr.times, section.units, lambda rows: vals[rows].copy())


def dataset_runoff(section, network: RiverNetwork, base: Path) -> CatchmentRunoff:
    """A ``dataset`` provider: the dataset's own lateral inflow (m3/s per reach, catchment id = reach id)."""
    from ..datasets import load_dataset

    net, data = load_dataset(section.name)
    if "q_lateral" not in data:
        raise ValueError(f"dataset '{section.name}' ships no lateral inflow (q_lateral)")
    q = data["q_lateral"].double().numpy()
    return CatchmentRunoff(list(net.ids), pd.DatetimeIndex(data["time"]), "m3/s", lambda rows: q[rows].copy())


def lstm_runoff_source(section, network: RiverNetwork, base: Path) -> CatchmentRunoff:
    """An ``lstm`` provider: :func:`rivergraph.runoff.lstm_runoff` on forcing per catchment; rows are read in
    order, chunk after chunk, so the LSTM continues from its carried state (one pass over the period)."""
    from ..config.base import resolve_path
    from ..io.forcing import read_ngen_forcing
    from ..runoff import NeuralHydrologyLSTM, lstm_runoff, read_camels_attributes

    model = NeuralHydrologyLSTM.from_run_dir(resolve_path(section.run_dir, base), epoch=section.epoch)
    forcing = read_ngen_forcing(resolve_path(section.forcing, base))
    cats = list(forcing)
    attrs = None
    st = section.static_attributes
    if st is not None:
        names = model.static_attributes
        if st.table is not None:
            tab = pd.read_csv(resolve_path(st.table, base), index_col=0)
            tab.index = tab.index.astype(str)
            missing = [c for c in cats if c not in tab.index]
            if missing:
                raise ValueError(f"runoff.static_attributes.table has no row for catchment(s) {missing[:10]}")
            attrs = tab.loc[cats, names]
        else:
            a = read_camels_attributes(resolve_path(st.camels_dir, base), [st.basin], names)
            attrs = pd.DataFrame(np.repeat(a.to_numpy(), len(cats), axis=0), index=cats, columns=a.columns)
    # depth rates out; the route run converts them with the catchment areas (runoff.area) and the mapping
    prov = lstm_runoff(model, forcing, attrs, None, inputs=section.inputs,
                       mode=section.mode, spinup_cycles=section.spinup_cycles)
    times = prov.times

    def read(rows: slice) -> np.ndarray:
        with torch.no_grad():
            return prov.runoff(times[rows]).double().cpu().numpy()
    return CatchmentRunoff(cats, times, prov.units, read)


def build_runoff(section, network: RiverNetwork, base: Path) -> CatchmentRunoff:
    """Resolve ``runoff.kind`` in the provider registry and build it."""
    import importlib

    from ..config.runoff import RUNOFF_PROVIDERS

    mod, fn = RUNOFF_PROVIDERS[section.kind][1].split(":")
    return getattr(importlib.import_module(mod), fn)(section, network, base)


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")


def _period(times: pd.DatetimeIndex, period, step_s: float | None) -> tuple[slice, pd.DatetimeIndex, float]:
    """Rows of the runoff in the period, their stamps (UTC) and the row interval (s)."""
    t = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    if len(t) < 1:
        raise ValueError("the runoff has no times")
    d = np.asarray((t[1:] - t[:-1]).total_seconds(), dtype=np.float64)
    if len(d) and not np.all(d == d[0]):
        bad = int(np.argmax(d != d[0]))
        raise ValueError(f"runoff times are not evenly spaced: {t[bad]} -> {t[bad + 1]} after {d[0]:g} s steps")
    step = float(d[0]) if len(d) else float(step_s or 3600.0)
    if step_s is not None and abs(step - step_s) > 1e-6 and len(d):
        raise ValueError(f"routing.forcing_dt_s is {step_s:g} s but the runoff rows are {step:g} s apart")
    i0 = 0 if period.start is None else int(t.searchsorted(_utc(period.start)))
    if i0 >= len(t) or (period.start is not None and t[i0] != _utc(period.start)):
        raise ValueError(f"period.start {period.start} is not a runoff time ({t[0]} .. {t[-1]}, every {step:g} s)")
    if period.steps is not None:
        i1 = i0 + period.steps
    elif period.end is not None:
        i1 = int(t.searchsorted(_utc(period.end), side="right"))
    else:
        i1 = len(t)
    if i1 > len(t) or i1 <= i0:
        raise ValueError(f"period ends after the runoff ({t[-1]}) or before it starts")
    return slice(i0, i1), t[i0:i1], step


def _reach_map(cfg, runoff: CatchmentRunoff, net: RiverNetwork, base: Path):
    """(CatchmentReachMap, area_km2 per catchment or None)."""
    from ..config.base import resolve_path
    from ..runoff import CatchmentReachMap

    m = cfg.mapping
    cats = list(runoff.catchment_ids)
    if m.id_replace:
        def rep(c):
            c = str(c)
            for a, b in m.id_replace.items():
                c = c.replace(a, b)
            return int(c) if net.ids.dtype.kind in "iu" and c.lstrip("-").isdigit() else c
        cats = [rep(c) for c in cats]
    reach_ids = net.ids.tolist()
    area = runoff.area_km2
    if m.kind == "id":
        cmap = CatchmentReachMap.one_to_one(cats, reach_ids)
        if area is None and runoff.units in _DEPTH_S:
            col = cfg.runoff.area
            if col not in net.attrs:
                raise NetworkError(f"runoff.units {runoff.units} needs the catchment area: the network has no "
                                   f"column '{col}' (set runoff.area)")
            area = net.attr(col)[np.asarray(net.positions(cats))]
        return cmap, area
    tab = pd.read_csv(resolve_path(m.table, base))
    cmap = CatchmentReachMap.from_table(tab, catchment_ids=cats, reach_ids=reach_ids, weight_col=m.weight_column,
                                        catchment_col=m.catchment_column, reach_col=m.reach_column)
    if area is None and runoff.units in _DEPTH_S:
        col = cfg.runoff.area
        if col not in tab:
            raise ValueError(f"runoff.units {runoff.units} needs the catchment area: the mapping table has no "
                             f"column '{col}' (set runoff.area)")
        area = tab.groupby(m.catchment_column)[col].first().reindex(cats).to_numpy(np.float64)
    return cmap, area


def runoff_factor(runoff: CatchmentRunoff, area) -> torch.Tensor:
    """Multiplier turning the provider's values into m3/s per catchment ([C] for depth rates, else a scalar)."""
    if runoff.units in _DEPTH_S:
        factor = torch.from_numpy(np.asarray(area, np.float64) * 1e3 / _DEPTH_S[runoff.units])  # mm*km2 -> m3
        if not torch.isfinite(factor).all() or (factor < 0).any():
            bad = [runoff.catchment_ids[i] for i in np.flatnonzero(~np.isfinite(area) | (area < 0))[:10]]
            raise ValueError(f"catchment area missing or negative for catchment(s) {bad}")
        return factor
    return torch.tensor(_CFS if runoff.units == "ft3/s" else 1.0, dtype=torch.float64)


def read_lateral_inflow(cfg, net: RiverNetwork, base: Path) -> tuple[pd.DatetimeIndex, float, torch.Tensor]:
    """The whole period's lateral inflow of a config with ``runoff``, ``mapping`` and ``period`` sections:
    ``(stamps [T] UTC, row interval s, q [T, N] m3/s float64 in network order)`` (memory T x N)."""
    runoff = build_runoff(cfg.runoff, net, base)
    try:
        rows, stamps, step = _period(runoff.times, cfg.period, None)
        cmap, area = _reach_map(cfg, runoff, net, base)
        q = cmap.apply(torch.from_numpy(runoff.read(rows)) * runoff_factor(runoff, area))
    finally:
        runoff.close()
    return stamps, step, q


def route_parameters(routing, net: RiverNetwork, base: Path | None = None) -> dict:
    """Routing parameters from the routing section: constants / network columns (``params``), a parameter file
    (``parameter_file``: reach_id + one column per parameter) and a trained run's parameter network
    (``run_dir``, if the section has it)."""
    from ..config.base import resolve_path

    out: dict = {}
    if routing.parameter_file:
        df = pd.read_csv(resolve_path(routing.parameter_file, base))
        if "reach_id" not in df:
            raise ValueError(f"routing.parameter_file {routing.parameter_file}: no reach_id column")
        ids = df["reach_id"].astype(str) if net.ids.dtype.kind in "OUS" else df["reach_id"]
        df = df.set_index(ids)
        missing = [i for i in net.ids if i not in df.index]
        if missing:
            raise NetworkError(f"routing.parameter_file has no row for reach(es) {missing[:10]} "
                               f"({len(missing)} in all)")
        from ..config.sections import mode_parameters

        for k in mode_parameters(routing.mode):
            if k in df:
                out[k] = torch.tensor(df.loc[net.ids, k].to_numpy(np.float64))
    for k, v in routing.params.items():
        if isinstance(v, str):
            if v not in net.attrs:
                raise NetworkError(f"routing.params.{k}: network has no column '{v}'")
            out[k] = torch.from_numpy(net.attr(v))
        else:
            out[k] = float(v)
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2 ** 20


def run_route(cfg, base: str | Path = ".") -> dict:
    """Run a validated :class:`rivergraph.config.route.RouteConfig`; relative paths from ``base`` (the config
    file's folder). Returns the summary (also written to ``output.dir/summary.json``)."""
    from ..config.base import resolve_path
    from ..datasets import resolve_network
    from ..io.atomic import atomic_path
    from ..io.state import load_state, save_state
    from ..io.writer import route_to_file
    from ..models.router import MuskingumCunge

    base = Path(base)
    r = cfg.routing
    params: dict = {}
    mode, dt_s = r.mode, r.dt_s
    if r.run_dir:
        from .train import run_parameters

        mode, dt_s, params = run_parameters(resolve_path(r.run_dir, base))
    ns = cfg.network
    net, _ = resolve_network(ns.source, base, ns.format, **ns.reader_kwargs())
    runoff = build_runoff(cfg.runoff, net, base)
    try:
        rows, stamps, step = _period(runoff.times, cfg.period, r.forcing_dt_s)
        cmap, area = _reach_map(cfg, runoff, net, base)
        factor = runoff_factor(runoff, area)
        router = MuskingumCunge(net, dt=dt_s, forcing_dt=step, mode=mode, scheme=r.scheme, output=r.output)
        params = {**route_parameters(r.model_copy(update={"mode": mode}), net, base), **params}
        state, hot = None, cfg.state.initial == "hot"
        if cfg.state.initial not in ("hot", "cold"):
            state, t_state = load_state(resolve_path(cfg.state.initial, base), net, mode)
            if t_state is not None and t_state.tz_convert("UTC") != stamps[0]:
                raise ValueError(f"state.initial is valid at {t_state}, the period starts at {stamps[0]}")
        out = Path(cfg.output.dir) if Path(cfg.output.dir).is_absolute() else base / cfg.output.dir
        cols = None
        if cfg.output.reaches != "all":
            ids = [int(x) if net.ids.dtype.kind in "iu" else str(x) for x in cfg.output.reaches]
            cols = np.asarray(net.positions(ids), dtype=np.int64)
        gauge_csv = out / cfg.output.gauges if cfg.output.gauges and len(net.gauges()) else None
        path = out / cfg.output.discharge if cfg.output.discharge else None
        if path is None and gauge_csv is None:
            raise ValueError("nothing to write: output.discharge is null and the network has no gauges")

        def forcing(t0: int, t1: int) -> torch.Tensor:
            vals = torch.from_numpy(runoff.read(slice(rows.start + t0, rows.start + t1)))
            if not torch.isfinite(vals).all():
                bad = np.flatnonzero(~torch.isfinite(vals).all(0).numpy())[:10]
                raise ValueError(f"runoff has missing values (NaN) for catchment(s) "
                                 f"{[runoff.catchment_ids[i] for i in bad]} in rows {t0}..{t1 - 1} of the period")
            return cmap.apply(vals * factor)

        s = route_to_file(router, forcing, path, times=stamps, n_steps=len(stamps), chunk_size=cfg.output.chunk_size,
                          reaches=cols, gauge_csv=gauge_csv, state=state, hot_start=hot, dtype=cfg.output.dtype,
                          progress=cfg.output.progress, variables=cfg.output.variables, **params)
    finally:
        runoff.close()
    final = None
    if cfg.state.final:
        final = save_state(s.state, net, resolve_path(cfg.state.final, base),
                           time=stamps[-1] + pd.Timedelta(seconds=step), mode=mode)
    b = s.balance
    summary = {"reaches": len(net), "steps": s.steps, "start": str(stamps[0]), "end": str(stamps[-1]),
               "forcing_dt_s": step, "dt_s": dt_s, "mode": mode, "chunks": s.chunks, "wall_s": s.seconds,
               "reach_steps_per_s": s.reach_steps_per_s, "peak_rss_mb": peak_rss_mb(),
               "discharge": None if path is None else str(path), "gauges": None if gauge_csv is None else str(gauge_csv),
               "final_state": None if final is None else str(final),
               "mass_balance": {"inflow_m3": b.inflow_m3, "outflow_m3": b.outflow_m3,
                                "storage_change_m3": b.storage_end_m3 - b.storage_start_m3, "residual_m3": b.residual_m3,
                                "relative_error": b.relative_error, "parameter_drift_m3": b.parameter_drift_m3,
                                "scheme_relative_error": b.scheme_relative_error}}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(f"routed {len(net)} reaches x {s.steps} steps ({stamps[0]:%Y-%m-%d %H:%M} .. {stamps[-1]:%Y-%m-%d %H:%M} "
          f"UTC) in {s.chunks} chunk(s), {s.seconds:.1f} s, {s.reach_steps_per_s:.3g} reach-steps/s, peak memory "
          f"{summary['peak_rss_mb']:.0f} MB\nmass balance: {b}")
    for k in ("discharge", "gauges", "final_state"):
        if summary[k]:
            print(f"{k} -> {summary[k]}")
    return summary
