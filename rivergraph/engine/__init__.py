"""The wavefront engine: one schedule of anti-diagonals and the sweep over it (forward and adjoint)."""
from .schedule import Schedule
from .sweep import run_wavefront, steady_state

__all__ = ["Schedule", "run_wavefront", "steady_state"]
