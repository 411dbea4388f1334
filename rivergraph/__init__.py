"""rivergraph: graph-based, differentiable river network routing and stream temperature.

The public names below are imported on first use (PEP 562), so ``import rivergraph`` and ``rivergraph --help``
do not load torch."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["RiverNetwork", "NetworkError", "build_network", "read_network", "MuskingumCunge", "RoutingState",
           "MassBalance"]

_WHERE = {"RiverNetwork": ".graph.network", "NetworkError": ".graph.network", "build_network": ".graph.network",
          "read_network": ".io.registry", "MuskingumCunge": ".models.router", "RoutingState": ".models.router",
          "MassBalance": ".models.router"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
