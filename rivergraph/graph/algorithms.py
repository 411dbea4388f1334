"""Graph algorithms on a river network outside the engine's hot loop: the upstream sum A x and local areas.

``A`` is the network's adjacency with ``A[i, j] = 1`` when reach j drains directly into reach i, so
``(A x)_i`` is the sum of ``x`` over the reaches flowing into reach i -- the message of the wavefront engine
(:mod:`rivergraph.engine`, where it is fused into the sweep) and of a torch-geometric ``MessagePassing`` layer
with ``aggr="add"`` on ``edge_index`` upstream -> downstream (:class:`rivergraph.graph.pyg.UpstreamSum`, the
reference the tests check this against). Everything outside the hot loop that needs A x calls
:func:`upstream_sum`: inflow from a discharge state (BMI, hot starts), heat advected in (temperature budget),
local catchment area from drainage area.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from .network import NetworkError, RiverNetwork

__all__ = ["upstream_sum", "incremental_area_km2", "local_area_km2"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def upstream_sum(x: Array, downstream: RiverNetwork | np.ndarray | torch.Tensor, dim: int = 0) -> Array:
    """A x: for every reach, the sum of ``x`` over the reaches draining directly into it (0 at headwaters).

    Args:
        x: values per reach along ``dim`` (numpy array or torch tensor, any other dimensions, e.g. [T, N]
            with ``dim=1``); a tensor result is differentiable with respect to ``x``.
        downstream: a :class:`RiverNetwork`, or the position of each reach's downstream reach in the same
            order as ``x`` (any value outside ``[0, N)``, e.g. ``-1`` or ``N``, marks an outlet).
        dim: the reach dimension of ``x``.
    Returns:
        An array / tensor like ``x`` (float for numpy input).
    """
    down = downstream.downstream if isinstance(downstream, RiverNetwork) else downstream
    n = x.shape[dim]
    if len(down) != n:
        raise NetworkError(f"upstream_sum: x has {n} reaches along dim {dim}, the network {len(down)}")
    if isinstance(x, torch.Tensor):
        d = torch.as_tensor(down, dtype=torch.long, device=x.device)
        src = torch.nonzero((d >= 0) & (d < n)).squeeze(1)
        return torch.zeros_like(x).index_add(dim, d[src], x.index_select(dim, src))
    d = np.asarray(down, dtype=np.int64)
    src = np.flatnonzero((d >= 0) & (d < n))
    x = np.asarray(x)
    out = np.zeros(x.shape, dtype=np.result_type(x.dtype, np.float64))
    np.add.at(np.moveaxis(out, dim, 0), d[src], np.moveaxis(x, dim, 0)[src])
    return out


def incremental_area_km2(net: RiverNetwork) -> np.ndarray:
    """Drainage area minus the drainage area of the reaches flowing in (km2, ``drainage_area_km2``), floored at
    0 (drainage areas inverted from the NWM top-width law are not always monotone downstream)."""
    A = net.attr("drainage_area_km2")
    return np.clip(A - upstream_sum(A, net), 0.0, None)


def local_area_km2(net: RiverNetwork) -> np.ndarray:
    """Local (incremental) catchment area per reach (km2): ``catchment_area_km2`` if the network has it (clipped
    at 0), else :func:`incremental_area_km2`."""
    if "catchment_area_km2" in net.attrs:
        return np.clip(net.attr("catchment_area_km2"), 0.0, None)
    return incremental_area_km2(net)
