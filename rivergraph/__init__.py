"""rivergraph: graph-based, differentiable river network routing and stream temperature."""
from .graph.network import NetworkError, RiverNetwork, build_network
from .io.readers import read_network
from .models.router import MassBalance, MuskingumCunge, RoutingState

__version__ = "0.1.0"
__all__ = ["RiverNetwork", "NetworkError", "build_network", "read_network", "MuskingumCunge", "RoutingState",
           "MassBalance"]
