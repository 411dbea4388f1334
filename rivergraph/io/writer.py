"""Streaming a routing run to disk: :func:`route_to_file` routes lateral inflow in time chunks, carrying
``router.state`` from one chunk to the next (identical to one long call), and appends every chunk to the one
CF output (:mod:`rivergraph.io.cf`) and gauge CSV (:mod:`rivergraph.io.gauges`), so neither the routed flow
nor (with a callable forcing) the lateral inflow of a long run is ever held whole in memory.
"""
from __future__ import annotations

import time as _time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..models.router import MassBalance, MuskingumCunge, RoutingState
from .cf import TIME_UNITS, CFWriter
from .gauges import GaugeCSVWriter, read_gauge_csv

__all__ = ["route_to_file", "OutputSummary", "read_gauge_csv", "TIME_UNITS", "default_chunk_size"]

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
    network_reaches: int = 0

    @property
    def reach_steps_per_s(self) -> float:
        """Routed reach-steps (all reaches of the network) per second of wall time."""
        return self.steps * max(self.network_reaches, self.reaches) / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        s = (f"wrote {self.steps} steps x {self.reaches} reaches to {self.path} in {self.chunks} chunk(s), "
             f"{self.seconds:.1f} s ({self.reach_steps_per_s:.3g} reach-steps/s)")
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
    return pd.date_range(t0, periods=n_rows, freq=pd.Timedelta(seconds=step_s))


def _router_attrs(router: MuskingumCunge) -> tuple[dict, dict]:
    method = {"mean": "time: mean", "end": "time: point", "rapid": "time: mean"}[router.output]
    glob = {"title": "rivergraph routed discharge",
            "source": f"rivergraph MuskingumCunge (mode {router.mode}, scheme {router.scheme}, dt {router.dt} s)",
            "history": f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%SZ} rivergraph.io.route_to_file"}
    var = {"streamflow": {"cell_methods": method, "routing_mode": router.mode, "routing_dt_s": router.dt}}
    return glob, var


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


