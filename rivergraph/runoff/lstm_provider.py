"""Lateral inflow from a pretrained LSTM: forcing per catchment -> runoff depth rate -> m3/s -> reaches."""
from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._common import RunoffError, _as_utc, _fmt, _id_hint
from .lstm import NeuralHydrologyLSTM, _units_from_target
from .mapping import CatchmentReachMap
from .units import _rate_seconds, depth_rate_to_discharge

__all__ = ["LSTMRunoff"]


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
