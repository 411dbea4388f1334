#!/usr/bin/env python3
"""Issue 19's national-year target, measured: the 300k tree, 8,760 hourly steps, a checkpointed
forward+backward on the compiled CPU path within 6 GiB of the adjoint's own memory.

    python benchmarks/bench_year.py [--steps 8760] [--reaches 300001] [--modes static,power_law,trapezoid]
                                    [--gauges 1000] [--json PATH]

Per mode, in a fresh subprocess (its own peak): the lateral inflow [T, N] float32 is generated in place
(the benchmark's storm field of ``bench_routing._inflow``: base + storm(t) x U(0, 1), without a second
[T, N] temporary), then one forward+backward of ``MuskingumCunge(..., engine="compiled",
checkpoint_every="auto")`` with ``output_positions`` at ``--gauges`` reaches (every 300th: a loss at
gauges, as in training) and gradients to the parameters (not to q, whose gradient would be another [T, N]).
Reported: reach-steps/s of the forward+backward, the peak resident memory (ru_maxrss) and that peak
above the resident memory once q and the network exist (the routing's own memory: the checkpoints, the
recomputed segment's histories, the kernels' scratch; the 6 GiB target's subject), the segment length k
and the memory model's estimate (``engine.checkpoint.checkpoint_bytes``). The full-history adjoint is not
run: its histories alone (2-3 x [T + 1, N] float32: 19.6-29.4 GiB) do not fit this machine's 23 GiB.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    """Current resident memory (MiB) of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_mode(mode: str, T: int, reaches: int, n_gauges: int) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_routing as br

    from rivergraph import MuskingumCunge
    from rivergraph.engine.cells import MuskingumCungeCell, StaticMuskingum
    from rivergraph.engine.checkpoint import checkpoint_bytes, resolve_checkpoint
    from rivergraph.engine.compiled import history_scratch, snapshot_scratch_bytes

    torch.set_num_threads(1)  # the compiled kernels are single-threaded (bench_routing.run_case)
    net = br._network("national", reaches)
    N = len(net)
    g = torch.Generator().manual_seed(0)
    base = torch.rand(N, generator=g) * 0.2
    storm = torch.rand(T, 1, generator=g) ** 8 * 5.0
    q = torch.empty(T, N)
    for t0 in range(0, T, 512):  # in place, in blocks: no second [T, N] temporary
        blk = q[t0:t0 + 512]
        blk.uniform_(generator=g)
        blk.mul_(storm[t0:t0 + 512]).add_(base)
    router = MuskingumCunge(net, dt=3600.0, mode=mode, engine="compiled", checkpoint_every="auto")
    params = br.mode_params(net, mode, 3600.0, torch.float32)
    gauges = torch.arange(0, N, max(1, N // n_gauges))
    router(q[:4], balance=False, **{k: v.clone().requires_grad_(True) for k, v in params.items()}).sum().backward()
    cell = (StaticMuskingum(3600.0) if mode == "static" else
            MuskingumCungeCell(router.channel, 3600.0, router.positivity, router.scheme == "conservative"))
    before = _rss_mib()
    pp = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    t0 = time.perf_counter()
    Q = router(q, balance=False, hot_start=False, output_positions=gauges, **pp)
    t_fwd = time.perf_counter() - t0
    Q.square().sum().backward()
    t_fb = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    scratch, extra = snapshot_scratch_bytes(cell, torch.float32), history_scratch(cell)
    k = resolve_checkpoint(router.sched, cell, T, torch.float32, "auto", None, scratch, per_step=True,
                           extra_history=extra)
    est = checkpoint_bytes(router.sched, cell, T, torch.float32, k, scratch, per_step=True,
                           extra_history=extra) / 2**20
    finite = all(bool(torch.isfinite(v.grad).all()) and bool(v.grad.abs().sum() > 0) for v in pp.values())
    return {"mode": mode, "N": N, "steps": T, "gauges": len(gauges), "t_fwd_s": t_fwd, "t_fwd_bwd_s": t_fb,
            "fwd_bwd_reach_steps_per_s": N * T / t_fb, "peak_mib": peak, "rss_before_mib": before,
            "routing_peak_mib": peak - before, "q_mib": q.numel() * 4 / 2**20, "checkpoint_every": k,
            "estimate_mib": est, "gradients_finite_nonzero": finite}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8760)
    ap.add_argument("--reaches", type=int, default=300001)
    ap.add_argument("--modes", default="static,power_law,trapezoid")
    ap.add_argument("--gauges", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    for mode in a.modes.split(","):
        code = (f"import json, sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'benchmarks')!r}]; import bench_year as b; "
                f"print('RESULT' + json.dumps(b.run_mode({mode!r}, {a.steps}, {a.reaches}, {a.gauges})))")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        res = [json.loads(line[6:]) for line in p.stdout.splitlines() if line.startswith("RESULT")]
        if not res:
            raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
        r = res[0]
        rows.append(r)
        print(f"{r['mode']:10s} N {r['N']:,} T {r['steps']:,} k {r['checkpoint_every']}: f+b {r['t_fwd_bwd_s']:.1f} s "
              f"(forward {r['t_fwd_s']:.1f} s), {r['fwd_bwd_reach_steps_per_s']:.3g} reach-steps/s; peak "
              f"{r['peak_mib']:,.0f} MiB, of which q {r['q_mib']:,.0f}; routing's own {r['routing_peak_mib']:,.0f} MiB "
              f"(model {r['estimate_mib']:,.0f}); gradients finite and nonzero: "
              f"{r['gradients_finite_nonzero']}", flush=True)
    if a.json:
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({"args": vars(a) | {"json": str(a.json)}, "results": rows}, indent=1))
        tmp.replace(a.json)
        print(f"# results written to {a.json}")


if __name__ == "__main__":
    main()
