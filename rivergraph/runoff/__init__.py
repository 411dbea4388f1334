"""Runoff for river routing: pretrained neuralhydrology LSTMs, unit conversion, disaggregation in time,
catchment-to-reach mapping and runoff providers that hand lateral inflow (m3/s) to a router.

Pieces (see ``docs/runoff.md`` for the full description and measured skill):

* :class:`NeuralHydrologyLSTM` loads a neuralhydrology run directory *as it is* (``config.yml``,
  ``model_epochNNN.pt``, ``train_data/train_data_scaler.yml``) and runs it in neuralhydrology's
  windowed mode or in a stateful sequential mode. The run-directory format and the CudaLSTM
  architecture are those of neuralhydrology (Kratzert, F., Gauch, M., Klotz, D. and Nearing, G. (2022):
  NeuralHydrology -- A Python library for Deep Learning research in hydrology, Journal of Open Source
  Software 7(71), 4050, https://doi.org/10.21105/joss.04050). This is an independent implementation; it
  does not import neuralhydrology.
* :func:`depth_rate_to_discharge` converts runoff depth rates (mm/h, mm/day) over a catchment area
  (km2) to discharge (m3/s).
* :func:`daily_to_hourly`, :func:`daily_forcing_to_hourly`, :func:`hourly_to_daily` move between local
  daily series and hourly UTC series (documented, simple disaggregation choices).
* :class:`CatchmentReachMap` maps catchment runoff ``[T, C]`` to reach lateral inflow ``[T, N]``.
* :class:`RunoffProvider` is the interface a router consumes:
  ``lateral_inflow(times, reach_ids) -> torch.Tensor [T, N]`` in m3/s, implemented by
  :class:`PrecomputedRunoff` (netCDF / CSV / parquet tables) and :class:`LSTMRunoff` (differentiable).
* ``read_camels_*`` read the CAMELS-US text files (Daymet forcing, USGS streamflow, attributes).

Time conventions: hourly series carry a tz-aware UTC :class:`pandas.DatetimeIndex` (naive input indexes
are taken to be UTC); a label marks the *start* of its interval (the value at 05:00 covers
05:00-06:00). Daily series carry naive local calendar dates; ``utc_offset_hours`` (local standard time
minus UTC, e.g. -5 for US Eastern Standard Time) connects the two.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

__all__ = [
    "RunoffError",
    "NeuralHydrologyLSTM",
    "load_neuralhydrology_run",
    "depth_rate_to_discharge",
    "discharge_to_depth_rate",
    "daily_to_hourly",
    "daily_forcing_to_hourly",
    "hourly_to_daily",
    "CatchmentReachMap",
    "RunoffProvider",
    "PrecomputedRunoff",
    "LSTMRunoff",
    "read_camels_daymet",
    "read_camels_streamflow",
    "read_camels_attributes",
    "CFS_TO_M3S",
    "NEURALHYDROLOGY_CITATION",
]

NEURALHYDROLOGY_CITATION = (
    "Kratzert, F., Gauch, M., Klotz, D. and Nearing, G. (2022): NeuralHydrology -- A Python library for "
    "Deep Learning research in hydrology. Journal of Open Source Software, 7(71), 4050, "
    "https://doi.org/10.21105/joss.04050")

CFS_TO_M3S = 0.0283168
"""Cubic feet per second to m3/s (0.3048**3 = 0.028316846592, rounded as USGS does)."""

_HOUR = pd.Timedelta(hours=1)


class RunoffError(ValueError):
    """Raised for invalid runoff inputs; the message names the offending column, id, time or file."""


def _fmt(items: Iterable, limit: int = 8) -> str:
    items = list(items)
    s = ", ".join(repr(i) for i in items[:limit])
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _id_hint(missing: Sequence, known: Sequence) -> str:
    """A hint when ids fail to match only because of their type (e.g. '10' vs 10)."""
    known_s = {str(k) for k in known}
    if any(str(m) in known_s for m in missing):
        return (" (the ids match as strings: check the id dtype, e.g. str '01022500' vs int 1022500; "
                f"given {type(missing[0]).__name__}, known {type(next(iter(known))).__name__})")
    return ""


def _as_utc(index: pd.Index | Sequence, what: str = "times") -> pd.DatetimeIndex:
    """A tz-aware UTC DatetimeIndex; naive timestamps are taken to be UTC."""
    try:
        idx = pd.DatetimeIndex(index)
    except (TypeError, ValueError) as e:
        raise RunoffError(f"{what}: cannot be read as a DatetimeIndex ({e})") from None
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


# =============================================================================================== units
_DEPTH_RATE_SECONDS = {"mm/h": 3600.0, "mm/hr": 3600.0, "mm/d": 86400.0, "mm/day": 86400.0,
                       "mm/s": 1.0}


def _rate_seconds(units: str) -> float:
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
    factor = 1e3 / _rate_seconds(units)  # 1e-3 m/mm * 1e6 m2/km2 / seconds
    return runoff * _area_like(area_km2, runoff) * factor


def discharge_to_depth_rate(discharge, area_km2, units: str = "mm/h"):
    """Inverse of :func:`depth_rate_to_discharge`: discharge (m3/s) over ``area_km2`` -> depth rate in
    ``units`` (mm/h or mm/day)."""
    factor = 1e3 / _rate_seconds(units)
    return discharge / (_area_like(area_km2, discharge) * factor)


# ================================================================================ time (dis)aggregation
def _daily_index(index: pd.Index, what: str) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        raise RunoffError(f"{what}: daily data must be indexed by naive local calendar dates, got tz={idx.tz}")
    if len(idx) and (idx != idx.normalize()).any():
        raise RunoffError(f"{what}: daily index has times of day (e.g. {idx[idx != idx.normalize()][0]}); "
                          "give calendar dates (normalize() them)")
    if len(idx) > 1 and not (np.diff(idx.as_unit("ns").asi8) == pd.Timedelta(days=1).value).all():
        raise RunoffError(f"{what}: daily index must be consecutive days without gaps or duplicates")
    return idx


def _hourly_utc_from_days(days: pd.DatetimeIndex, utc_offset_hours: float) -> pd.DatetimeIndex:
    start = days[0] - pd.Timedelta(hours=utc_offset_hours)  # local midnight in UTC
    return pd.date_range(start, periods=24 * len(days), freq="h", tz="UTC")


def daily_to_hourly(daily: pd.Series | pd.DataFrame, utc_offset_hours: float = 0.0
                    ) -> pd.Series | pd.DataFrame:
    """Disaggregate daily *rates* (mm/h, m3/s, K, ...) to hourly by holding each day's value for the
    24 hours of that local day (uniform disaggregation: the daily mean is preserved exactly).

    A daily depth (mm/day) must be converted to a rate first (divide by 24 for mm/h) or use
    :func:`daily_forcing_to_hourly`.

    Args:
        daily: values indexed by naive local calendar dates (consecutive days).
        utc_offset_hours: local standard time minus UTC in hours (e.g. -5 for US Eastern Standard).

    Returns:
        Hourly values on a tz-aware UTC index whose labels are interval starts; the first label is
        local midnight of the first day, expressed in UTC.
    """
    days = _daily_index(daily.index, "daily_to_hourly")
    out = daily.iloc[np.repeat(np.arange(len(daily)), 24)].copy()
    out.index = _hourly_utc_from_days(days, utc_offset_hours)
    return out


def daily_forcing_to_hourly(daily: pd.DataFrame, utc_offset_hours: float = 0.0, *,
                            prcp: str = "prcp(mm/day)", tmin: str = "tmin(C)", tmax: str = "tmax(C)",
                            temperature: Literal["sinusoid", "mean"] = "sinusoid",
                            peak_hour: float = 15.0, precip_hours: int = 24, precip_start_hour: int = 0,
                            names: tuple[str, str] = ("APCP_surface", "TMP_2maboveground"),
                            ) -> pd.DataFrame:
    """Daily Daymet-style forcing -> hourly precipitation rate (mm/h) and air temperature (K), the
    inputs of an hourly model trained on AORC (``APCP_surface``, ``TMP_2maboveground``).

    Choices (simplifications, stated):

    * Precipitation: the daily total is spread uniformly over the 24 local hours (``prcp / 24`` mm/h).
      Real rain falls in bursts, so hourly intensities are underestimated and an hourly model sees a
      smoother input than in training; the daily total is preserved exactly. ``precip_hours < 24``
      instead puts the whole daily total, uniformly, into the ``precip_hours`` local hours starting at
      ``precip_start_hour`` (a crude storm; for sensitivity studies -- see ``docs/runoff.md``).
    * Temperature (``'sinusoid'``, default): ``T(h) = (tmax + tmin)/2 + (tmax - tmin)/2 *
      cos(2 pi (h + 0.5 - peak_hour) / 24)`` for local-standard-time hour ``h`` (evaluated at the
      interval midpoint), peaking at ``peak_hour`` (15:00) and lowest 12 h earlier; its daily mean is
      exactly ``(tmax + tmin)/2``. Local standard time stands in for local solar time (within about
      half an hour inside a time zone). ``'mean'`` holds ``(tmax + tmin)/2`` for the whole day.
      Converted to kelvin (+273.15).

    Args:
        daily: daily forcing indexed by naive local calendar dates, with columns ``prcp`` (mm/day),
            ``tmin`` and ``tmax`` (deg C).
        utc_offset_hours: local standard time minus UTC (e.g. -5 for US Eastern Standard Time).
        prcp, tmin, tmax: column names in ``daily``.
        temperature: ``'sinusoid'`` or ``'mean'``.
        peak_hour: local hour of the daily temperature maximum.
        precip_hours, precip_start_hour: the local hours holding each day's precipitation
            (default: all 24).
        names: output column names for precipitation (mm/h) and temperature (K).

    Returns:
        Hourly DataFrame on a tz-aware UTC index (labels are interval starts).
    """
    precip_hours, precip_start_hour = int(precip_hours), int(precip_start_hour)
    if not (1 <= precip_hours <= 24 and 0 <= precip_start_hour and precip_start_hour + precip_hours <= 24):
        raise RunoffError(f"precipitation hours [{precip_start_hour}, {precip_start_hour + precip_hours}) must "
                          "lie within the local day [0, 24)")
    for col in (prcp, tmin, tmax):
        if col not in daily.columns:
            raise RunoffError(f"daily forcing has no column {col!r}; columns are {_fmt(daily.columns, 20)}")
    if temperature not in ("sinusoid", "mean"):
        raise RunoffError(f"temperature must be 'sinusoid' or 'mean', got {temperature!r}")
    days = _daily_index(daily.index, "daily_forcing_to_hourly")
    rep = np.repeat(np.arange(len(daily)), 24)
    hour = np.tile(np.arange(24, dtype=float), len(daily))
    wet = (hour >= precip_start_hour) & (hour < precip_start_hour + precip_hours)
    p = np.where(wet, daily[prcp].to_numpy(dtype=float)[rep] / precip_hours, 0.0)
    lo = daily[tmin].to_numpy(dtype=float)[rep]
    hi = daily[tmax].to_numpy(dtype=float)[rep]
    t = 0.5 * (lo + hi)
    if temperature == "sinusoid":
        t = t + 0.5 * (hi - lo) * np.cos(2 * np.pi * (hour + 0.5 - peak_hour) / 24.0)
    return pd.DataFrame({names[0]: p, names[1]: t + 273.15},
                        index=_hourly_utc_from_days(days, utc_offset_hours))


def hourly_to_daily(hourly: pd.Series | pd.DataFrame, utc_offset_hours: float = 0.0,
                    min_hours: int = 24) -> pd.Series | pd.DataFrame:
    """Average hourly rates over local calendar days (the inverse of :func:`daily_to_hourly`).

    Args:
        hourly: values on a UTC (or naive = UTC) hourly index, labels = interval starts.
        utc_offset_hours: local standard time minus UTC.
        min_hours: days with fewer non-NaN hours than this are NaN (24: only complete days).

    Returns:
        Daily means indexed by naive local calendar dates.
    """
    idx = _as_utc(hourly.index, "hourly_to_daily")
    local = (idx + pd.Timedelta(hours=utc_offset_hours)).tz_localize(None)
    h = hourly.copy()
    h.index = local
    grouped = h.groupby(local.normalize())
    mean, count = grouped.mean(), grouped.count()
    out = mean.where(count >= min_hours)
    out.index = pd.DatetimeIndex(out.index)
    out.index.name = "date"
    return out


# ========================================================================== neuralhydrology LSTM model
_SUPPORTED_MODELS = ("cudalstm",)
_ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU, "softplus": nn.Softplus}


class _RegressionHead(nn.Module):
    """neuralhydrology's regression head: ``net = Sequential(Linear(hidden, n_targets)[, activation])``
    (state-dict keys ``head.net.0.weight``, ``head.net.0.bias``)."""

    def __init__(self, hidden: int, n_out: int, activation: str = "linear"):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(hidden, n_out)]
        if activation != "linear":
            layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _units_from_target(name: str) -> str | None:
    m = re.search(r"\((mm/h|mm/hr|mm/d|mm/day)\)\s*$", name)
    return m.group(1) if m else None


def _scaler_value(section: dict, name: str, what: str, path: Path) -> float:
    """A scalar from an xarray ``Dataset.to_dict()`` section of the scaler file."""
    data_vars = section.get("data_vars", section)
    if name not in data_vars:
        raise RunoffError(f"{path}: {what} has no entry for {name!r}; it has {_fmt(data_vars, 20)}")
    v = data_vars[name]
    v = v.get("data") if isinstance(v, dict) else v
    arr = np.asarray(v, dtype=float)
    if arr.size != 1:
        raise RunoffError(f"{path}: {what} for {name!r} is not a scalar (per-basin scaling is not supported)")
    return float(arr.reshape(()))


class NeuralHydrologyLSTM(nn.Module):
    """A neuralhydrology ``cudalstm`` model with its input/output scaling, in physical units.

    Architecture (neuralhydrology's CudaLSTM, Kratzert et al. 2022, without embedding layers):
    ``lstm = nn.LSTM(input_size = n_dynamic + n_static, hidden_size)`` over time, the static attributes
    repeated at every time step after the dynamic inputs (dynamic inputs in config order, then static
    attributes in config order), ``dropout(output_dropout)`` (active only in training mode) and a
    regression ``head`` = ``Linear(hidden_size, n_targets)`` (+ output activation).

    Scaling: ``x_scaled = (x - center) / scale`` with the scaler's ``xarray_feature_center/scale`` for
    dynamic inputs and ``attribute_means/stds`` for static attributes; the head's output is de-scaled
    with the target's entries, ``y = y_scaled * scale + center``. Targets listed in the config's
    ``clip_targets_to_zero`` are clipped at 0 after de-scaling (neuralhydrology applies this when
    evaluating; it is part of the model's output here, and it zeros the gradient where it binds).

    Inputs use physical units as in training: for the NWM/AORC hourly model, ``APCP_surface`` is a
    precipitation rate in mm/h (kg m-2 per hour) and ``TMP_2maboveground`` is air temperature in K;
    ``elev_mean`` (m) and ``slope_mean`` (m/km) are CAMELS attributes.

    Build with :meth:`from_run_dir`. Tensors are batch-first: dynamic ``[B, T, F_dyn]``, static
    ``[B, F_stat]``, outputs ``[B, T, n_targets]`` in target units (e.g. mm/h).
    """

    def __init__(self, dynamic_inputs: Sequence[str], static_attributes: Sequence[str],
                 target_variables: Sequence[str], hidden_size: int, seq_length: int,
                 dynamic_center: Sequence[float], dynamic_scale: Sequence[float],
                 static_center: Sequence[float], static_scale: Sequence[float],
                 target_center: Sequence[float], target_scale: Sequence[float],
                 clip_targets_to_zero: Sequence[str] = (), output_activation: str = "linear",
                 output_dropout: float = 0.0, freq: pd.Timedelta = _HOUR, config: dict | None = None):
        super().__init__()
        if output_activation not in _ACTIVATIONS:
            raise RunoffError(f"output_activation {output_activation!r} is not supported; "
                              f"supported: {sorted(_ACTIVATIONS)}")
        self.dynamic_inputs = list(dynamic_inputs)
        self.static_attributes = list(static_attributes)
        self.target_variables = list(target_variables)
        self.hidden_size = int(hidden_size)
        self.seq_length = int(seq_length)
        self.freq = pd.Timedelta(freq)
        self.config = dict(config or {})
        self.clip_targets_to_zero = [t for t in clip_targets_to_zero if t in self.target_variables]
        n_in = len(self.dynamic_inputs) + len(self.static_attributes)
        self.lstm = nn.LSTM(input_size=n_in, hidden_size=self.hidden_size)
        self.dropout = nn.Dropout(p=float(output_dropout))
        self.head = _RegressionHead(self.hidden_size, len(self.target_variables), output_activation)
        f32 = torch.float32
        self.register_buffer("dyn_center", torch.tensor(list(dynamic_center), dtype=f32))
        self.register_buffer("dyn_scale", torch.tensor(list(dynamic_scale), dtype=f32))
        self.register_buffer("stat_center", torch.tensor(list(static_center), dtype=f32).reshape(-1))
        self.register_buffer("stat_scale", torch.tensor(list(static_scale), dtype=f32).reshape(-1))
        self.register_buffer("target_center", torch.tensor(list(target_center), dtype=f32))
        self.register_buffer("target_scale", torch.tensor(list(target_scale), dtype=f32))
        self.register_buffer("clip_mask", torch.tensor([t in self.clip_targets_to_zero
                                                        for t in self.target_variables]))
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None  # for run_stateful

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def from_run_dir(cls, run_dir: str | Path, epoch: int | None = None,
                     map_location: str | torch.device = "cpu") -> "NeuralHydrologyLSTM":
        """Load a neuralhydrology run directory as it is.

        Reads ``config.yml``, the weights ``model_epochNNN.pt`` (the highest epoch unless ``epoch`` is
        given; loaded with ``torch.load(weights_only=True)``) and ``train_data/train_data_scaler.yml``.
        Supported: ``model: cudalstm`` with a ``regression`` head (linear/relu/softplus output), one
        time frequency, dynamic inputs and static attributes without embedding networks. Anything else
        (other model types, multi-frequency inputs, embeddings, basin one-hot encoding, hydroatlas or
        evolving attributes, lagged features, pickle-only scalers) raises :class:`RunoffError`.

        Returns the model in eval mode (no dropout), float32, on ``map_location``.
        """
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.yml"
        if not cfg_path.is_file():
            raise RunoffError(f"{run_dir}: not a neuralhydrology run directory (no config.yml)")
        with open(cfg_path) as f:
            cfg = yaml.safe_load(f) or {}

        model_type = str(cfg.get("model", "")).lower()
        if model_type not in _SUPPORTED_MODELS:
            raise RunoffError(f"{cfg_path}: model type {cfg.get('model')!r} is not supported; "
                              f"supported: {', '.join(_SUPPORTED_MODELS)}")
        head = str(cfg.get("head", "regression")).lower()
        if head != "regression":
            raise RunoffError(f"{cfg_path}: head {cfg.get('head')!r} is not supported; supported: regression")
        unsupported = {
            "statics_embedding": "embedding networks", "dynamics_embedding": "embedding networks",
            "embedding_hiddens": "embedding networks", "use_basin_id_encoding": "basin one-hot encoding",
            "hydroatlas_attributes": "hydroatlas attributes", "evolving_attributes": "evolving attributes",
            "lagged_features": "lagged features", "autoregressive_inputs": "autoregressive inputs",
        }
        for key, what in unsupported.items():
            if cfg.get(key):
                raise RunoffError(f"{cfg_path}: {key!r} is set ({what}); not supported by this loader")
        dyn = cfg.get("dynamic_inputs") or []
        if isinstance(dyn, dict) or (dyn and isinstance(dyn[0], list)) or \
                len(cfg.get("use_frequencies") or []) > 1:
            raise RunoffError(f"{cfg_path}: multi-frequency inputs (MTS-LSTM style) are not supported")
        statics = list(cfg.get("static_attributes") or cfg.get("camels_attributes") or [])
        targets = list(cfg.get("target_variables") or [])
        if not dyn or not targets:
            raise RunoffError(f"{cfg_path}: needs dynamic_inputs and target_variables")

        # ---- weights
        if epoch is None:
            found = sorted((int(m.group(1)), p) for p in run_dir.glob("model_epoch*.pt")
                           if (m := re.fullmatch(r"model_epoch(\d+)\.pt", p.name)))
            if not found:
                raise RunoffError(f"{run_dir}: no model_epochNNN.pt weight files")
            epoch, wpath = found[-1]
        else:
            wpath = run_dir / f"model_epoch{int(epoch):03d}.pt"
            if not wpath.is_file():
                avail = sorted(p.name for p in run_dir.glob("model_epoch*.pt"))
                raise RunoffError(f"{run_dir}: no weights for epoch {epoch} ({wpath.name}); available: "
                                  f"{_fmt(avail)}")
        try:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling errors, corrupt files
            raise RunoffError(f"{wpath}: cannot load weights safely (weights_only=True): {e}") from None
        if not isinstance(state, Mapping):
            raise RunoffError(f"{wpath}: expected a state_dict, got {type(state).__name__}")
        hidden = int(cfg.get("hidden_size", 0))
        w_ih = state.get("lstm.weight_ih_l0")
        if w_ih is None:
            raise RunoffError(f"{wpath}: no 'lstm.weight_ih_l0' (keys: {_fmt(state.keys())}); "
                              "not a CudaLSTM state_dict")
        if w_ih.shape != (4 * hidden, len(dyn) + len(statics)):
            raise RunoffError(
                f"{wpath}: lstm.weight_ih_l0 has shape {tuple(w_ih.shape)}, expected "
                f"({4 * hidden}, {len(dyn) + len(statics)}) for hidden_size {hidden}, "
                f"{len(dyn)} dynamic inputs and {len(statics)} static attributes")

        # ---- scaler
        scaler_path = run_dir / "train_data" / "train_data_scaler.yml"
        if not scaler_path.is_file():
            pickled = run_dir / "train_data" / "train_data_scaler.p"
            extra = (f" (only {pickled.name} exists: pickled scalers are not loaded, as unpickling can run "
                     "code; re-save it as YAML with a current neuralhydrology)") if pickled.exists() else ""
            raise RunoffError(f"{run_dir}: no train_data/train_data_scaler.yml{extra}")
        with open(scaler_path) as f:
            scaler = yaml.safe_load(f) or {}
        center = scaler.get("xarray_feature_center", {})
        scale = scaler.get("xarray_feature_scale", {})
        a_means = scaler.get("attribute_means", scaler.get("camels_attr_means", {})) or {}
        a_stds = scaler.get("attribute_stds", scaler.get("camels_attr_stds", {})) or {}
        for name in statics:
            if name not in a_means or name not in a_stds:
                raise RunoffError(f"{scaler_path}: no attribute mean/std for static attribute {name!r}")
        freq = _HOUR
        freqs = cfg.get("use_frequencies") or []
        if freqs:
            freq = pd.Timedelta(pd.tseries.frequencies.to_offset(str(freqs[0]).replace("H", "h")))
        elif "hourly" not in str(cfg.get("dataset", "")).lower() and not any(
                _units_from_target(t) in ("mm/h", "mm/hr") for t in targets):
            freq = pd.Timedelta(days=1)

        model = cls(
            dynamic_inputs=dyn, static_attributes=statics, target_variables=targets,
            hidden_size=hidden, seq_length=int(cfg.get("seq_length", 1)),
            dynamic_center=[_scaler_value(center, n, "xarray_feature_center", scaler_path) for n in dyn],
            dynamic_scale=[_scaler_value(scale, n, "xarray_feature_scale", scaler_path) for n in dyn],
            static_center=[float(a_means[n]) for n in statics],
            static_scale=[float(a_stds[n]) for n in statics],
            target_center=[_scaler_value(center, n, "xarray_feature_center", scaler_path) for n in targets],
            target_scale=[_scaler_value(scale, n, "xarray_feature_scale", scaler_path) for n in targets],
            clip_targets_to_zero=list(cfg.get("clip_targets_to_zero") or []),
            output_activation=str(cfg.get("output_activation", "linear")).lower(),
            output_dropout=float(cfg.get("output_dropout", 0.0) or 0.0), freq=freq, config=cfg,
        )
        expected = {k for k in model.state_dict() if k.startswith(("lstm.", "head."))}
        got = set(state.keys())
        if got != expected:
            raise RunoffError(f"{wpath}: state_dict keys do not match a {model_type} with a regression head: "
                              f"unexpected {_fmt(sorted(got - expected))}; missing {_fmt(sorted(expected - got))}")
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
        model.epoch = int(epoch)
        model.run_dir = run_dir
        return model.to(map_location).eval()

    def extra_repr(self) -> str:
        return (f"dynamic_inputs={self.dynamic_inputs}, static_attributes={self.static_attributes}, "
                f"targets={self.target_variables}, seq_length={self.seq_length}, freq={self.freq}")

    @property
    def target_units(self) -> str | None:
        """Units parsed from the (first) target name, e.g. ``'mm/h'`` for ``QObs(mm/h)``."""
        return _units_from_target(self.target_variables[0])

    # ------------------------------------------------------------------------------ inputs
    def inputs_from_frames(self, forcing: Mapping[object, pd.DataFrame] | pd.DataFrame,
                           attributes: pd.DataFrame | None, ids: Sequence | None = None,
                           check_ranges: bool = True,
                           ) -> tuple[pd.DatetimeIndex, torch.Tensor, torch.Tensor]:
        """Arrange pandas inputs into tensors in neuralhydrology's order, with clear errors.

        Args:
            forcing: ``{catchment id: DataFrame}`` with one column per dynamic input (by name, in
                physical units, extra columns ignored) on a common regular index; a single DataFrame
                is one catchment.
            attributes: static attributes, one row per catchment id (index), one column per attribute.
            ids: catchment order (default: the forcing mapping's order).
            check_ranges: warn when a dynamic input's mean is more than 3 training standard deviations
                from the training centre (usually wrong units, e.g. deg C for a kelvin input).

        Returns:
            ``(times (UTC), x_dyn [C, T, F_dyn] float32, x_stat [C, F_stat] float32)``.
        """
        if isinstance(forcing, pd.DataFrame):
            forcing = {0: forcing}
        ids = list(forcing.keys()) if ids is None else list(ids)
        missing_ids = [i for i in ids if i not in forcing]
        if missing_ids:
            raise RunoffError(f"no forcing for catchment(s) {_fmt(missing_ids)}{_id_hint(missing_ids, list(forcing))}")
        times = None
        arrays = []
        for cid in ids:
            df = forcing[cid]
            miss = [c for c in self.dynamic_inputs if c not in df.columns]
            if miss:
                raise RunoffError(f"forcing for catchment {cid!r} lacks dynamic input column(s) {_fmt(miss)} "
                                  f"(model inputs, in order: {self.dynamic_inputs}; columns given: "
                                  f"{_fmt(df.columns, 20)})")
            idx = _as_utc(df.index, f"forcing index of catchment {cid!r}")
            if times is None:
                times = idx
            elif not idx.equals(times):
                raise RunoffError(f"forcing for catchment {cid!r} has a different time index than catchment "
                                  f"{ids[0]!r}; align them first")
            vals = df[self.dynamic_inputs].to_numpy(dtype=np.float32)
            bad = ~np.isfinite(vals)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise RunoffError(f"forcing for catchment {cid!r}: non-finite value in column "
                                  f"{self.dynamic_inputs[c]!r} at {times[r]} ({int(bad.sum())} in all); "
                                  "fill gaps first (the LSTM state would carry NaN on)")
            arrays.append(vals)
        if times is None:
            raise RunoffError("no catchments given")
        if len(times) > 1:
            steps = np.diff(times.as_unit("ns").asi8)
            if not (steps == self.freq.value).all():
                raise RunoffError(f"forcing index must be regular with step {self.freq} (the model's frequency);"
                                  f" found steps {sorted(set(pd.to_timedelta(steps).astype(str)))[:5]}")
        x_dyn = torch.from_numpy(np.stack(arrays))
        if self.static_attributes:
            if attributes is None:
                raise RunoffError(f"static attributes {self.static_attributes} are needed; attributes is None")
            miss = [c for c in self.static_attributes if c not in attributes.columns]
            if miss:
                raise RunoffError(f"attributes lack static attribute column(s) {_fmt(miss)} (model needs, "
                                  f"in order: {self.static_attributes}; columns given: {_fmt(attributes.columns, 20)})")
            miss = [i for i in ids if i not in attributes.index]
            if miss:
                raise RunoffError(f"attributes have no row for catchment(s) {_fmt(miss)}"
                                  f"{_id_hint(miss, attributes.index)}")
            stat = attributes.loc[ids, self.static_attributes].to_numpy(dtype=np.float32)
            if not np.isfinite(stat).all():
                r, c = np.argwhere(~np.isfinite(stat))[0]
                raise RunoffError(f"attribute {self.static_attributes[c]!r} of catchment {ids[r]!r} is not finite")
        else:
            stat = np.zeros((len(ids), 0), dtype=np.float32)
        x_stat = torch.from_numpy(np.array(stat, dtype=np.float32))  # a writable copy
        if check_ranges:
            self.check_input_ranges(x_dyn)
        return times, x_dyn.to(self.dyn_center.device), x_stat.to(self.dyn_center.device)

    def check_input_ranges(self, x_dyn: torch.Tensor, z_max: float = 3.0) -> list[str]:
        """Warn (and return the names of) dynamic inputs whose mean lies more than ``z_max`` training
        standard deviations from the training centre -- usually a unit error (deg C vs K, mm/day vs
        mm/h)."""
        mean = x_dyn.detach().reshape(-1, x_dyn.shape[-1]).double().mean(0).cpu()
        z = (mean - self.dyn_center.double().cpu()) / self.dyn_scale.double().cpu()
        flagged = [n for n, zi in zip(self.dynamic_inputs, z.tolist()) if abs(zi) > z_max]
        for n, zi, m, c in zip(self.dynamic_inputs, z.tolist(), mean.tolist(), self.dyn_center.tolist()):
            if abs(zi) > z_max:
                warnings.warn(f"dynamic input {n!r}: mean {m:.4g} is {zi:+.1f} training std from the training "
                              f"centre {c:.4g}; check its units", RuntimeWarning, stacklevel=3)
        return flagged

    def scale_inputs(self, x_dyn: torch.Tensor, x_stat: torch.Tensor) -> torch.Tensor:
        """``[B, T, F_dyn]`` and ``[B, F_stat]`` in physical units -> scaled LSTM input
        ``[B, T, F_dyn + F_stat]`` (statics repeated over time, after the dynamic inputs)."""
        if x_dyn.dim() != 3 or x_dyn.shape[-1] != len(self.dynamic_inputs):
            raise RunoffError(f"x_dyn must be [B, T, {len(self.dynamic_inputs)}] ({self.dynamic_inputs}), "
                              f"got {tuple(x_dyn.shape)}")
        x_stat = x_stat.reshape(x_dyn.shape[0], -1)
        if x_stat.shape[-1] != len(self.static_attributes):
            raise RunoffError(f"x_stat must be [B, {len(self.static_attributes)}] ({self.static_attributes}), "
                              f"got {tuple(x_stat.shape)}")
        xd = (x_dyn - self.dyn_center) / self.dyn_scale
        xs = ((x_stat - self.stat_center) / self.stat_scale).unsqueeze(1).expand(-1, xd.shape[1], -1)
        return torch.cat([xd, xs.to(xd.dtype)], dim=-1)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """LSTM hidden states ``[..., hidden]`` -> target in physical units ``[..., n_targets]``
        (dropout in training mode, head, de-scaling, clipping where configured)."""
        y = self.head(self.dropout(h)) * self.target_scale + self.target_center
        if bool(self.clip_mask.any()):
            y = torch.where(self.clip_mask, y.clamp_min(0.0), y)
        return y

    # ------------------------------------------------------------------------------ running
    def hidden_sequence(self, x_dyn: torch.Tensor, x_stat: torch.Tensor,
                        state: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the LSTM body sequentially: hidden states ``[B, T, hidden]`` and the final ``(h, c)``
        (each ``[1, B, hidden]``); ``state=None`` starts from zeros, as neuralhydrology does."""
        x = self.scale_inputs(x_dyn, x_stat).transpose(0, 1)  # [T, B, F], time-major like neuralhydrology
        out, (h, c) = self.lstm(x, state)
        return out.transpose(0, 1), (h, c)

    def forward(self, x_dyn: torch.Tensor, x_stat: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Stateful sequential mode: predictions at every step ``[B, T, n_targets]`` (target units) and
        the final ``(h, c)`` state to pass to the next call for a long run."""
        hs, state = self.hidden_sequence(x_dyn, x_stat, state)
        return self.decode(hs), state

    def run_stateful(self, x_dyn: torch.Tensor, x_stat: torch.Tensor, reset: bool = False,
                     detach_state: bool = True) -> torch.Tensor:
        """Sequential mode with the state kept on the model between calls (``self.state``): feed a long
        record chunk by chunk. ``reset=True`` (or :meth:`reset_state`) starts from zeros;
        ``detach_state`` cuts the autograd graph between chunks (truncated back-propagation)."""
        if reset:
            self.state = None
        if self.state is not None and self.state[0].shape[1] != x_dyn.shape[0]:
            raise RunoffError(f"carried state is for {self.state[0].shape[1]} catchments, got {x_dyn.shape[0]};"
                              " reset_state() first")
        y, st = self.forward(x_dyn, x_stat, self.state)
        self.state = (st[0].detach(), st[1].detach()) if detach_state else st
        return y

    def reset_state(self) -> None:
        """Forget the state carried by :meth:`run_stateful`."""
        self.state = None

    def window_hidden(self, x_dyn: torch.Tensor, x_stat: torch.Tensor, end_index: torch.Tensor | Sequence[int],
                      seq_length: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """Final hidden state of windows ``[t - L + 1, t]`` for each ``t`` in ``end_index``, each run
        from a zero state: ``[B, len(end_index), hidden]``. Windows are gathered with one index tensor
        and run as one LSTM batch of about ``batch_size`` sequences at a time (on CPU, batches of a
        few hundred are fastest)."""
        L = int(seq_length or self.seq_length)
        end = torch.as_tensor(end_index, dtype=torch.long, device=x_dyn.device).reshape(-1)
        T = x_dyn.shape[1]
        if len(end) and (int(end.min()) < L - 1 or int(end.max()) >= T):
            raise RunoffError(f"window ends must lie in [{L - 1}, {T - 1}] for seq_length {L} and {T} steps")
        x = self.scale_inputs(x_dyn, x_stat).transpose(0, 1)  # [T, B, F], time-major
        B, F = x.shape[1], x.shape[-1]
        starts = end - (L - 1)
        offsets = torch.arange(L, device=x.device)[:, None]
        nb = max(1, int(batch_size) // max(B, 1))  # windows per chunk and catchment
        outs = []
        for i in range(0, len(starts), nb):
            s = starts[i:i + nb]
            w = x[offsets + s[None, :]]  # [L, n, B, F]: window k covers [s_k, s_k + L - 1]
            _, (h, _) = self.lstm(w.reshape(L, len(s) * B, F))
            outs.append(h[-1].reshape(len(s), B, -1).transpose(0, 1))
        if not outs:
            return x.new_zeros(B, 0, self.hidden_size)
        return torch.cat(outs, dim=1)

    def predict_windowed(self, x_dyn: torch.Tensor, x_stat: torch.Tensor, seq_length: int | None = None,
                         batch_size: int = 256, end_index: torch.Tensor | Sequence[int] | None = None
                         ) -> torch.Tensor:
        """neuralhydrology's evaluation mode: for every time step ``t >= L - 1`` run a fresh (zero-state)
        window of ``L = seq_length`` steps ending at ``t`` and keep the last prediction.

        Returns ``[B, T, n_targets]`` in target units, NaN for ``t < L - 1`` (no full window), or
        ``[B, len(end_index), n_targets]`` when ``end_index`` selects the window ends. Cost is ``L``
        times that of the sequential mode.
        """
        L = int(seq_length or self.seq_length)
        T = x_dyn.shape[1]
        if end_index is not None:
            return self.decode(self.window_hidden(x_dyn, x_stat, end_index, L, batch_size))
        out = x_dyn.new_full((x_dyn.shape[0], T, len(self.target_variables)), float("nan"))
        if T >= L:
            y = self.decode(self.window_hidden(x_dyn, x_stat, torch.arange(L - 1, T), L, batch_size))
            out = torch.cat([out[:, :L - 1], y], dim=1)
        return out

    def set_trainable(self, trainable: Literal["head", "all", "none"]) -> None:
        """Choose what fine-tuning may change: ``'head'`` (LSTM body frozen), ``'all'`` or ``'none'``."""
        if trainable not in ("head", "all", "none"):
            raise RunoffError(f"trainable must be 'head', 'all' or 'none', got {trainable!r}")
        for p in self.lstm.parameters():
            p.requires_grad_(trainable == "all")
        for p in self.head.parameters():
            p.requires_grad_(trainable in ("head", "all"))


def load_neuralhydrology_run(run_dir: str | Path, epoch: int | None = None,
                             map_location: str | torch.device = "cpu") -> NeuralHydrologyLSTM:
    """Shorthand for :meth:`NeuralHydrologyLSTM.from_run_dir`."""
    return NeuralHydrologyLSTM.from_run_dir(run_dir, epoch=epoch, map_location=map_location)


# ========================================================================== catchments -> reaches
class CatchmentReachMap:
    """A sparse linear map from catchment discharge ``[T, C]`` (m3/s) to reach lateral inflow
    ``[T, N]`` (m3/s): ``lateral[:, n] = sum_c weight[c, n] * q[:, c]``, the weights of each catchment
    summing to 1 (its runoff goes somewhere, exactly once). Reaches with no catchment get 0.

    Build with :meth:`one_to_one` (catchment id = reach id) or :meth:`from_table` (a weight table).
    """

    def __init__(self, catchment_ids: Sequence, reach_ids: Sequence, rows: Sequence[int],
                 cols: Sequence[int], weights: Sequence[float]):
        self.catchment_ids = list(catchment_ids)
        self.reach_ids = list(reach_ids)
        C, N = len(self.catchment_ids), len(self.reach_ids)
        idx = torch.tensor(np.vstack([np.asarray(cols, dtype=np.int64), np.asarray(rows, dtype=np.int64)]))
        # stored as [N, C] so that lateral^T = W @ q^T is a sparse @ dense product
        self.matrix = torch.sparse_coo_tensor(idx, torch.tensor(np.asarray(weights, dtype=np.float32)),
                                              (N, C), check_invariants=True).coalesce()

    def __repr__(self) -> str:
        return (f"CatchmentReachMap({len(self.catchment_ids)} catchments -> {len(self.reach_ids)} reaches, "
                f"{self.matrix._nnz()} links)")

    @classmethod
    def one_to_one(cls, catchment_ids: Sequence, reach_ids: Sequence) -> "CatchmentReachMap":
        """Each catchment drains entirely into the reach with the same id; every catchment id must be
        a reach id (reaches without a catchment are allowed)."""
        reach_pos = {r: i for i, r in enumerate(reach_ids)}
        if len(reach_pos) != len(list(reach_ids)):
            raise RunoffError("reach ids are not unique")
        missing = [c for c in catchment_ids if c not in reach_pos]
        if missing:
            raise RunoffError(f"catchment id(s) {_fmt(missing)} are not reach ids (one-to-one mapping)"
                              f"{_id_hint(missing, list(reach_ids))}")
        if len(set(catchment_ids)) != len(list(catchment_ids)):
            raise RunoffError("catchment ids are not unique")
        rows = np.arange(len(catchment_ids))
        return cls(catchment_ids, reach_ids, rows, [reach_pos[c] for c in catchment_ids], np.ones(len(rows)))

    @classmethod
    def from_table(cls, table: pd.DataFrame | str | Path, catchment_ids: Sequence | None = None,
                   reach_ids: Sequence | None = None, weight_col: str | None = None,
                   catchment_col: str = "catchment_id", reach_col: str = "reach_id",
                   atol: float = 1e-4) -> "CatchmentReachMap":
        """From a weight table with columns ``catchment_id``, ``reach_id`` and ``weight`` (or
        ``fraction``): the fraction of each catchment's runoff that enters each reach.

        Args:
            table: DataFrame or CSV path.
            catchment_ids: the catchment order of the runoff columns (default: table order of first
                appearance); catchments missing from the table, or table catchments not in this list,
                are errors naming them.
            reach_ids: the reach order of the output (default: table order); unknown reaches in the
                table are errors.
            weight_col: weight column name (default ``weight``, else ``fraction``).
            atol: tolerance on the per-catchment weight sum of 1.
        """
        if not isinstance(table, pd.DataFrame):
            table = pd.read_csv(table)
        if weight_col is None:
            weight_col = next((c for c in ("weight", "fraction") if c in table.columns), "weight")
        for col in (catchment_col, reach_col, weight_col):
            if col not in table.columns:
                raise RunoffError(f"weight table has no column {col!r}; columns are {_fmt(table.columns)}")
        cats = table[catchment_col].tolist()
        rchs = table[reach_col].tolist()
        w = table[weight_col].to_numpy(dtype=float)
        if catchment_ids is None:
            catchment_ids = list(dict.fromkeys(cats))
        if reach_ids is None:
            reach_ids = list(dict.fromkeys(rchs))
        cpos = {c: i for i, c in enumerate(catchment_ids)}
        rpos = {r: i for i, r in enumerate(reach_ids)}
        unknown = list(dict.fromkeys(c for c in cats if c not in cpos))
        if unknown:
            raise RunoffError(f"weight table names unknown catchment id(s) {_fmt(unknown)}"
                              f"{_id_hint(unknown, catchment_ids)}")
        unknown = list(dict.fromkeys(r for r in rchs if r not in rpos))
        if unknown:
            raise RunoffError(f"weight table names unknown reach id(s) {_fmt(unknown)}{_id_hint(unknown, reach_ids)}")
        bad = [c for c, wi in zip(cats, w) if not np.isfinite(wi) or wi < 0]
        if bad:
            raise RunoffError(f"weight table has negative or non-finite weights for catchment(s) "
                              f"{_fmt(list(dict.fromkeys(bad)))}")
        sums = pd.Series(w).groupby(pd.Series([cpos[c] for c in cats])).sum()
        unmapped = [c for i, c in enumerate(catchment_ids) if i not in sums.index]
        if unmapped:
            raise RunoffError(f"catchment(s) {_fmt(unmapped)} have no row in the weight table (their runoff "
                              "would be lost)")
        off = [(catchment_ids[i], s) for i, s in sums.items() if abs(s - 1.0) > atol]
        if off:
            desc = ", ".join(f"{c!r}: {s:.6g}" for c, s in off[:8])
            raise RunoffError(f"weights must sum to 1 per catchment; they do not for {desc}"
                              + (f", ... ({len(off)} in all)" if len(off) > 8 else ""))
        return cls(catchment_ids, reach_ids, [cpos[c] for c in cats], [rpos[r] for r in rchs], w)

    def dense(self) -> torch.Tensor:
        """The weights as a dense ``[C, N]`` matrix."""
        return self.matrix.to_dense().T

    def apply(self, q_catchment: torch.Tensor) -> torch.Tensor:
        """Catchment discharge ``[T, C]`` (m3/s) -> lateral inflow ``[T, N]`` (m3/s); differentiable
        with respect to ``q_catchment``."""
        if q_catchment.shape[-1] != len(self.catchment_ids):
            raise RunoffError(f"expected {len(self.catchment_ids)} catchment columns, got {q_catchment.shape[-1]}")
        W = self.matrix.to(device=q_catchment.device, dtype=q_catchment.dtype)
        return torch.sparse.mm(W, q_catchment.T).T

    def select_reaches(self, reach_ids: Sequence) -> torch.Tensor:
        """Positions of ``reach_ids`` in this map's reach order; unknown ids are an error naming them."""
        pos = {r: i for i, r in enumerate(self.reach_ids)}
        missing = [r for r in reach_ids if r not in pos]
        if missing:
            raise RunoffError(f"reach id(s) {_fmt(missing)} are not in the catchment-reach map"
                              f"{_id_hint(missing, self.reach_ids)}")
        return torch.tensor([pos[r] for r in reach_ids], dtype=torch.long)


# =================================================================================== providers
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


class LSTMRunoff(nn.Module):
    """Lateral inflow from a pretrained LSTM runoff model: forcing per catchment -> runoff depth rate
    (target units, e.g. mm/h) -> discharge (m3/s, with each catchment's area) -> reaches (sparse map).

    The result is differentiable with respect to the trainable model parameters (``trainable``:
    ``'head'`` freezes the LSTM body, ``'all'``, ``'none'``) so it can be fine-tuned end to end through a
    router. With the body frozen, its hidden states are computed without autograd (and cached for the
    last requested period), so fine-tuning the head is cheap.

    Args:
        model: a loaded :class:`NeuralHydrologyLSTM` (its ``requires_grad`` flags are set here).
        forcing: ``{catchment id: DataFrame}`` of dynamic inputs (physical units, model frequency,
            common UTC index) -- see :meth:`NeuralHydrologyLSTM.inputs_from_frames`.
        attributes: static attributes per catchment (index = catchment id).
        area_km2: local catchment area per catchment id (km2), a Series or mapping.
        mapping: a :class:`CatchmentReachMap`; default one-to-one (catchment id = reach id).
        mode: ``'stateful'`` (one sequential run from ``warmup`` before the first requested time; for
            long runs) or ``'windowed'`` (neuralhydrology's evaluation: each time from a fresh
            ``seq_length`` window; ``seq_length`` times costlier).
        warmup: stateful mode spin-up before the first requested time (a Timedelta, or a number of
            model steps); ``None`` starts at the beginning of the forcing.
        trainable: ``'head'`` (default), ``'all'`` or ``'none'``.
        target: which target variable to use (default: the first).
        units: depth-rate units of the target if they cannot be read from its name.
    """

    def __init__(self, model: NeuralHydrologyLSTM, forcing: Mapping[object, pd.DataFrame],
                 attributes: pd.DataFrame | None, area_km2: pd.Series | Mapping,
                 mapping: CatchmentReachMap | None = None,
                 mode: Literal["stateful", "windowed"] = "stateful",
                 warmup: pd.Timedelta | int | None = None,
                 trainable: Literal["head", "all", "none"] = "head",
                 target: str | None = None, units: str | None = None, batch_size: int = 256):
        super().__init__()
        if mode not in ("stateful", "windowed"):
            raise RunoffError(f"mode must be 'stateful' or 'windowed', got {mode!r}")
        self.model = model
        self.mode = mode
        self.batch_size = int(batch_size)
        self.catchment_ids = list(forcing.keys())
        self.times, x_dyn, x_stat = model.inputs_from_frames(forcing, attributes, self.catchment_ids)
        self.register_buffer("x_dyn", x_dyn, persistent=False)
        self.register_buffer("x_stat", x_stat, persistent=False)
        area = pd.Series(area_km2) if not isinstance(area_km2, pd.Series) else area_km2
        miss = [c for c in self.catchment_ids if c not in area.index]
        if miss:
            raise RunoffError(f"no catchment area for catchment(s) {_fmt(miss)}{_id_hint(miss, area.index)}")
        a = area.reindex(self.catchment_ids).to_numpy(dtype=float)
        if not (np.isfinite(a) & (a > 0)).all():
            raise RunoffError(f"catchment area must be positive for "
                              f"{_fmt([c for c, v in zip(self.catchment_ids, a) if not (v > 0)])}")
        self.register_buffer("area_km2", torch.tensor(a, dtype=torch.float32, device=x_dyn.device),
                             persistent=False)
        self.target = target or model.target_variables[0]
        if self.target not in model.target_variables:
            raise RunoffError(f"target {self.target!r} is not a model target ({model.target_variables})")
        self.target_index = model.target_variables.index(self.target)
        self.units = units or _units_from_target(self.target)
        if self.units is None:
            raise RunoffError(f"cannot read depth-rate units from target {self.target!r}; pass units='mm/h'")
        _rate_seconds(self.units)
        if mapping is not None:
            miss = [c for c in mapping.catchment_ids if c not in set(self.catchment_ids)]
            if miss or len(mapping.catchment_ids) != len(self.catchment_ids):
                raise RunoffError(f"mapping catchments differ from forcing catchments: mapping lacks "
                                  f"{_fmt([c for c in self.catchment_ids if c not in set(mapping.catchment_ids)])}"
                                  f", forcing lacks {_fmt(miss)}")
            self._cat_order = torch.tensor([self.catchment_ids.index(c) for c in mapping.catchment_ids])
        self.mapping = mapping
        if isinstance(warmup, (int, np.integer)):
            warmup = int(warmup) * model.freq
        self.warmup = None if warmup is None else pd.Timedelta(warmup)
        self.trainable = trainable
        model.set_trainable(trainable)
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    # ------------------------------------------------------------------------------
    def _positions(self, times) -> np.ndarray:
        t = _as_utc(times)
        pos = self.times.get_indexer(t)
        if (pos < 0).any():
            miss = t[pos < 0]
            raise RunoffError(f"{len(miss)} requested time(s) are not on the forcing time axis "
                              f"({self.times[0]} .. {self.times[-1]}, step {self.model.freq}), e.g. "
                              f"{_fmt([str(m) for m in miss[:5]])}")
        return pos

    def runoff(self, times: pd.DatetimeIndex | Sequence) -> torch.Tensor:
        """Runoff depth rate ``[T, C]`` in :attr:`units` (e.g. mm/h), columns in forcing order."""
        pos = self._positions(times)
        m = self.model
        body_frozen = not any(p.requires_grad for p in m.lstm.parameters())
        if self.mode == "windowed":
            L = m.seq_length
            if pos.min() < L - 1:
                raise RunoffError(f"windowed mode needs {L - 1} steps of forcing before {self.times[pos.min()]};"
                                  f" forcing starts {self.times[0]}")
            with torch.set_grad_enabled(torch.is_grad_enabled() and not body_frozen):
                h = m.window_hidden(self.x_dyn, self.x_stat, torch.as_tensor(pos), L, self.batch_size)
        else:
            start = 0
            if self.warmup is not None:
                start = max(0, int(pos.min()) - int(self.warmup / m.freq))
            stop = int(pos.max()) + 1
            key = (start, stop)
            if body_frozen and self._cache is not None and self._cache[0] == key:
                hs = self._cache[1]
            else:
                with torch.set_grad_enabled(torch.is_grad_enabled() and not body_frozen):
                    hs, _ = m.hidden_sequence(self.x_dyn[:, start:stop], self.x_stat)
                if body_frozen:
                    self._cache = (key, hs)
            h = hs[:, torch.as_tensor(pos - start)]
        y = m.decode(h)[..., self.target_index]  # [C, T]
        return y.T

    def discharge(self, times: pd.DatetimeIndex | Sequence) -> torch.Tensor:
        """Catchment outflow ``[T, C]`` in m3/s (runoff rate times local catchment area)."""
        return depth_rate_to_discharge(self.runoff(times), self.area_km2, self.units)

    def lateral_inflow(self, times: pd.DatetimeIndex | Sequence, reach_ids: Sequence) -> torch.Tensor:
        """Lateral inflow ``[T, N]`` in m3/s at ``times`` for ``reach_ids`` (see :class:`RunoffProvider`)."""
        q = self.discharge(times)
        reach_ids = list(reach_ids)
        mapping = self.mapping
        if mapping is None:
            mapping = CatchmentReachMap.one_to_one(self.catchment_ids, reach_ids)
            return mapping.apply(q)
        lat = mapping.apply(q[:, self._cat_order.to(q.device)])
        return lat[:, mapping.select_reaches(reach_ids).to(lat.device)]

    def forward(self, times: pd.DatetimeIndex | Sequence, reach_ids: Sequence) -> torch.Tensor:
        return self.lateral_inflow(times, reach_ids)


# ============================================================================ CAMELS-US readers
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
