"""Config of ``rivergraph temperature`` (see docs/temperature.md)."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, SerializeAsAny, create_model, field_validator, model_validator

from ..models.temperature import DEFAULTS, TEMPERATURE_OUTPUTS
from ..physics.exchange import EXCHANGES
from .base import Strict
from .route import MappingSection, PeriodSection
from .runoff import RunoffSection, runoff_section
from .sections import ModeName, NetworkSection

__all__ = ["TemperatureConfig", "TemperatureForcing", "TemperatureParameters"]


class TemperatureForcing(Strict):
    """Weather forcing of the heat exchange."""

    kind: Literal["synthetic_texas", "netcdf", "prms_sntemp"] = Field(
        "synthetic_texas", description="synthetic central-Texas summer weather, a netCDF file "
                                       "(rivergraph.io.weather.read_forcing_netcdf) or a PRMS-SNTemp drivers "
                                       "file (rivergraph.io.sntemp.read_sntemp_drivers, NHM networks)")
    seed: int = Field(0, description="random seed of the synthetic weather")
    path: Optional[str] = Field(None, description="kind netcdf / prms_sntemp: the file (relative to the config)")
    wind: float = Field(2.0, ge=0.0, le=60.0, description="kind prms_sntemp: wind speed (m/s; PRMS has none)")

    @model_validator(mode="after")
    def _path(self):
        if self.kind in ("netcdf", "prms_sntemp") and not self.path:
            raise ValueError(f"forcing.kind '{self.kind}' needs forcing.path")
        return self


TemperatureParameters = create_model(
    "TemperatureParameters", __base__=Strict, __doc__="Scalar heat-exchange parameters (within the bounds of "
                                                      "rivergraph.models.temperature.TEMPERATURE_OUTPUTS).",
    **{k: (float, Field(DEFAULTS[k], ge=TEMPERATURE_OUTPUTS[k].lo, le=TEMPERATURE_OUTPUTS[k].hi,
                        description=f"{k} in [{TEMPERATURE_OUTPUTS[k].lo:g}, {TEMPERATURE_OUTPUTS[k].hi:g}]"))
       for k in DEFAULTS})


class TemperatureConfig(Strict):
    """``rivergraph temperature``: discharge and stream temperature on any network and forcing."""

    network: NetworkSection = Field(default_factory=lambda: NetworkSection(source="lower_colorado"),
                                    description="the river network (dataset name or file)")
    runoff: Optional[SerializeAsAny[RunoffSection]] = Field(None, description="lateral inflow routed, as in "
                                                            "rivergraph route (default: the network dataset's own)")
    mapping: MappingSection = Field(default_factory=MappingSection, description="catchment -> reach mapping")
    period: PeriodSection = Field(default_factory=PeriodSection, description="simulated period")
    dt_s: Optional[float] = Field(None, gt=0, description="routing and heat step (s; default: the inflow interval)")
    mode: ModeName = Field("trapezoid", description="routing mode")
    routing_params: dict[str, Union[float, str]] = Field(default_factory=dict, description="routing parameters: a "
                                                         "number or a network column (as routing.params of route)")
    equilibrium: Literal["energy", "mohseni"] = Field("energy", description="equilibrium temperature: root of the "
                                                                            "energy balance or Mohseni's logistic")
    surface_exchange: Literal[tuple(EXCHANGES)] = Field(  # type: ignore[valid-type]
        "chapra_edinger", description="surface energy balance of equilibrium 'energy' (rivergraph.physics.exchange): "
        "chapra_edinger (sky longwave, Dalton, Bowen at the air temperature), prms_sntemp (PRMS-SNTemp's balance at "
        "the inflow temperature; needs forcing.kind prms_sntemp and network columns slope, elevation_m) or "
        "prms_sntemp_as_coded (the same over width x length/1000 as PRMS 5 applies it: reproduces PRMS, not physics)")
    spinup_hours: int = Field(48, ge=0, le=24 * 400, description="hours with the first inflow held, discarded")
    dry_m3s: float = Field(0.01, ge=0.0, description="reaches with less outflow are marked not flowing (NaN)")
    forcing: TemperatureForcing = Field(default_factory=TemperatureForcing, description="weather forcing")
    parameters: TemperatureParameters = Field(default_factory=TemperatureParameters,  # type: ignore[valid-type]
                                              description="heat-exchange parameters")
    output_dir: str = Field("temperature_out", description="output folder (temperature.nc, temperature.png)")
    plot_gauges: int = Field(4, ge=0, le=20, description="gauged reaches drawn as time series")
    dtype: Literal["float32", "float64"] = Field("float64", description="floating-point precision")
    note: Optional[str] = Field(None, description="free text, ignored")

    @field_validator("runoff", mode="before")
    @classmethod
    def _runoff(cls, v):
        return None if v is None else runoff_section(v)
