"""Config of ``rivergraph route CONFIG.yaml``: any network, any runoff, a period, an initial state, outputs.
Relative paths are taken from the config file's folder."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from .base import Strict, read_yaml_mapping
from .runoff import RunoffSection, runoff_section
from .sections import NetworkSection, OutputSection, RoutingSection

__all__ = ["RouteConfig", "MappingSection", "PeriodSection", "StateSection", "RouteOutputSection",
           "RouteRoutingSection", "load_route_config"]


class MappingSection(Strict):
    """How catchment runoff reaches the reaches (rivergraph.runoff.CatchmentReachMap)."""

    kind: Literal["id", "table"] = Field("id", description="id: catchment id = reach id; table: a weight table")
    table: Optional[str] = Field(None, description="kind table: CSV with catchment_id, reach_id, weight (fractions "
                                                   "of each catchment summing to 1)")
    catchment_column: str = Field("catchment_id", description="weight-table column of catchment ids")
    reach_column: str = Field("reach_id", description="weight-table column of reach ids")
    weight_column: Optional[str] = Field(None, description="weight-table column (default weight, else fraction)")
    id_replace: dict[str, str] = Field(default_factory=dict, description="text replacements turning catchment ids "
                                                                         "into reach ids (e.g. {'cat-': 'wb-'})")

    @model_validator(mode="after")
    def _table(self):
        if self.kind == "table" and not self.table:
            raise ValueError("mapping.kind 'table' needs mapping.table")
        return self


class RouteRoutingSection(RoutingSection):
    """Routing (the shared section) plus a trained run directory to take the learned parameters from."""

    run_dir: Optional[str] = Field(None, description="trained run directory (rivergraph train): its routing mode, "
                                                     "dt and learned parameters")


class PeriodSection(Strict):
    """The simulated period (default: every time of the runoff)."""

    start: Optional[str] = Field(None, description="first time routed (UTC, ISO 8601)")
    end: Optional[str] = Field(None, description="last time routed, inclusive")
    steps: Optional[int] = Field(None, ge=1, description="number of steps from start (instead of end)")

    @model_validator(mode="after")
    def _one_end(self):
        if self.end is not None and self.steps is not None:
            raise ValueError("period: give end or steps, not both")
        return self


class StateSection(Strict):
    """Initial and final routing state."""

    initial: str = Field("hot", description="cold (zero flow), hot (steady state of the first inflow) or a state "
                                            "file (.npz) written by final")
    final: Optional[str] = Field(None, description="write the state at the end of the run here (.npz), to "
                                                   "continue from with initial: FILE")


class RouteOutputSection(OutputSection):
    """What ``rivergraph route`` writes into ``dir``."""

    discharge: Optional[str] = Field("discharge.nc", description="CF file of every written reach (.nc or .zarr; "
                                                                 "null: none)")
    reaches: Union[Literal["all"], list[Union[int, str]]] = Field("all", description="reach ids written to the "
                                                                                    "discharge file, or all")
    gauges: Optional[str] = Field("gauges.csv", description="gauge CSV at the network's gauges (null: none; "
                                                            "skipped when the network has no gauges)")
    variables: list[Literal["streamflow", "q_lateral"]] = Field(["streamflow"], min_length=1,
                                                                description="variables in the discharge file")
    chunk_size: Optional[int] = Field(None, ge=1, description="time steps per chunk (memory ~ chunk x reaches; "
                                                              "default 2 x network depth, within 64 MB)")
    dtype: Literal["float32", "float64"] = Field("float32", description="on-disk precision")
    progress: bool = Field(True, description="progress bar")
    plots: bool = Field(False, description="not used by route (maps and hydrographs: rivergraph plot)")


class RouteConfig(Strict):
    """``rivergraph route CONFIG.yaml``: route a user's runoff on a user's network."""

    network: NetworkSection = Field(description="the river network")
    runoff: SerializeAsAny[RunoffSection] = Field(description="where the runoff comes from (kind: precomputed, dataset, ...)")
    mapping: MappingSection = Field(default_factory=MappingSection, description="catchment -> reach mapping")
    routing: RouteRoutingSection = Field(default_factory=RouteRoutingSection, description="routing")
    period: PeriodSection = Field(default_factory=PeriodSection, description="simulated period")
    state: StateSection = Field(default_factory=StateSection, description="initial and final state")
    output: RouteOutputSection = Field(default_factory=lambda: RouteOutputSection(dir="route_out"),
                                       description="outputs")

    @field_validator("runoff", mode="before")
    @classmethod
    def _runoff(cls, v):
        return runoff_section(v)


def load_route_config(path) -> RouteConfig:
    """Read and validate a route YAML config."""
    return RouteConfig.model_validate(read_yaml_mapping(path))
