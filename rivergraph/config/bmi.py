"""Config of the Basic Model Interface (``rivergraph.bmi.BmiRiverGraph.initialize``)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field, PositiveFloat

from .base import Strict
from .sections import ModeName

__all__ = ["BmiConfig"]


class BmiConfig(Strict):
    """The BMI configuration file (unknown keys are an error); paths are relative to the file."""

    model_config = ConfigDict(extra="forbid", title="BMI config")

    network: str = Field(description="dataset name (lower_colorado) or a network file for rivergraph.read_network")
    dt_s: PositiveFloat = Field(3600.0, description="routing step (s)")
    time_step_s: Optional[PositiveFloat] = Field(None, description="BMI step = interval of the lateral inflow set "
                                                                   "(s), a multiple of dt_s (default dt_s)")
    mode: ModeName = Field("trapezoid", description="routing mode")
    scheme: Literal["conservative", "standard"] = Field("conservative", description="update form")
    positivity: bool = Field(True, description="non-negative Muskingum coefficients")
    output: Literal["mean", "end", "rapid"] = Field("mean", description="discharge reported per step")
    hot_start: bool = Field(True, description="start from the steady state of the first lateral inflow")
    end_time_s: Optional[PositiveFloat] = Field(None, description="model end time (s)")
    params: dict[str, float] = Field(default_factory=dict, description="scalar routing parameters, e.g. {p: 21}")
    dtype: Literal["float64", "float32"] = Field("float64", description="floating-point precision")
    device: str = Field("cpu", description="torch device")
    output_file: Optional[str] = Field(None, description="also stream the discharge of every update to this CF "
                                                         "file (.nc), closed by finalize()")