def default_chunk_size(net, budget_bytes: int = 64 << 20) -> int:
    """Forcing rows per chunk: ``2 x depth`` (at least 24; the wavefront sweeps ``rows + depth`` diagonals per
    call, so much shorter chunks are slow), capped so one [rows, N] float64 array stays within ``budget_bytes``."""
    return max(1, min(max(24, 2 * net.depth), budget_bytes // (8 * len(net))))


def route_to_file(router: MuskingumCunge, forcing: Forcing, path: str | Path, *,
                  times: Sequence | pd.DatetimeIndex | None = None, start=None, n_steps: int | None = None,
                  chunk_size: int | None = None, reaches: Sequence[int] | None = None, gauge_csv: str | Path | None = None,
                  gauges: pd.Series | None = None, state: RoutingState | None = None, hot_start: bool = True,
                  dtype: str = "float32", progress: bool = False, attrs: dict | None = None,
                  variables: Sequence[str] = ("streamflow",), **params) -> OutputSummary:
    """Route ``forcing`` chunk by chunk and stream the discharge to a CF netCDF (``.nc``) or zarr (``.zarr``).

    Args:
        router: the router (its ``forcing_dt`` is the interval of each forcing / output row, s).
        forcing: lateral inflow (m3/s) [T, N] in network order, or a callable ``forcing(t0, t1) -> [t1-t0, N]``
            returning rows t0..t1-1 (then only one chunk of forcing is in memory at a time; needs ``n_steps``).
        path: output file; the suffix picks the format (``.nc``/``.nc4``/``.netcdf`` or ``.zarr``); ``None``
            writes no reach file (only gauges).
        times: time stamp (UTC) of each forcing row; or ``start`` (first row) with rows ``forcing_dt`` apart.
        n_steps: rows to route (default: all rows of a tensor forcing).
        chunk_size: forcing rows routed and written per chunk (memory ~ chunk_size x N); default
            :func:`default_chunk_size`, never more than the run.
        reaches: reach positions to write (default all); routing only what is needed to get them is cheaper.
        gauge_csv: also write the gauge CSV (:mod:`rivergraph.io.gauges`) at ``gauges`` (position -> gauge id;
            default the network's gauged reaches).
        state, hot_start: initial state, as for :meth:`MuskingumCunge.forward`.
        dtype: on-disk dtype of ``streamflow`` (``float32`` or ``float64``).
        progress: show a progress bar (simulated time, reach-steps/s).
        attrs: extra global attributes of the output file.
        variables: written variables: ``streamflow`` and optionally ``q_lateral`` (the forcing, m3/s).
        **params: routing parameters (tensors are used as they are; gradients are not tracked).
    Returns:
        :class:`OutputSummary`; ``summary.state`` continues the run.
    """
    net = router.network
    N = len(net)
    get_rows, T = _forcing_rows(forcing, n_steps)
    if T < 1:
        raise ValueError("nothing to route: the forcing has no rows")
    chunk_size = default_chunk_size(net) if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    stamps = _times(times, start, T, router.dt * router.nsub)
    cols = np.arange(N) if reaches is None else np.asarray(list(reaches), dtype=np.int64)
    if gauge_csv is not None:
        gauges = net.gauges() if gauges is None else gauges
        if gauges.empty:
            raise ValueError("gauge_csv was asked for but the network has no gauged reaches (empty 'gage' column)")
    else:
        gauges = pd.Series(dtype=object)
    g_pos = gauges.index.to_numpy(np.int64)
    route_cols = None if reaches is None else np.unique(np.concatenate([cols, g_pos]))
    where = (lambda p: p) if route_cols is None else (lambda p: np.searchsorted(route_cols, p))
    params = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in params.items()}
    glob, var_attrs = _router_attrs(router)

    from tqdm.auto import tqdm

    t_start = _time.perf_counter()
    inflow = outflow = drift = 0.0
    s_start = s_end = None
    n_chunks = 0
    with ExitStack() as stack:
        writer = None
        if path is not None:
            writer = stack.enter_context(CFWriter(path, net, list(variables), reaches=cols, dtype=dtype,
                                                  attrs={**glob, **(attrs or {})}, variable_attrs=var_attrs))
        gcsv = None if gauge_csv is None else stack.enter_context(
            GaugeCSVWriter(gauge_csv, gauges.to_numpy(dtype=str), net.ids[g_pos]))
        name = Path(path).name if path is not None else Path(gauge_csv).name
        bar = stack.enter_context(tqdm(total=T, unit="step", desc=f"routing -> {name}", disable=not progress))
        for t0 in range(0, T, chunk_size):
            t1 = min(T, t0 + chunk_size)
            q = torch.as_tensor(get_rows(t0, t1))
            if q.shape != (t1 - t0, N):
                raise ValueError(f"forcing rows {t0}..{t1 - 1}: expected shape ({t1 - t0}, {N}), "
                                 f"got {tuple(q.shape)}")
            with torch.no_grad():
                Q = router(q, state=state, hot_start=hot_start, output_positions=route_cols, **params)
            state = router.state
            Qn = Q.detach().cpu().numpy()
            if writer is not None:
                extra = {"q_lateral": q[:, torch.from_numpy(cols)]} if "q_lateral" in variables else {}
                writer.append(stamps[t0:t1], streamflow=Qn[:, where(cols)], **extra)
            if gcsv is not None:
                gcsv.append(stamps[t0:t1], Qn[:, where(g_pos)])
            b = router.balance
            inflow, outflow, drift = inflow + b.inflow_m3, outflow + b.outflow_m3, drift + b.parameter_drift_m3
            s_start = b.storage_start_m3 if s_start is None else s_start
            s_end = b.storage_end_m3
            n_chunks += 1
            rate = t1 * N / max(_time.perf_counter() - t_start, 1e-9)
            bar.set_postfix_str(f"{stamps[t1 - 1]:%Y-%m-%d %H:%M}Z, {rate:.3g} reach-steps/s", refresh=False)
            bar.update(t1 - t0)
    balance = MassBalance(inflow, outflow, s_start, s_end, drift)
    return OutputSummary(None if path is None else Path(path), None if gauge_csv is None else Path(gauge_csv), T,
                         len(cols), n_chunks, _time.perf_counter() - t_start, balance, state, N)
