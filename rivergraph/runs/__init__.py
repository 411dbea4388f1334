"""Config-driven runs: ``rivergraph train`` (run directories), ``rivergraph route`` (a config or a run
directory), ``rivergraph temperature``. Imports are lazy (``from rivergraph.runs import run_training``)."""
from __future__ import annotations

import importlib

__all__ = ["run_training", "run_routing", "route_run", "load_run", "is_run_dir", "run_route", "run_temperature",
           "run_config", "write_parameters"]

_WHERE = {"run_training": "train", "run_routing": "train", "route_run": "train", "load_run": "train",
          "is_run_dir": "train", "write_parameters": "train", "run_route": "route", "run_temperature": "temperature",
          "run_config": "temperature"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
