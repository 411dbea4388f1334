"""Neural networks mapping per-reach attributes to bounded physical parameters.

``AttributeScaler`` turns network attribute columns into a normalised feature matrix (log of
positive, skewed quantities such as drainage area, slope and length, then z-score with the mean and
standard deviation of the network it was fitted on); its columns and statistics live in the module's
state dict, so they are saved with the model. ``ParameterNet`` maps those features with a backbone (an
MLP by default; a graph network ``"gcn"`` / ``"sage"`` of :mod:`rivergraph.models.gnn` taking
``(x, edge_index)``; or any ``torch.nn.Module`` taking [N, F] -- or, with ``is_graph_backbone = True``,
[N, F] and edge_index -- to [N, n_outputs]) to a dict of [N] tensors, each squashed into hard bounds:

    ``sigmoid``  v = lo + (hi - lo) * sigmoid(z)
    ``log``      v = exp(log lo + (log hi - log lo) * sigmoid(z))   (uniform in log space; lo > 0)

Learning routing parameters from attributes through a differentiable router follows Tsai et al.
(2021, Nat. Commun. 12, "From calibration to parameter learning") and, for Muskingum-Cunge Manning's n,
DDR / dMC (Bindas et al. 2024, Water Resour. Res. 60, e2023WR035337).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Mapping, Sequence

import math

import numpy as np
import torch
from torch import nn

from ..graph.network import NetworkError, RiverNetwork
from ..physics.channels import learnable_parameters

__all__ = ["OutputSpec", "AttributeScaler", "ParameterNet", "MLP", "DEFAULT_ATTRIBUTES", "LOG_COLUMNS",
           "ROUTING_OUTPUTS", "BACKBONES"]

DEFAULT_ATTRIBUTES = ("drainage_area_km2", "slope", "length_m", "order", "elevation_m")
"""Attribute columns used when none are given."""

LOG_COLUMNS = frozenset({"drainage_area_km2", "catchment_area_km2", "slope", "length_m", "top_width_m",
                         "bottom_width_m"})
"""Columns log-transformed before standardisation (positive and spanning orders of magnitude)."""


@dataclass(frozen=True)
class OutputSpec:
    """One learned parameter: hard bounds [lo, hi] (its units), ``scaling`` ('sigmoid' or 'log') and an
    optional ``init`` value every reach starts from (the output layer is zeroed so the initial prediction
    is exactly ``init``; default: random initialisation)."""

    lo: float
    hi: float
    scaling: Literal["sigmoid", "log"] = "sigmoid"
    init: float | None = None

    def __post_init__(self):
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"output bounds must be finite with lo < hi, got [{self.lo}, {self.hi}]")
        if self.scaling not in ("sigmoid", "log"):
            raise ValueError(f"scaling must be 'sigmoid' or 'log', got '{self.scaling}'")
        if self.scaling == "log" and self.lo <= 0:
            raise ValueError(f"'log' scaling needs lo > 0, got lo = {self.lo}")
        if self.init is not None and not (self.lo < self.init < self.hi):
            raise ValueError(f"init {self.init} must lie strictly inside ({self.lo}, {self.hi})")

    def squash(self, z: torch.Tensor) -> torch.Tensor:
        """Map an unbounded z to the bounded parameter."""
        s = torch.sigmoid(z)
        if self.scaling == "log":
            llo, lhi = math.log(self.lo), math.log(self.hi)
            return torch.exp(llo + (lhi - llo) * s)
        return self.lo + (self.hi - self.lo) * s

    def unsquash(self, v: float) -> float:
        """Inverse of :meth:`squash` for a scalar strictly inside the bounds."""
        if self.scaling == "log":
            u = (math.log(v) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        else:
            u = (v - self.lo) / (self.hi - self.lo)
        return math.log(u / (1.0 - u))


ROUTING_OUTPUTS = {name: OutputSpec(spec.lo, spec.hi, spec.scaling) for name, spec in learnable_parameters().items()}
"""Specs of the learnable routing parameters (Manning's n, the power-law width coefficient and exponent), with
the bounds their channel geometries declare (:mod:`rivergraph.physics.channels`)."""


class AttributeScaler(nn.Module):
    """Normalises network attribute columns: log of ``log_columns``, then (x - mean) / std.

    ``fit(net)`` stores the column names, which ones are logged, and their mean / std in the state dict
    (buffers plus extra state), so a saved model re-applies exactly the normalisation it was trained with.
    """

    def __init__(self, columns: Sequence[str] = DEFAULT_ATTRIBUTES, log_columns: Iterable[str] | None = None):
        super().__init__()
        if not columns:
            raise ValueError("AttributeScaler needs at least one attribute column")
        if len(set(columns)) != len(columns):
            raise ValueError(f"duplicate attribute columns in {list(columns)}")
        self.columns = list(columns)
        logc = LOG_COLUMNS if log_columns is None else set(log_columns)
        unknown = set(logc) - set(self.columns) - LOG_COLUMNS
        if unknown:
            raise ValueError(f"log_columns {sorted(unknown)} are not among the attribute columns {self.columns}")
        self.log_columns = [c for c in self.columns if c in logc]
        F = len(self.columns)
        self.register_buffer("mean", torch.zeros(F, dtype=torch.float64))
        self.register_buffer("std", torch.ones(F, dtype=torch.float64))
        self.fitted = False

    def get_extra_state(self):
        return {"columns": list(self.columns), "log_columns": list(self.log_columns), "fitted": self.fitted}

    def set_extra_state(self, state):
        self.columns, self.log_columns = list(state["columns"]), list(state["log_columns"])
        self.fitted = bool(state["fitted"])

    def raw(self, net: RiverNetwork) -> np.ndarray:
        """[N, F] float64 columns of ``net``, logged where asked; bad values name their column and reaches."""
        missing = [c for c in self.columns if c not in net.attrs]
        if missing:
            raise NetworkError(f"network lacks attribute column(s) {missing} needed by the parameter network "
                               f"(has: {list(net.attrs.columns)})")
        out = np.empty((len(net), len(self.columns)), dtype=np.float64)
        for j, c in enumerate(self.columns):
            try:
                v = net.attrs[c].to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise NetworkError(f"attribute column '{c}' is not numeric") from e
            bad = ~np.isfinite(v)
            if c in self.log_columns:
                bad |= v <= 0
            if bad.any():
                rule = "non-finite or <= 0 (log-transformed)" if c in self.log_columns else "non-finite"
                raise NetworkError(f"attribute column '{c}' is {rule} at reaches {net.ids[bad][:10].tolist()}"
                                   f"{' ...' if bad.sum() > 10 else ''}")
            out[:, j] = np.log(v) if c in self.log_columns else v
        return out

    def fit(self, net: RiverNetwork) -> "AttributeScaler":
        """Fit mean / std on ``net`` (constant columns get std 1)."""
        x = self.raw(net)
        mean, std = x.mean(0), x.std(0)
        std[std < 1e-12] = 1.0
        self.mean = torch.as_tensor(mean, dtype=torch.float64, device=self.mean.device)
        self.std = torch.as_tensor(std, dtype=torch.float64, device=self.std.device)
        self.fitted = True
        return self

    def transform(self, net: RiverNetwork, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[N, F] normalised features of ``net`` (on the scaler's device)."""
        if not self.fitted:
            raise RuntimeError("AttributeScaler is not fitted: call fit(net) or load a saved state dict")
        x = torch.as_tensor(self.raw(net), device=self.mean.device)
        return ((x - self.mean) / self.std).to(dtype)


class MLP(nn.Sequential):
    """Fully connected network [N, F] -> [N, out] with ``hidden`` layer widths and a ``activation``."""

    def __init__(self, n_in: int, n_out: int, hidden: Sequence[int] = (32, 32), activation: type = nn.Tanh):
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(n_in, h), activation()]
            n_in = h
        layers.append(nn.Linear(n_in, n_out))
        super().__init__(*layers)


