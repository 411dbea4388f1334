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


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (YAML requires unique keys; PyYAML
    silently keeps the last one). Keys brought in by a merge (``<<: *anchor``) may still be overridden."""

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise _DuplicateKey(f"duplicate key '{key}' (line {first_line[key]} and line {line}); each "
                                        "key may appear once in a mapping")
                first_line[key] = line
            except TypeError:  # unhashable key: PyYAML reports it
                continue
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (empty file = {}); a missing file, bad YAML, a key given
    twice or a non-mapping raise one-line errors naming the file. Shared by every command's and the BMI's
    config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as e:
        raise ValueError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    return raw
