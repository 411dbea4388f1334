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
