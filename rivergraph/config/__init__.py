"""Validated YAML configuration (pydantic)."""
from .schema import BUILTIN_NETWORKS, Config, load_config, read_yaml_mapping

__all__ = ["Config", "load_config", "read_yaml_mapping", "BUILTIN_NETWORKS"]
