"""Config of ``rivergraph temperature`` (see docs/temperature.md)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, create_model, model_validator

from ..models.temperature import DEFAULTS, TEMPERATURE_OUTPUTS
from .base import Strict
from .sections import ModeName

__all__ = ["TemperatureConfig", "TemperatureForcing", "TemperatureParameters"]


class TemperatureForcing(Strict):
    """Weather forcing of the heat exchange."""

    kind: Literal["synthetic_texas", "netcdf"] = Field("synthetic_texas", description="synthetic central-Texas "
                                                                                      "summer weather, or a file")
    seed: int = Field(0, description="random seed of the synthetic weather")
    path: Optional[str] = Field(None, description="kind netcdf: file read by "
                                                  "rivergraph.models.temperature.read_forcing_netcdf")

    @model_validator(mode="after")
    def _path(self):
        if self.kind == "netcdf" and not self.path:
            raise ValueError("forcing.kind 'netcdf' needs forcing.path")
        return self


TemperatureParameters = create_model(
    "TemperatureParameters", __base__=Strict, __doc__="Scalar heat-exchange parameters (within the bounds of "
                                                      "rivergraph.models.temperature.TEMPERATURE_OUTPUTS).",
    **{k: (float, Field(DEFAULTS[k], ge=TEMPERATURE_OUTPUTS[k].lo, le=TEMPERATURE_OUTPUTS[k].hi,
                        description=f"{k} in [{TEMPERATURE_OUTPUTS[k].lo:g}, {TEMPERATURE_OUTPUTS[k].hi:g}]"))
       for k in DEFAULTS})


class TemperatureConfig(Strict):
    """``rivergraph temperature``: discharge and stream temperature on the shipped Lower Colorado network."""

    network: Literal["lower_colorado"] = Field("lower_colorado", description="dataset routed (its NWM lateral "
                                                                             "inflow drives the run)")
    mode: ModeName = Field("trapezoid", description="routing mode")
    equilibrium: Literal["energy", "mohseni"] = Field("energy", description="equilibrium temperature: linearised "
                                                                            "energy balance or Mohseni's logistic")
    spinup_hours: int = Field(48, ge=0, le=24 * 60, description="hours with the first inflow held, discarded")
    forcing: TemperatureForcing = Field(default_factory=TemperatureForcing, description="weather forcing")
    parameters: TemperatureParameters = Field(default_factory=TemperatureParameters,  # type: ignore[valid-type]
                                              description="heat-exchange parameters")
    output_dir: str = Field("temperature_out", description="output folder (temperature.nc, temperature.png)")
    plot_gauges: int = Field(4, ge=0, le=20, description="gauged reaches drawn as time series")
    dtype: Literal["float32", "float64"] = Field("float64", description="floating-point precision")
    note: Optional[str] = Field(None, description="free text, ignored")
