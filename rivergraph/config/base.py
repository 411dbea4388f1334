"""Building blocks of every rivergraph config: a strict base model, YAML reading, path checks."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = ["Strict", "read_yaml_mapping", "existing_path", "resolve_path"]


class Strict(BaseModel):
    """Unknown keys are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def resolve_path(v: str | Path, base: str | Path | None) -> Path:
    """``v`` as a path; a relative one is taken from ``base`` (the config file's folder) when given, else from
    the working directory."""
    p = Path(v).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def existing_path(v: str | None, key: str, builtins: tuple = ()) -> str | None:
    """``v`` unchanged if it is None, a builtin name, or an existing path; else a ValueError naming ``key``."""
    if v is None or v in builtins:
        return v
    if not Path(v).exists():
        raise ValueError(f"{key}: file not found: {v}")
    return v


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (empty file = {}); a missing file, bad YAML or a
    non-mapping raise one-line errors naming the file. Shared by every command's and the BMI's config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    return raw
