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

Modules: :mod:`.units`, :mod:`.time`, :mod:`.lstm` (the loader), :mod:`.mapping`, :mod:`.providers`,
:mod:`.lstm_provider`, :mod:`.camels`; this package re-exports their public names.
"""
from __future__ import annotations

from ._common import NEURALHYDROLOGY_CITATION, RunoffError
from .camels import read_camels_attributes, read_camels_daymet, read_camels_streamflow
from .lstm import NeuralHydrologyLSTM, load_neuralhydrology_run
from .inputs import INPUT_PRESETS, derive_inputs
from .lstm_provider import LSTMRunoff, lstm_runoff
from .mapping import CatchmentReachMap
from .providers import PrecomputedRunoff, RunoffProvider
from .time import PRECIP_DISAGGREGATIONS, daily_forcing_to_hourly, daily_to_hourly, hourly_to_daily, precip_window
from .units import CFS_TO_M3S, depth_rate_to_discharge, discharge_to_depth_rate

__all__ = [
    "RunoffError",
    "NeuralHydrologyLSTM",
    "load_neuralhydrology_run",
    "depth_rate_to_discharge",
    "discharge_to_depth_rate",
    "daily_to_hourly",
    "daily_forcing_to_hourly",
    "hourly_to_daily",
    "precip_window",
    "PRECIP_DISAGGREGATIONS",
    "CatchmentReachMap",
    "RunoffProvider",
    "PrecomputedRunoff",
    "LSTMRunoff",
    "lstm_runoff",
    "derive_inputs",
    "INPUT_PRESETS",
    "read_camels_daymet",
    "read_camels_streamflow",
    "read_camels_attributes",
    "CFS_TO_M3S",
    "NEURALHYDROLOGY_CITATION",
]
