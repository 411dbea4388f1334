"""River networks as validated directed forests, their graph algorithms and the torch-geometric interface."""
from .network import DEFAULT_MIN_SLOPE, NetworkError, RiverNetwork, build_network

__all__ = ["RiverNetwork", "NetworkError", "build_network", "DEFAULT_MIN_SLOPE"]
