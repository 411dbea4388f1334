"""Validated YAML configuration (pydantic): one schema per command, built from shared sections, a description
on every field; ``python -m rivergraph.config.docs`` writes docs/config.md from it."""
from .base import read_yaml_mapping
from .sections import NetworkSection, OutputSection, RoutingSection
from .train import Config, TrainConfig, load_config

__all__ = ["TrainConfig", "Config", "load_config", "read_yaml_mapping", "NetworkSection", "RoutingSection",
           "OutputSection"]
