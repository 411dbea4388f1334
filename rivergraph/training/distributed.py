"""Scale-out: partition a network across processes, and join a torch.distributed process group.

Partitioning (routing a national network): reaches draining to different outlets never exchange water, so
each outlet tree is an independent job. :func:`partition_outlet_trees` assigns whole trees to ``n_parts``
ranks by greedy largest-first bin packing on reach count (Graham 1969, "Bounds on multiprocessing timing
anomalies", SIAM J. Appl. Math. 17(2): the LPT rule is within 4/3 of the optimal makespan).

Training: there is one loop, :func:`rivergraph.training.fit` (and :func:`rivergraph.training.train` on
gauges). Under an initialised process group it is data-parallel: every optimiser step takes a group of
``batches_per_step`` gauge mini-batches (each an independent upstream sub-network, so the same outlet-tree
independence), split across ranks by the same LPT rule (:func:`balance`) on routing cost; one all-reduce sums
the gradients of ``loss / group size``, so every rank takes the step of the group-mean loss: the result
equals single-process training with the same ``batches_per_step`` up to floating-point summation order.
Same checkpoint (written by rank 0), validation, early stopping and exact resume as one process.
Backend: ``nccl`` on GPU, ``gloo`` on CPU.

Run: ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m rivergraph.training.distributed
--help`` (a Lower Colorado twin experiment; see docs/training.md and docs/interfaces.md for slurm).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .partition import balance, outlet_of, partition_outlet_trees

__all__ = ["balance", "partition_outlet_trees", "outlet_of", "init_distributed", "run_ddp_demo", "main"]


# -------------------------------------------------------------------------------------------- DDP
def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group set up by torchrun / slurm (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...);
    ``nccl`` if CUDA is available else ``gloo``. Without those variables: single process, returns (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" not in os.environ and "SLURM_NTASKS" in os.environ:  # plain srun: map slurm's variables
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"distributed run: environment variable {key} is not set (launch with torchrun, or "
                             "export it in the slurm script)")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


# ------------------------------------------------------------------------------------------ command
def _lower_colorado_twin(n_gauges: int, steps: int, dtype: torch.dtype, min_reaches: int, n_val: int = 0):
    """Lower Colorado gauges with real NWM lateral inflow and synthetic twin observations (n from
    :func:`rivergraph.training.twin_law`); the twin keeps this example well posed on 28 hours of forcing.
    Returns ``(sub, q, obs, gauges, val_obs, val_gauges, fixed)``: the ``n_gauges`` smallest live basins train,
    the next ``n_val`` validate (a spatial split; None when 0)."""
    from ..datasets import load_lower_colorado
    from .twin import twin_law, twin_observations

    net, data = load_lower_colorado()
    q = data["q_lateral"][:steps].to(dtype)
    sizes = {int(p): int(net.upstream_mask([p]).sum()) for p in data["gauge_reach"].to_numpy()}
    pos = np.array(sorted((p for p in sizes if sizes[p] >= min_reaches), key=lambda p: (sizes[p], p)))
    live = [p for p in pos if float(q[:, net.upstream_mask([p])].sum()) > 0][:n_gauges + n_val]
    gauges = np.sort(np.array(live[:n_gauges], dtype=np.int64))
    val = np.sort(np.array(live[n_gauges:], dtype=np.int64))
    mask = net.upstream_mask(np.concatenate([gauges, val]))
    sub = net.subset(mask)
    q = q[:, torch.from_numpy(mask)]
    g_sub, v_sub = (np.searchsorted(np.flatnonzero(mask), g) for g in (gauges, val))
    fixed = {"width_coef": 21.0, "width_exp": 0.5}
    every = np.sort(np.concatenate([g_sub, v_sub]))
    obs = twin_observations(sub, q, every, twin_law(sub), fixed=fixed)
    col = lambda g: obs[:, np.searchsorted(every, g)]
    return sub, q, col(g_sub), g_sub, (col(v_sub) if n_val else None), (v_sub if n_val else None), fixed


def run_ddp_demo(*, gauges: int = 8, min_reaches: int = 20, steps: int = 28, epochs: int = 2, batch_size: int = 1,
                 batches_per_step: int = 4, lr: float = 0.01, loss: str = "l1", seed: int = 0, float64: bool = False,
                 checkpoint: str | None = None, resume: bool = False, progress: bool = True, val_gauges: int = 0,
                 patience: int | None = None) -> int:
    """DDP training of Manning's n on Lower Colorado gauge sub-networks (launched with ``python -m
    torch.distributed.run --nproc_per_node=K -m rivergraph.training.distributed [...]``); ``val_gauges`` further
    basins validate (early stopping after ``patience`` epochs, default off)."""
    from ..models.params import ParameterNet
    from .gauges import train
    from .losses import LossSpec

    torch.set_num_threads(1)
    rank, world = init_distributed()
    try:
        dtype = torch.float64 if float64 else torch.float32
        net, q, obs, g, vobs, vg, fixed = _lower_colorado_twin(gauges, steps, dtype, min_reaches, val_gauges)
        torch.manual_seed(seed)
        pnet = ParameterNet({"n": (0.01, 0.3, "log", 0.06)}).to(dtype)
        pnet.scaler.fit(net)
        res = train(pnet, net, q, obs, g, epochs=epochs, lr=lr, batch_size=batch_size,
                    batches_per_step=batches_per_step, seed=seed, spec=LossSpec(loss), fixed=fixed,
                    val_gauges=vg, val_obs=vobs, patience=patience or epochs, checkpoint=checkpoint, resume=resume,
                    progress=progress)
        if rank == 0:
            h0, h1 = res.history[0], res.history[-1]
            print(f"trained on {len(g)} gauges ({len(net)} reaches) with {world} process(es): {res.steps} steps, "
                  f"loss {h0['train_loss']:.4f} -> {h1['train_loss']:.4f}"
                  + (f", validation on {len(vg)} other gauges {h0['val_loss']:.4f} -> {h1['val_loss']:.4f}"
                     if vg is not None else ""))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0




def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torch.distributed.run --nproc_per_node=K -m rivergraph.training.distributed [...]``: the
    ``rivergraph ddp-demo`` command (its options are parsed in :mod:`rivergraph.cli`)."""
    from ..cli import ddp_demo_main

    return ddp_demo_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
