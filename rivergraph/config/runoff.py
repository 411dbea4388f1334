"""Runoff-provider sections of ``rivergraph route`` and their registry.

A provider section has a ``kind``; :func:`register_runoff_provider` maps the kind to its schema (a subclass of
:class:`RunoffSection`) and to its builder, given as ``"module:function"`` and imported only when a run uses it.
The builder is called as ``build(section, network, base_dir) -> rivergraph.runs.route.CatchmentRunoff``
(catchment ids, units, the available times and ``read(times) -> [T, C]``). Adding a provider (e.g. the LSTM)::

    class LSTMRunoffSection(RunoffSection):
        kind: Literal["lstm"] = Field("lstm", description="...")
        run_dir: str = Field(description="neuralhydrology run directory")
        ...
    register_runoff_provider(LSTMRunoffSection, "rivergraph.runoff.providers:build_lstm")
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import Strict

__all__ = ["RunoffSection", "PrecomputedRunoffSection", "DatasetRunoffSection", "RUNOFF_PROVIDERS",
           "register_runoff_provider", "runoff_section", "RUNOFF_UNITS"]

RUNOFF_UNITS = ("m3/s", "ft3/s", "mm/h", "mm/day", "mm/s")
"""Units a runoff table may be in: discharge per catchment, or a depth rate over the catchment area."""


class RunoffSection(Strict):
    """Base of every runoff provider section (``kind`` picks the provider)."""

    kind: str = Field(description="provider name (rivergraph.config.runoff.RUNOFF_PROVIDERS)")


RUNOFF_PROVIDERS: dict[str, tuple[type[RunoffSection], str]] = {}
"""kind -> (section schema, ``"module:function"`` builder)."""


def register_runoff_provider(schema: type[RunoffSection], build: str) -> None:
    """Make ``runoff: {kind: ...}`` available; ``schema.kind``'s default is the kind name."""
    kind = schema.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{schema.__name__}.kind needs a default (the provider name)")
    RUNOFF_PROVIDERS[kind] = (schema, build)


def runoff_section(v) -> RunoffSection:
    """Validate a runoff mapping with the schema of its ``kind``."""
    if isinstance(v, RunoffSection):
        return v
    if not isinstance(v, dict) or "kind" not in v:
        raise ValueError(f"runoff needs a 'kind', one of {sorted(RUNOFF_PROVIDERS)}")
    if v["kind"] not in RUNOFF_PROVIDERS:
        raise ValueError(f"unknown runoff kind '{v['kind']}'; known: {sorted(RUNOFF_PROVIDERS)}")
    return RUNOFF_PROVIDERS[v["kind"]][0].model_validate(v)


class PrecomputedRunoffSection(RunoffSection):
    """Runoff per catchment from a file: netCDF (a (time, catchment) variable, read one chunk at a time), or a wide
    CSV / parquet (a time column and one column per catchment id; read whole, rivergraph.runoff.PrecomputedRunoff)."""

    kind: Literal["precomputed"] = Field("precomputed", description="runoff read from a file")
    path: str = Field(description="runoff file (.nc, .csv, .parquet), relative to the config file")
    units: Literal[RUNOFF_UNITS] = Field("m3/s", description="units of the values: m3/s or ft3/s per catchment, "
                                                             "or a depth rate (mm/h, mm/day, mm/s) over the "
                                                             "catchment area")
    variable: Optional[str] = Field(None, description="netCDF variable (default: the only (time, x) variable)")
    time: str = Field("time", description="time dimension (netCDF) or column (CSV / parquet)")
    area: str = Field("catchment_area_km2", description="with depth-rate units: the catchment area (km2), a "
                                                        "network column (id mapping) or a mapping-table column")


class DatasetRunoffSection(RunoffSection):
    """The lateral inflow (m3/s per reach) shipped with a named dataset (rivergraph.datasets)."""

    kind: Literal["dataset"] = Field("dataset", description="a dataset's own lateral inflow")
    name: str = Field("lower_colorado", description="dataset name")


register_runoff_provider(PrecomputedRunoffSection, "rivergraph.runs.route:precomputed_runoff")
register_runoff_provider(DatasetRunoffSection, "rivergraph.runs.route:dataset_runoff")
