"""Validated YAML configuration of ``rivergraph train`` / ``rivergraph route`` (pydantic v2, unknown keys forbidden).

Relative paths are taken from the current working directory. Input files must exist when the config is loaded;
the error names the key. See docs/training.md for every key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..models.params import DEFAULT_ATTRIBUTES, ROUTING_OUTPUTS
from ..physics.channels import CHANNELS, parameter_spec

__all__ = ["Config", "load_config", "read_yaml_mapping", "BUILTIN_NETWORKS"]

BUILTIN_NETWORKS = ("lower_colorado",)
"""Network / forcing names that load shipped data (``rivergraph.datasets``) instead of a file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _existing(v: str | None, key: str, builtins: tuple = ()) -> str | None:
    if v is None or v in builtins:
        return v
    if not Path(v).exists():
        raise ValueError(f"{key}: file not found: {v}")
    return v


class StormSpec(_Strict):
    """Stochastic storm sequence (``rivergraph.training.storm_inflow``); the base flow is the NWM q_lateral time mean
    when the network is ``lower_colorado``."""

    hours: int = Field(1008, ge=24, description="length of the synthetic forcing (h)")
    seed: int = 1
    storms_per_week: float = Field(4.0, gt=0)
    mean_depth_mm: float = Field(15.0, gt=0)
    mean_duration_h: float = Field(8.0, gt=0)
    radius_km: tuple[float, float] = (40.0, 150.0)
    response_h: float = Field(3.0, gt=0)
    quiet_h: int = Field(48, ge=0)
    start: str = "2021-08-23T13:00:00Z"


class ForcingSpec(_Strict):
    """Lateral inflow: ``synthetic_storms``, ``lower_colorado`` (the 28 shipped NWM hours) or an ``.npz`` file
    with ``q_lateral`` [T, N] (m3/s), ``reach_ids`` [N] and ``time`` [T]."""

    source: str = "synthetic_storms"
    storms: StormSpec = StormSpec()

    @field_validator("source")
    @classmethod
    def _src(cls, v):
        return _existing(v, "forcing.source", ("synthetic_storms",) + BUILTIN_NETWORKS)


class TwinSpec(_Strict):
    """Synthetic-twin truth: n = prefactor * A^exponent (A drainage area km2), optional lognormal noise."""

    prefactor: float = Field(0.0915, gt=0)
    exponent: float = -0.131
    noise: float = Field(0.0, ge=0, description="std of log-discharge noise (0 = exact)")
    seed: int = 0


class ObservationSpec(_Strict):
    """``twin`` (route with the twin law) or a CSV with columns time, gage, discharge_m3s[, quality]
    (quality 0 = missing)."""

    source: str = "twin"
    twin: TwinSpec = TwinSpec()

    @field_validator("source")
    @classmethod
    def _src(cls, v):
        return _existing(v, "observations.source", ("twin",))


class RoutingSpec(_Strict):
    mode: Literal[tuple(CHANNELS)] = Field("power_law", description="routing mode: a channel geometry of "
                                          "rivergraph.physics.channels.CHANNELS")
    dt_s: float = Field(3600.0, gt=0)
    fixed: dict[str, Union[float, str]] = Field(
        default_factory=lambda: {"width_coef": 21.0, "width_exp": 0.5},
        description="non-learned routing parameters: a number, or a network column name")


def _alias_of(name: str) -> str | None:
    try:
        return parameter_spec(name).name
    except KeyError:
        return None


class OutputDef(_Strict):
    lo: float
    hi: float
    scaling: Literal["sigmoid", "log"] = "sigmoid"
    init: float | None = None


class ModelSpec(_Strict):
    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES), min_length=1)
    log_columns: list[str] | None = None
    hidden: list[int] = Field(default_factory=lambda: [32, 32])
    outputs: dict[str, OutputDef] = Field(
        default_factory=lambda: {"n": OutputDef(lo=ROUTING_OUTPUTS["n"].lo, hi=ROUTING_OUTPUTS["n"].hi, scaling="log",
                                                init=0.06)}, min_length=1)

    @field_validator("outputs")
    @classmethod
    def _known(cls, v):
        bad = {k for k in v if k not in ROUTING_OUTPUTS and _alias_of(k) not in ROUTING_OUTPUTS}
        if bad:
            raise ValueError(f"model.outputs: cannot learn {sorted(bad)}; learnable: {sorted(ROUTING_OUTPUTS)}")
        return v


class GaugeSpec(_Strict):
    ids: list[str] | None = Field(None, description="gauge ids to use (default: every gauged reach)")
    max_upstream_reaches: int | None = Field(None, ge=1, description="drop gauges with larger upstream networks")


class TrainingSpec(_Strict):
    epochs: int = Field(40, ge=1)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(8, ge=1, description="gauges per mini-batch")
    clip: float | None = Field(1.0, gt=0)
    patience: int = Field(10, ge=1)
    seed: int = 0
    train_fraction: float = Field(0.75, gt=0, le=1, description="leading share of the forcing used for training")
    warmup_hours: float = Field(48.0, ge=0)
    loss: Literal["nse", "kge", "l1"] = "nse"
    aggregate: Literal["hourly", "daily"] = "hourly"


class OutputSpecDir(_Strict):
    dir: str = "runs/rivergraph"
    checkpoint: str = Field("checkpoint.pt", description="file name inside dir")
    plots: bool = True


class Config(_Strict):
    """A training / routing run."""

    network: str = "lower_colorado"
    forcing: ForcingSpec = ForcingSpec()
    observations: ObservationSpec = ObservationSpec()
    routing: RoutingSpec = RoutingSpec()
    model: ModelSpec = ModelSpec()
    gauges: GaugeSpec = GaugeSpec()
    training: TrainingSpec = TrainingSpec()
    output: OutputSpecDir = OutputSpecDir()

    @field_validator("network")
    @classmethod
    def _net(cls, v):
        return _existing(v, "network", BUILTIN_NETWORKS)

    @model_validator(mode="after")
    def _consistent(self):
        if self.forcing.source == "lower_colorado" and self.network != "lower_colorado":
            raise ValueError("forcing.source 'lower_colorado' needs network: lower_colorado")
        clash = set(self.routing.fixed) & set(self.model.outputs)
        if clash:
            raise ValueError(f"routing.fixed and model.outputs both set {sorted(clash)}")
        return self

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.output.dir) / self.output.checkpoint


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (empty file = {}); a missing file, bad YAML or a
    non-mapping raise one-line errors naming the file. Shared by every command's and the BMI's config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; a missing file, bad YAML, unknown keys or bad paths raise clear errors."""
    return Config.model_validate(read_yaml_mapping(path))
