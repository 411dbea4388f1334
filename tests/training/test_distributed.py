"""Partitioning by outlet trees, and 2-process DDP training (torchrun, gloo) == single-process training on the
same step groups (same trainer, checkpoint format and validation)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rivergraph.graph.network import build_network
from rivergraph.training import load_checkpoint
from rivergraph.training.distributed import (
    balance,
    main,
    outlet_of,
    partition_outlet_trees,
)

torch.set_num_threads(1)


def test_balance_is_lpt():
    parts = balance([7, 5, 4, 3, 3, 2], 2)
    loads = sorted(sum([7, 5, 4, 3, 3, 2][i] for i in p) for p in parts)
    assert loads == [12, 12]
    assert sorted(np.concatenate(parts).tolist()) == list(range(6))
    assert [len(p) for p in balance([1.0], 3)] == [1, 0, 0]
    with pytest.raises(ValueError, match="n_parts"):
        balance([1.0], 0)


def test_partition_keeps_outlet_trees_whole_and_balanced():
    # trees of 5, 3, 3, 2 and 1 reaches (ids 1..14; 0 = outlet)
    to = {1: 2, 2: 3, 3: 0, 4: 3, 5: 3, 6: 7, 7: 8, 8: 0, 9: 10, 10: 11, 11: 0, 12: 13, 13: 0, 14: 0}
    net = build_network(list(to), list(to.values()))
    tree = outlet_of(net)
    assert (net.downstream[tree] == -1).all()
    parts = partition_outlet_trees(net, 2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(net)))
    for p in parts:
        assert set(tree[p]) & set(tree[np.setdiff1d(np.arange(len(net)), p)]) == set()  # trees not split
    assert sorted(len(p) for p in parts) == [7, 7]
    sub = net.subset(np.isin(np.arange(len(net)), parts[0]))
    assert len(sub) == 7


_ARGS = ["--gauges", "4", "--val-gauges", "2", "--min-reaches", "10", "--steps", "12", "--epochs", "2",
         "--batches-per-step", "4", "--float64", "--no-progress"]


def _weights(path):
    return {k: v for k, v in load_checkpoint(path)["model"].items() if torch.is_tensor(v) and v.is_floating_point()}


def test_two_process_ddp_equals_single_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "rivergraph.training.distributed", *_ARGS, "--checkpoint", str(tmp_path / "ddp.pt")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "with 2 process(es)" in run.stdout
    assert main([*_ARGS, "--checkpoint", str(tmp_path / "one.pt")]) == 0
    ddp, one = load_checkpoint(tmp_path / "ddp.pt"), load_checkpoint(tmp_path / "one.pt")
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    w_ddp, w_one = _weights(tmp_path / "ddp.pt"), _weights(tmp_path / "one.pt")
    assert w_ddp.keys() == w_one.keys()
    for k in w_one:
        torch.testing.assert_close(w_ddp[k], w_one[k], rtol=0, atol=1e-10)
    np.testing.assert_allclose([h["train_loss"] for h in ddp["history"]],
                               [h["train_loss"] for h in one["history"]], rtol=1e-10)
    # validation on held-out gauges (each rank routes a share, one all-reduce) gives the same losses
    np.testing.assert_allclose([h["val_loss"] for h in ddp["history"]],
                               [h["val_loss"] for h in one["history"]], rtol=1e-10)
    assert ddp["format"] == one["format"] == "rivergraph-train-1" and ddp["best_model"] is not None
    # the comparison can fail: a different step grouping (2 batches per step) trains to other weights
    assert main([*_ARGS, "--batches-per-step", "2", "--checkpoint", str(tmp_path / "other.pt")]) == 0
    other = _weights(tmp_path / "other.pt")
    assert max(float((other[k] - w_one[k]).abs().max()) for k in w_one) > 1e-6


def test_bad_input_exit_code(capsys):
    assert main([*_ARGS, "--steps", "0"]) == 2
    assert "rivergraph.training.distributed: error:" in capsys.readouterr().err
