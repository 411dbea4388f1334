"""The config package: shared sections, a description on every field, docs/config.md current, registries."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from rivergraph.config.docs import _models, render
from rivergraph.config.route import RouteConfig
from rivergraph.config.runoff import RUNOFF_PROVIDERS
from rivergraph.config.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _all_models() -> dict:
    from rivergraph.config.bmi import BmiConfig
    from rivergraph.config.temperature import TemperatureConfig

    seen: dict = {}
    for m in (RouteConfig, TrainConfig, TemperatureConfig, BmiConfig, *(s for s, _ in RUNOFF_PROVIDERS.values())):
        _models(m, seen)
    return seen


def test_every_field_has_a_description():
    missing = [f"{name}.{k}" for name, m in _all_models().items() for k, f in m.model_fields.items()
               if not (f.description or "").strip()]
    assert missing == []
    assert len(_all_models()) >= 20


def test_docs_config_md_is_current():
    assert (ROOT / "docs" / "config.md").read_text() == render(), "run python -m rivergraph.config.docs"


def test_shared_sections_are_the_same_classes():
    from rivergraph.config.sections import NetworkSection, RoutingSection

    assert RouteConfig.model_fields["network"].annotation is NetworkSection
    assert TrainConfig.model_fields["network"].annotation is NetworkSection
    assert issubclass(TrainConfig.model_fields["routing"].annotation, RoutingSection)
    assert issubclass(RouteConfig.model_fields["routing"].annotation, RoutingSection)


def test_mode_list_comes_from_the_router():
    from rivergraph.physics.channels import CHANNELS

    RouteConfig.model_validate({"network": "lower_colorado", "runoff": {"kind": "dataset"},
                                "routing": {"mode": list(CHANNELS)[-1]}})
    with pytest.raises(ValidationError, match="routing.mode"):
        RouteConfig.model_validate({"network": "lower_colorado", "runoff": {"kind": "dataset"},
                                    "routing": {"mode": "kinematic"}})


def test_network_shorthand_and_alias():
    c = TrainConfig.model_validate({"network": "lower_colorado", "routing": {"fixed": {"p": 3.0, "q": 0.4}}})
    assert c.network.source == "lower_colorado" and c.routing.params == {"p": 3.0, "q": 0.4}
    with pytest.raises(ValidationError, match="file not found"):
        TrainConfig.model_validate({"network": "no/such/file.nc"})
    with pytest.raises(ValidationError, match="unknown network format 'swat'"):
        RouteConfig.model_validate({"network": {"source": "x", "format": "swat"}, "runoff": {"kind": "dataset"}})
    with pytest.raises(ValidationError, match="not parameters of routing mode"):
        TrainConfig.model_validate({"routing": {"mode": "trapezoid", "params": {}},
                                    "model": {"outputs": {"p": {"lo": 1, "hi": 100}}}})


def test_route_config_requires_network_and_runoff_and_dumps_its_provider():
    with pytest.raises(ValidationError) as e:
        RouteConfig.model_validate({})
    assert {err["loc"][0] for err in e.value.errors()} == {"network", "runoff"}
    c = RouteConfig.model_validate({"network": "n.csv", "runoff": {"kind": "precomputed", "path": "r.nc",
                                                                   "units": "mm/h"}})
    assert c.model_dump()["runoff"]["units"] == "mm/h"   # the provider's own fields survive a dump
    with pytest.raises(ValidationError, match="unknown runoff kind"):
        RouteConfig.model_validate({"network": "n.csv", "runoff": {"kind": "lstm2"}})
    with pytest.raises(ValidationError, match="extra"):
        RouteConfig.model_validate({"network": "n.csv", "runoff": {"kind": "dataset", "bogus": 1}})
    with pytest.raises(ValidationError, match="end or steps"):
        RouteConfig.model_validate({"network": "n.csv", "runoff": {"kind": "dataset"},
                                    "period": {"end": "2020-01-02", "steps": 3}})


def test_a_provider_plugs_in_with_one_registration():
    from typing import Literal

    from pydantic import Field

    from rivergraph.config.runoff import RunoffSection, register_runoff_provider

    class Demo(RunoffSection):
        kind: Literal["demo_test"] = Field("demo_test", description="test provider")
        scale: float = Field(1.0, description="scale")

    register_runoff_provider(Demo, "tests.nowhere:build")
    try:
        c = RouteConfig.model_validate({"network": "n.csv", "runoff": {"kind": "demo_test", "scale": 2}})
        assert isinstance(c.runoff, Demo) and c.runoff.scale == 2
    finally:
        RUNOFF_PROVIDERS.pop("demo_test")


def test_datasets_registry_resolves_names():
    from rivergraph.datasets import DATASETS, is_dataset, load_dataset

    assert "lower_colorado" in DATASETS and is_dataset("lower_colorado") and not is_dataset("x.nc")
    with pytest.raises(ValueError, match="unknown dataset 'nowhere'"):
        load_dataset("nowhere")


def test_models_are_pydantic():
    assert all(issubclass(m, BaseModel) for m in _all_models().values())
