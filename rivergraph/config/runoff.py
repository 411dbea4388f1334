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

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from .base import Strict

__all__ = ["RunoffSection", "PrecomputedRunoffSection", "DatasetRunoffSection", "LSTMRunoffSection",
           "StaticAttributesSection", "RUNOFF_PROVIDERS",
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


class StaticAttributesSection(Strict):
    """The LSTM's static attributes per catchment: a table, or one CAMELS basin's values for every catchment."""

    table: Optional[str] = Field(None, description="CSV indexed by catchment id (first column), one column per "
                                                   "static attribute of the model, in the units of training")
    camels_dir: Optional[str] = Field(None, description="CAMELS attribute folder (camels_*.txt), with basin")
    basin: Optional[str] = Field(None, description="CAMELS gauge id whose attributes every catchment gets")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.table is None) == (self.camels_dir is None or self.basin is None):
            raise ValueError("static_attributes: give table, or camels_dir and basin")
        return self


class LSTMRunoffSection(RunoffSection):
    """Runoff from a pretrained neuralhydrology LSTM run on forcing per catchment (rivergraph.runoff.lstm_runoff):
    a depth rate in the model's target units (mm/h) per catchment, computed chunk by chunk with the LSTM state
    carried. Catchment ids are the forcing's (ngen: cat-N; map them with mapping.id_replace {'cat-': 'wb-'})."""

    kind: Literal["lstm"] = Field("lstm", description="a pretrained LSTM run on forcing per catchment")
    run_dir: str = Field(description="neuralhydrology run directory (config.yml, model_epochNNN.pt, "
                                     "train_data/train_data_scaler.yml), relative to the config file")
    forcing: str = Field(description="forcing per catchment: a folder of <catchment id>.csv files (ngen cat-N.csv, "
                                     "a time column in UTC) or an ngen forcing.nc")
    inputs: Union[str, dict] = Field("aorc_ngen", description="forcing columns -> model inputs: a preset of "
                                     "rivergraph.runoff.INPUT_PRESETS (aorc_ngen: APCP_surface mm/h = precip_rate "
                                     "mm/s x 3600) or {input: source | [source, scale, offset]}")
    static_attributes: Optional[StaticAttributesSection] = Field(None, description="the model's static "
                                                                                   "attributes per catchment")
    mode: Literal["stateful", "windowed"] = Field("stateful", description="stateful: one sequential run; windowed: "
                                                  "neuralhydrology's seq_length windows (seq_length times costlier)")
    spinup_cycles: int = Field(0, ge=0, description="cyclic spin-up passes over the forcing before the run "
                                                    "(0: zero initial state, as neuralhydrology)")
    epoch: Optional[int] = Field(None, description="weights epoch (default: the last)")
    area: str = Field("catchment_area_km2", description="the catchment area (km2): a network column (id mapping) "
                                                        "or a mapping-table column")


register_runoff_provider(PrecomputedRunoffSection, "rivergraph.runs.route:precomputed_runoff")
register_runoff_provider(DatasetRunoffSection, "rivergraph.runs.route:dataset_runoff")
register_runoff_provider(LSTMRunoffSection, "rivergraph.runs.route:lstm_runoff_source")
