"""Lateral inflow from a pretrained LSTM: forcing per catchment -> runoff depth rate -> m3/s -> reaches."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._common import RunoffError, _as_utc, _fmt, _id_hint
from .lstm import NeuralHydrologyLSTM, _units_from_target
from .inputs import InputSpec, derive_inputs
from .mapping import CatchmentReachMap
from .units import depth_rate_seconds, depth_rate_to_discharge

__all__ = ["LSTMRunoff", "lstm_runoff"]


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
        area_km2: local catchment area per catchment id (km2), a Series or mapping; ``None``: only
            :meth:`runoff` (depth rates) is available, :meth:`discharge` and :meth:`lateral_inflow` raise.
        mapping: a :class:`CatchmentReachMap`; default one-to-one (catchment id = reach id).
        mode: ``'stateful'`` (one sequential run from ``warmup`` before the first requested time; for
            long runs) or ``'windowed'`` (neuralhydrology's evaluation: each time from a fresh
            ``seq_length`` window; ``seq_length`` times costlier).
        warmup: stateful mode spin-up before the first requested time (a Timedelta, or a number of
            model steps); ``None`` starts at the beginning of the forcing.
        trainable: ``'head'`` (default), ``'all'`` or ``'none'``.
        target: which target variable to use (default: the first).
        units: depth-rate units of the target if they cannot be read from its name.
        spinup_cycles: stateful mode with ``warmup=None``: before the run, the LSTM is run this many times
            over the first ``spinup_steps`` steps of the forcing, each time from the state the previous
            pass ended with (the first from zeros), and the run starts from the final state -- the usual
            cyclic spin-up of a land model when no earlier forcing exists (it assumes the period repeats).
            0 (default): start from zeros, as neuralhydrology does.
        spinup_steps: length of the spin-up period (default: the whole forcing).

    Long runs in chunks: in stateful mode with ``warmup=None`` and the LSTM body frozen, consecutive calls
    for consecutive periods (each starting at or after where the last one ended) continue the LSTM from the
    carried ``(h, c)`` state instead of recomputing from the start, so memory and work per call are those
    of the chunk (:meth:`chunks` gives such a source for :func:`rivergraph.io.route_to_file`). The result
    equals one call over the whole period (tested).
    """

    def __init__(self, model: NeuralHydrologyLSTM, forcing: Mapping[object, pd.DataFrame],
                 attributes: pd.DataFrame | None, area_km2: pd.Series | Mapping | None = None,
                 mapping: CatchmentReachMap | None = None,
                 mode: Literal["stateful", "windowed"] = "stateful",
                 warmup: pd.Timedelta | int | None = None,
                 trainable: Literal["head", "all", "none"] = "head",
                 target: str | None = None, units: str | None = None, batch_size: int = 256,
                 spinup_cycles: int = 0, spinup_steps: int | None = None):
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
        self.register_buffer("area_km2", None, persistent=False)  # [C] km2, or None: depth rates only
        if area_km2 is not None:
            area = pd.Series(area_km2) if not isinstance(area_km2, pd.Series) else area_km2
            miss = [c for c in self.catchment_ids if c not in area.index]
            if miss:
                raise RunoffError(f"no catchment area for catchment(s) {_fmt(miss)}{_id_hint(miss, area.index)}")
            a = area.reindex(self.catchment_ids).to_numpy(dtype=float)
            if not (np.isfinite(a) & (a > 0)).all():
                raise RunoffError(f"catchment area must be positive for "
                                  f"{_fmt([c for c, v in zip(self.catchment_ids, a) if not (v > 0)])}")
            self.area_km2 = torch.tensor(a, dtype=torch.float32, device=x_dyn.device)
        self.target = target or model.target_variables[0]
        if self.target not in model.target_variables:
            raise RunoffError(f"target {self.target!r} is not a model target ({model.target_variables})")
        self.target_index = model.target_variables.index(self.target)
        self.units = units or _units_from_target(self.target)
        if self.units is None:
            raise RunoffError(f"cannot read depth-rate units from target {self.target!r}; pass units='mm/h'")
        depth_rate_seconds(self.units)
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
        self.spinup_cycles = int(spinup_cycles)
        self.spinup_steps = len(self.times) if spinup_steps is None else int(spinup_steps)
        if self.spinup_cycles < 0 or not 1 <= self.spinup_steps <= len(self.times):
            raise RunoffError(f"spinup_cycles must be >= 0 and spinup_steps in [1, {len(self.times)}], got "
                              f"{spinup_cycles}, {spinup_steps}")
        if self.spinup_cycles and (mode != "stateful" or warmup is not None):
            raise RunoffError("spin-up cycles need mode='stateful' and warmup=None (a run from the forcing start)")
        self._state0: tuple[torch.Tensor, torch.Tensor] | None = None
        self._carry: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # (next position, (h, c))

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
            start, state = 0, None
            if self.warmup is not None:
                start = max(0, int(pos.min()) - int(self.warmup / m.freq))
            else:
                state = self.initial_state()
            stop = int(pos.max()) + 1
            key = (start, stop)
            if body_frozen and self._cache is not None and self._cache[0] == key:
                hs = self._cache[1]
            else:
                carry = self._carry
                if body_frozen and self.warmup is None and carry is not None and carry[0] <= int(pos.min()):
                    start, state = carry[0], carry[1]  # continue the run of the previous call
                    key = (start, stop)
                with torch.set_grad_enabled(torch.is_grad_enabled() and not body_frozen):
                    hs, end_state = m.hidden_sequence(self.x_dyn[:, start:stop], self.x_stat, state)
                if body_frozen:
                    self._cache = (key, hs)
                    if self.warmup is None:
                        self._carry = (stop, end_state)
            h = hs[:, torch.as_tensor(pos - start)]
        y = m.decode(h)[..., self.target_index]  # [C, T]
        return y.T

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The LSTM state at the first forcing step: zeros (``None``) or, with ``spinup_cycles``, the state
        after the cyclic spin-up (computed once, without gradients)."""
        if self.spinup_cycles == 0:
            return None
        if self._state0 is None:
            state = None
            with torch.no_grad():
                for _ in range(self.spinup_cycles):
                    _, state = self.model.hidden_sequence(self.x_dyn[:, :self.spinup_steps], self.x_stat, state)
            self._state0 = state
        return self._state0

    def reset(self) -> None:
        """Forget the carried chunk state and cached hidden states (the next call starts from the
        initial state again)."""
        self._carry = None
        self._cache = None

    def chunks(self, times: pd.DatetimeIndex | Sequence, reach_ids: Sequence):
        """A callable ``rows(t0, t1) -> lateral inflow [t1 - t0, N]`` (m3/s, float64, no gradients) for rows
        ``t0 .. t1-1`` of ``times``: the chunked forcing source that
        :func:`rivergraph.io.route_to_file` streams (the LSTM state carries from chunk to chunk)."""
        times = _as_utc(times)
        reach_ids = list(reach_ids)
        self.reset()

        def rows(t0: int, t1: int) -> torch.Tensor:
            with torch.no_grad():
                return self.lateral_inflow(times[t0:t1], reach_ids).double()
        return rows

    def discharge(self, times: pd.DatetimeIndex | Sequence) -> torch.Tensor:
        """Catchment outflow ``[T, C]`` in m3/s (runoff rate times local catchment area)."""
        if self.area_km2 is None:
            raise RunoffError("no catchment areas were given (area_km2=None): only runoff() depth rates are "
                              "available")
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


def lstm_runoff(run_dir: str | Path | NeuralHydrologyLSTM, forcing: Mapping[object, pd.DataFrame],
                attributes: pd.DataFrame | None, area_km2: pd.Series | Mapping | None, mapping: CatchmentReachMap | None = None, *,
                inputs: str | InputSpec | None = None, epoch: int | None = None,
                period: tuple | None = None, device: str | torch.device = "cpu", **kwargs) -> LSTMRunoff:
    """The LSTM runoff provider in one call: run directory + forcing + catchment map -> a
    :class:`RunoffProvider` whose ``lateral_inflow(times, reach_ids)`` is ``[T, N]`` m3/s.

    Args:
        run_dir: a neuralhydrology run directory (see :meth:`NeuralHydrologyLSTM.from_run_dir`), or a model
            already loaded from one (its ``requires_grad`` flags are set here).
        forcing: ``{catchment id: DataFrame}`` on a UTC index (e.g. :func:`rivergraph.io.read_ngen_forcing`).
        attributes: the model's static attributes per catchment id (units of training).
        area_km2: catchment area per catchment id (km2).
        mapping: catchment -> reach map (default: catchment id = reach id).
        inputs: how forcing columns become model inputs (:func:`derive_inputs`; e.g. ``"aorc_ngen"``).
        epoch: weights epoch (default: the last).
        period: ``(start, end)`` UTC times (inclusive) to keep of the forcing (default all).
        device: where the model and inputs live.
        **kwargs: :class:`LSTMRunoff` options (``mode``, ``warmup``, ``spinup_cycles``, ``trainable`` ...;
            ``trainable`` defaults to ``'none'`` here: plain inference).
    """
    model = run_dir if isinstance(run_dir, NeuralHydrologyLSTM) else \
        NeuralHydrologyLSTM.from_run_dir(run_dir, epoch=epoch, map_location=device)
    frames = derive_inputs(forcing, inputs)
    if period is not None:
        t0, t1 = (pd.Timestamp(t) for t in period)
        t0 = t0.tz_localize("UTC") if t0.tz is None else t0
        t1 = t1.tz_localize("UTC") if t1.tz is None else t1
        frames = {c: f.loc[t0:t1] for c, f in frames.items()}
    kwargs.setdefault("trainable", "none")
    return LSTMRunoff(model, frames, attributes, area_km2, mapping=mapping, **kwargs)
