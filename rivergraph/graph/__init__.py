"""River networks as validated directed forests, their graph algorithms and the torch-geometric interface
(:mod:`rivergraph.graph.pyg`, imported on demand: it loads torch_geometric)."""
from .algorithms import incremental_area_km2, local_area_km2, upstream_sum
from .network import DEFAULT_MIN_SLOPE, NetworkError, RiverNetwork, build_network

__all__ = ["RiverNetwork", "NetworkError", "build_network", "DEFAULT_MIN_SLOPE", "upstream_sum", "local_area_km2",
           "incremental_area_km2"]
