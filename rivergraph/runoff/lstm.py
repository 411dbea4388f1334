"""A pretrained neuralhydrology CudaLSTM loaded from its run directory as it is, run in physical units
(windowed like neuralhydrology's evaluation, or stateful for long runs)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from ._common import _HOUR, RunoffError, _as_utc, _fmt, _id_hint

__all__ = ["NeuralHydrologyLSTM", "load_neuralhydrology_run"]

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
