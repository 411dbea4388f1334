"""Config of ``rivergraph train`` (and ``rivergraph route RUN_DIR``): network, forcing, observations, routing,
parameter network, gauges, training, output. Relative paths are taken from the working directory; input files
must exist when the config is loaded (the error names the key). See docs/config.md for every key."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from ..models.params import DEFAULT_ATTRIBUTES, ROUTING_OUTPUTS
from ..physics.channels import CHANNELS, parameter_spec
from .base import Strict, existing_path, read_yaml_mapping
from .sections import NetworkSection, OutputSection, RoutingSection, mode_parameters

__all__ = ["TrainConfig", "Config", "load_config"]

_LEARNABLE_N_MODES = tuple(name for name, ch in CHANNELS.items() if "n" in ch.param_names)
"""The registry's geometries with a Manning's n (the parameter training learns by default)."""


def _datasets() -> tuple[str, ...]:
    from ..datasets import DATASETS

    return tuple(DATASETS)


class StormSpec(Strict):
    """Stochastic storm sequence (``rivergraph.training.storm_inflow``); the base flow is the dataset's
    lateral-inflow time mean when the network is a dataset."""

    hours: int = Field(1008, ge=24, description="length of the synthetic forcing (h)")
    seed: int = Field(1, description="random seed of the storm sequence")
    storms_per_week: float = Field(4.0, gt=0, description="mean number of storms per week")
    mean_depth_mm: float = Field(15.0, gt=0, description="mean storm rain depth (mm)")
    mean_duration_h: float = Field(8.0, gt=0, description="mean storm duration (h)")
    radius_km: tuple[float, float] = Field((40.0, 150.0), description="range of storm radii (km)")
    response_h: float = Field(3.0, gt=0, description="catchment response time scale (h)")
    quiet_h: int = Field(48, ge=0, description="storm-free hours at the start")
    start: str = Field("2021-08-23T13:00:00Z", description="time stamp of the first row (UTC)")


class ForcingSpec(Strict):
    """Lateral inflow for training."""

    source: str = Field("synthetic_storms", description="synthetic_storms, a dataset name (its lateral inflow, "
                                                        "e.g. lower_colorado's 28 NWM hours), an .npz file with "
                                                        "q_lateral [T, N] (m3/s), reach_ids [N] and time [T], or a "
                                                        "PRMS / pywatershed segment series .nc (seg_lateral_inflow, "
                                                        "cfs); rows coarser than routing.dt_s are held constant")
    storms: StormSpec = Field(default_factory=StormSpec, description="the synthetic storm sequence")

    @field_validator("source")
    @classmethod
    def _src(cls, v):
        return existing_path(v, "forcing.source", ("synthetic_storms",) + _datasets())


class TwinSpec(Strict):
    """Synthetic-twin truth: n = prefactor * A^exponent (A drainage area km2), optional lognormal noise."""

    prefactor: float = Field(0.0915, gt=0, description="truth n at A = 1 km2 (s m^-1/3)")
    exponent: float = Field(-0.131, description="exponent of drainage area in the truth law")
    noise: float = Field(0.0, ge=0, description="std of log-discharge noise (0 = exact)")
    seed: int = Field(0, description="random seed of the noise")


class ObservationSpec(Strict):
    """Gauge observations to train against."""

    source: str = Field("twin", description="twin (route with the twin law) or a gauge CSV (rivergraph.io.gauges "
                                            "format: time, gage, discharge_m3s[, quality], quality 0 = missing), or a PRMS POI "
                                            "observation .nc (drb_2yr_gage_poi_obs.nc, ft3/s; daily values held "
                                            "over the day's routing steps: use training.aggregate daily)")
    twin: TwinSpec = Field(default_factory=TwinSpec, description="the twin's truth law")

    @field_validator("source")
    @classmethod
    def _src(cls, v):
        return existing_path(v, "observations.source", ("twin",))


class TrainRoutingSection(RoutingSection):
    """Routing during training (the shared routing section, power_law by default)."""

    mode: Literal[_LEARNABLE_N_MODES] = Field("power_law", description="routing mode with a Manning's n to learn "
                                                                       f"({', '.join(_LEARNABLE_N_MODES)})")
    params: dict[str, Union[float, str]] = Field(
        default_factory=lambda: {"width_coef": 21.0, "width_exp": 0.5}, validation_alias=RoutingSection.model_fields["params"]
        .validation_alias, description="non-learned routing parameters: a number, or a network column name "
                                       "(alias: fixed)")


def _alias_of(name: str) -> str | None:
    try:
        return parameter_spec(name).name
    except KeyError:
        return None


class OutputDef(Strict):
    """One learned parameter: bounds, scaling and initial value."""

    lo: float = Field(description="lower bound")
    hi: float = Field(description="upper bound")
    scaling: Literal["sigmoid", "log"] = Field("sigmoid", description="map from the network output to [lo, hi]")
    init: Optional[float] = Field(None, description="initial value on every reach (default: mid-range)")


class ModelSpec(Strict):
    """The parameter network (reach attributes -> routing parameters)."""

    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES), min_length=1,
                                  description="network columns fed to the network")
    log_columns: Optional[list[str]] = Field(None, description="columns log-transformed before normalising "
                                                               "(default: the positive, skewed ones)")
    hidden: list[int] = Field(default_factory=lambda: [32, 32], description="hidden layer sizes of the MLP")
    outputs: dict[str, OutputDef] = Field(
        default_factory=lambda: {"n": OutputDef(lo=ROUTING_OUTPUTS["n"].lo, hi=ROUTING_OUTPUTS["n"].hi, scaling="log",
                                                init=0.06)}, min_length=1,
        description=f"learned routing parameters (of {sorted(ROUTING_OUTPUTS)}) and their bounds")

    @field_validator("outputs")
    @classmethod
    def _known(cls, v):
        bad = {k for k in v if k not in ROUTING_OUTPUTS and _alias_of(k) not in ROUTING_OUTPUTS}
        if bad:
            raise ValueError(f"model.outputs: cannot learn {sorted(bad)}; learnable: {sorted(ROUTING_OUTPUTS)}")
        return v


class GaugeSpec(Strict):
    """Which gauges to train on."""

    ids: Optional[list[str]] = Field(None, description="gauge ids to use (default: every gauged reach)")
    max_upstream_reaches: Optional[int] = Field(None, ge=1, description="drop gauges with larger upstream networks")
    complete_only: bool = Field(False, description="keep only gauges observed at every forcing row")
    holdout_roots: list[str] = Field(default_factory=list, description=(
        "spatial split: gauge ids of tree roots (rivergraph.training.gauge_splits); every gauge in their trees is "
        "held out of training and scored separately"))


class TrainingSpec(Strict):
    """The optimisation."""

    epochs: int = Field(40, ge=1, description="maximum epochs")
    lr: float = Field(0.01, gt=0, description="Adam learning rate")
    batch_size: int = Field(8, ge=1, description="gauges per mini-batch")
    clip: Optional[float] = Field(1.0, gt=0, description="gradient-norm clip (null: none)")
    patience: int = Field(10, ge=1, description="epochs without validation improvement before stopping")
    seed: int = Field(0, description="random seed (initialisation, batches)")
    train_fraction: float = Field(0.75, gt=0, le=1, description="leading share of the forcing used for training")
    warmup_hours: float = Field(48.0, ge=0, description="hours discarded from every loss (spin-up)")
    loss: Literal["nse", "kge", "l1"] = Field("nse", description="loss per gauge")
    aggregate: Literal["hourly", "daily"] = Field("hourly", description="score hourly values or daily means")
    train_end: Optional[str] = Field(None, description=(
        "temporal split: forcing rows before this time train, the rest is the test period; the trainer then sees "
        "only the training rows (early stopping on the training loss) and train_fraction is ignored"))


class TrainOutputSection(OutputSection):
    """The run directory (config.yml, checkpoints, summary, outputs)."""

    checkpoint: str = Field("checkpoint.pt", description="checkpoint file name inside dir")
    sensitivity_probes: int = Field(16, ge=1, description="Hutchinson probes of the n-sensitivity estimate")


class EvaluationSpec(Strict):
    """Scores by split (train / holdout gauges x train / test period), on daily means, beside baselines."""

    baseline_n: Optional[str] = Field(None, description="network column of a reference n routed as 'before' "
                                                        "(e.g. n)")
    reference: Optional[str] = Field(None, description=(
        "segment series netCDF of another model's routed flow scored beside (e.g. PRMS's seg_outflow.nc)"))

    @field_validator("reference")
    @classmethod
    def _ref(cls, v):
        return existing_path(v, "evaluation.reference")


class TrainConfig(Strict):
    """A training run: ``rivergraph train CONFIG.yaml`` writes a run directory ``output.dir``."""

    network: NetworkSection = Field(default_factory=lambda: NetworkSection(source="lower_colorado"),
                                    description="the river network")
    forcing: ForcingSpec = Field(default_factory=ForcingSpec, description="lateral inflow")
    observations: ObservationSpec = Field(default_factory=ObservationSpec, description="gauge observations")
    routing: TrainRoutingSection = Field(default_factory=TrainRoutingSection, description="routing")
    model: ModelSpec = Field(default_factory=ModelSpec, description="parameter network")
    gauges: GaugeSpec = Field(default_factory=GaugeSpec, description="gauges trained on")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="optimisation")
    output: TrainOutputSection = Field(default_factory=TrainOutputSection, description="run directory")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="split scores and baselines")

    @field_validator("network")
    @classmethod
    def _net(cls, v):
        existing_path(v.source, "network", _datasets())
        return v

    @model_validator(mode="after")
    def _consistent(self):
        src, net = self.forcing.source, self.network.source
        if src in _datasets() and net != src:
            raise ValueError(f"forcing.source '{src}' needs network: {src}")
        clash = set(self.routing.params) & set(self.model.outputs)
        if clash:
            raise ValueError(f"routing.params and model.outputs both set {sorted(clash)}")
        unknown = set(self.model.outputs) - set(mode_parameters(self.routing.mode))
        if unknown:
            raise ValueError(f"model.outputs {sorted(unknown)} are not parameters of routing mode "
                             f"'{self.routing.mode}' ({sorted(mode_parameters(self.routing.mode))})")
        return self

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.output.dir) / self.output.checkpoint


Config = TrainConfig
"""Deprecated name of :class:`TrainConfig`."""


REQUIRED_KEYS = ("network", "forcing", "observations")
"""Keys a training run cannot guess: an empty or partial config is an error rather than a default training."""


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML config; a missing file, bad YAML, unknown keys, bad paths or a missing
    ``network`` / ``forcing`` / ``observations`` key raise clear errors."""
    raw = read_yaml_mapping(path)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing required key(s) {', '.join(missing)} (what to route, its lateral inflow "
                         "and what to compare with), e.g. 'network: lower_colorado', 'forcing: {source: "
                         "synthetic_storms}', 'observations: {source: twin}'; see "
                         "examples/configs/lower_colorado_twin.yaml")
    return TrainConfig.model_validate(raw)
