"""The nn.Modules users call: the router, stream temperature and the parameter network."""
from .params import AttributeScaler, OutputSpec, ParameterNet
from .router import MassBalance, MuskingumCunge, RoutingState

__all__ = ["MuskingumCunge", "MassBalance", "RoutingState", "ParameterNet", "OutputSpec", "AttributeScaler"]
