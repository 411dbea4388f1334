"""The wavefront engine: one schedule of anti-diagonals and one sweep over cells (forward and adjoint)."""
from .cell import Cell
from .cells import LinearHeat, MuskingumCungeCell, StaticMuskingum, linear_transport
from .schedule import Schedule
from .sweep import SweepResult, steady_state, sweep

__all__ = ["Schedule", "Cell", "sweep", "SweepResult", "steady_state", "StaticMuskingum", "MuskingumCungeCell",
           "LinearHeat", "linear_transport"]
