"""Sections shared by the configs of ``rivergraph train``, ``route``, ``temperature`` and the BMI: where the
network comes from, how it is routed, where outputs go."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..physics.channels import CHANNELS
from .base import Strict

__all__ = ["NetworkSection", "RoutingSection", "OutputSection", "ModeName", "mode_parameters"]

ModeName = Literal[tuple(CHANNELS)]  # type: ignore[valid-type]  # the channel registry's geometries


def mode_parameters(mode: str) -> dict[str, str | None]:
    """Routing parameter name -> default network column (None: must be given) of a routing mode, with the
    channel's deprecated aliases (e.g. power_law's p, q) as extra names."""
    from ..physics.channels import get_channel

    ch = get_channel(mode)
    out = {p.name: p.column for p in ch.params}
    out.update({a: out[b] for a, b in ch.aliases.items()})
    return out


class NetworkSection(Strict):
    """The river network: a dataset name (``rivergraph.datasets.DATASETS``, e.g. ``lower_colorado``) or a file
    read by ``rivergraph.read_network``. A plain string is accepted for the whole section (``network: x.nc``)."""

    source: str = Field(description="dataset name (e.g. lower_colorado) or network file (Route_Link .nc, "
                                    "rapid_connect .csv, NHDPlus / hydrofabric / MERIT vector or table, .npz)")
    format: Optional[str] = Field(None, description="reader name from rivergraph.io.network_formats() "
                                                    "(default: detected from the file)")
    columns: Optional[dict[str, str]] = Field(None, description="for a plain table: rivergraph name -> column "
                                                                "name, at least id and to (implies format table)")
    layer: Optional[str] = Field(None, description="layer of a GeoPackage (default: flowpaths / flowlines)")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v):
        return {"source": v} if isinstance(v, str) else v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        if v is not None:
            from ..io.registry import network_formats

            if v not in network_formats():
                raise ValueError(f"unknown network format '{v}'; known: {sorted(network_formats())}")
        return v

    def reader_kwargs(self) -> dict:
        """Keyword arguments for ``read_network`` besides the path."""
        kw = {}
        if self.columns is not None:
            kw["columns"] = self.columns
        if self.layer is not None:
            kw["layer"] = self.layer
        return kw


class RoutingSection(Strict):
    """How the network is routed (``rivergraph.MuskingumCunge``)."""

    mode: ModeName = Field("trapezoid", description="routing mode, a channel geometry of "
                                                    "rivergraph.physics.channels.CHANNELS: static (K, X), trapezoid "
                                                    "or power_law Muskingum-Cunge")
    dt_s: float = Field(3600.0, gt=0, description="routing time step (s)")
    forcing_dt_s: Optional[float] = Field(None, gt=0, description="interval of the lateral-inflow rows and of "
                                                                  "the output (s), a multiple of dt_s "
                                                                  "(default dt_s)")
    scheme: Literal["conservative", "standard"] = Field(
        "conservative", description="update form: conservative (mass-conserving) or standard (NWM / t-route)")
    output: Literal["mean", "end"] = Field("mean", description="discharge per row: mean over the interval or at "
                                                               "its end")
    params: dict[str, Union[float, str]] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "fixed"),
        description="routing parameters: a number (same on every reach) or a network column name; others come "
                    "from the network's default columns (alias: fixed)")
    parameter_file: Optional[str] = Field(None, description="CSV with reach_id and one column per routing "
                                                            "parameter (e.g. a run's parameters.csv)")

    @property
    def fixed(self) -> dict[str, Union[float, str]]:
        """Deprecated name of :attr:`params`."""
        return self.params

    @field_validator("parameter_file")
    @classmethod
    def _exists(cls, v):
        from .base import existing_path

        return existing_path(v, "routing.parameter_file")


class OutputSection(Strict):
    """Where a run writes its files."""

    dir: str = Field("runs/rivergraph", description="output folder (relative to the working directory)")
    plots: bool = Field(True, description="draw figures (PNG) besides the data files")