class ParameterNet(nn.Module):
    """Attributes -> dict of bounded per-reach parameters.

    Args:
        outputs: name -> :class:`OutputSpec` (or a ``(lo, hi, scaling[, init])`` tuple / mapping), e.g.
            ``{"n": OutputSpec(0.01, 0.3, "log", init=0.06)}``.
        attributes: network attribute columns used as inputs (default :data:`DEFAULT_ATTRIBUTES`).
        log_columns: which of them to log-transform (default: those in :data:`LOG_COLUMNS`).
        hidden: hidden widths of a named backbone (ignored when ``backbone`` is a module).
        backbone: a name in :data:`BACKBONES` (``"mlp"``, default; ``"gcn"`` or ``"sage"``: graph
            convolutions over the river network, see :mod:`rivergraph.models.gnn`), or a module mapping
            [N, F] features to [N, len(outputs)] unbounded values; a module with ``is_graph_backbone = True``
            is called as ``backbone(x, edge_index)``.

    Use: ``pnet.scaler.fit(net)`` once, then ``pnet.parameters_for(net)`` or, inside a training step,
    ``pnet(pnet.scaler.transform(net))`` -> ``{"n": tensor [N], ...}`` (``pnet(x, net.edge_index)`` with a
    graph backbone; :attr:`needs_graph` tells which).
    """

    def __init__(self, outputs: Mapping[str, OutputSpec | Sequence | Mapping],
                 attributes: Sequence[str] = DEFAULT_ATTRIBUTES, log_columns: Iterable[str] | None = None,
                 hidden: Sequence[int] = (32, 32), backbone: nn.Module | str | None = None):
        super().__init__()
        if not outputs:
            raise ValueError("ParameterNet needs at least one output")
        self.specs: dict[str, OutputSpec] = {k: _as_spec(k, v) for k, v in outputs.items()}
        self.scaler = AttributeScaler(list(attributes), log_columns)
        self.hidden = list(hidden)
        name = "mlp" if backbone is None else backbone
        if isinstance(name, str):
            if name not in BACKBONES:
                raise ValueError(f"unknown backbone '{name}'; choose from {sorted(BACKBONES)} or pass a module")
            self.backbone_name = name
            backbone = BACKBONES[name](len(self.scaler.columns), len(self.specs), self.hidden)
        else:
            self.backbone_name = "custom"
        self.backbone = backbone
        self._init_outputs()

    @property
    def needs_graph(self) -> bool:
        """True when the backbone takes ``(x, edge_index)``."""
        return bool(getattr(self.backbone, "is_graph_backbone", False))

    def _init_outputs(self) -> None:
        last = _last_linear(self.backbone)
        if last is None or last.out_features != len(self.specs):
            return
        with torch.no_grad():
            for j, spec in enumerate(self.specs.values()):
                if spec.init is not None:
                    last.weight[j].zero_()
                    last.bias[j] = spec.unsquash(spec.init)

    def config(self) -> dict:
        """JSON-able description to rebuild the module with :meth:`from_config` (named backbones only)."""
        return {"outputs": {k: asdict(s) for k, s in self.specs.items()}, "attributes": list(self.scaler.columns),
                "log_columns": list(self.scaler.log_columns), "hidden": list(self.hidden),
                "backbone": self.backbone_name}

    @classmethod
    def from_config(cls, cfg: Mapping, backbone: nn.Module | None = None) -> "ParameterNet":
        """Rebuild from :meth:`config`; a ``"custom"`` backbone must be passed again as ``backbone``."""
        name = cfg.get("backbone", "mlp")
        if name == "custom" and backbone is None:
            raise ValueError("this ParameterNet was saved with a custom backbone module: pass it as backbone=")
        return cls({k: OutputSpec(**v) for k, v in cfg["outputs"].items()}, cfg["attributes"],
                   cfg["log_columns"], cfg["hidden"], backbone if name == "custom" else name)

    def forward(self, features: torch.Tensor, edge_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """features [N, F] (from ``self.scaler.transform``), and edge_index [2, E] (upstream -> downstream) for a
        graph backbone -> {name: [N] bounded parameter}."""
        if features.ndim != 2 or features.shape[1] != len(self.scaler.columns):
            raise ValueError(f"features must be [N, {len(self.scaler.columns)}] ({self.scaler.columns}), "
                             f"got {tuple(features.shape)}")
        if self.needs_graph:
            if edge_index is None:
                raise ValueError("this ParameterNet has a graph backbone: call it with (features, edge_index)")
            z = self.backbone(features, edge_index.to(features.device))
        else:
            z = self.backbone(features)
        return {k: spec.squash(z[:, j]) for j, (k, spec) in enumerate(self.specs.items())}

    def parameters_for(self, net: RiverNetwork) -> dict[str, torch.Tensor]:
        """Bounded parameters for every reach of ``net`` (scaler must be fitted), in the model's dtype/device
        (``pnet.double()`` for float64)."""
        w = next(self.parameters())
        return self(self.scaler.transform(net, w.dtype).to(w.device), net.edge_index)


def _gnn(layer: str):
    def build(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Module:
        from .gnn import GNNBackbone  # loads torch_geometric

        return GNNBackbone(n_in, n_out, hidden, layer)
    return build


BACKBONES = {"mlp": MLP, "gcn": _gnn("gcn"), "sage": _gnn("sage")}
"""Named backbones: name -> builder(n_features, n_outputs, hidden) -> module (the ParameterNet's registry)."""


def _as_spec(name: str, v) -> OutputSpec:
    if isinstance(v, OutputSpec):
        return v
    if isinstance(v, Mapping):
        return OutputSpec(**v)
    try:
        return OutputSpec(*v)
    except TypeError as e:
        raise ValueError(f"output '{name}': expected OutputSpec, (lo, hi, scaling[, init]) or a mapping") from e


def _last_linear(m: nn.Module) -> nn.Linear | None:
    last = None
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            last = mod
    return last
