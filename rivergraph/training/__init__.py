"""Learning parameters through the router: losses, gauge batches, ONE trainer (one process or DDP), twin
experiments and sensitivity. See docs/training.md for the public API.

- :func:`fit` -- the generic loop (items, ``loss_fn(model, item)``, optional ``validate``), data-parallel
  under torch.distributed, atomic exactly-resumable checkpoints (:func:`load_checkpoint`).
- :func:`train` -- a ParameterNet on gauged discharge: gauge batches x training :class:`Period` windows,
  validation on a period and/or other gauges, :class:`LossSpec` (NSE/KGE/L1, hourly/daily, warm-up, NaN mask).
"""
from ..graph.algorithms import local_area_km2
from .batches import (
           GaugeBatch,
           batch_loss,
           make_batches,
           route_batch,
           route_gauges,
           upstream_router,
)
from .gauges import Period, train, train_step
from .losses import LossSpec, gauge_loss
from .partition import balance, outlet_of, partition_outlet_trees
from .sensitivity import identifiable_reaches, n_sensitivity
from .trainer import (
           CHECKPOINT_FORMAT,
           TrainResult,
           fit,
           load_checkpoint,
           rank_and_world,
)
from .twin import (
           MM_PER_H_KM2_TO_M3S,
           fit_power_law,
           storm_inflow,
           twin_law,
           twin_observations,
)

__all__ = ["fit", "optimizer_step", "train", "train_step", "TrainResult", "load_checkpoint", "CHECKPOINT_FORMAT", "rank_and_world",
           "Period", "LossSpec", "gauge_loss", "GaugeBatch", "make_batches", "batch_loss", "route_batch",
           "route_gauges", "upstream_router", "storm_inflow", "twin_law", "twin_observations", "fit_power_law",
           "MM_PER_H_KM2_TO_M3S", "local_area_km2", "n_sensitivity", "identifiable_reaches", "balance", "outlet_of",
           "partition_outlet_trees"]
