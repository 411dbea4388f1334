"""The benchmark scripts run (tiny sizes, in-process, no timing asserted: throughput lives in benchmarks/)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_routing  # noqa: E402


@pytest.mark.parametrize("method,mode", [("wavefront", "static"), ("wavefront", "mc"), ("heat", "linear"), ("spsolve", "static"),
                                         ("levels", "static"), ("lagged", "nwm")])
def test_bench_routing_cases_run(method, mode):
    case = dict(network="lower_colorado", reaches=0, steps=3, method=method, mode=mode, threads=1,
                dtype="float32", device="cpu", backward=True)
    r = bench_routing.run_case(case)
    assert r["N"] == 11248 and r["t_fwd"] > 0 and r["t_bwd"] > 0 and r["peak_mib"] > 0


def test_bench_routing_nwm_checkpointed_case_runs():
    case = dict(network="lower_colorado", reaches=0, steps=4, method="lagged", mode="nwm", threads=1,
                dtype="float32", device="cpu", backward=True, engine="compiled", checkpoint="auto")
    r = bench_routing.run_case(case)
    assert r["t_fwd"] > 0 and r["t_bwd"] > 0


def test_bench_year_runs_small():
    """bench_year's one mode at a small size: the routing's memory measured and the model's estimate given."""
    import bench_year

    r = bench_year.run_mode("trapezoid", 50, 2001, 20)
    assert r["N"] == 2001 and r["checkpoint_every"] >= 1 and r["estimate_mib"] > 0
    assert r["gradients_finite_nonzero"] and r["t_fwd_bwd_s"] > 0
