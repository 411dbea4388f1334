"""Write a synthetic runoff netCDF (mm/h per catchment, hourly) for a generated network, for ``rivergraph route``.

Usage: python benchmarks/make_runoff.py NETWORK.csv OUT.nc [--hours 8760] [--seed 0]

NETWORK.csv is from ``make_network.py`` (reach_id, local_area_km2, ...). Every catchment gets the same runoff depth
rate each hour (a storm sequence: exponential inter-arrival ~ 60 h, exponential depths, a 6 h linear-reservoir
response, 0.02 mm/h base flow) -- uniform in space so the file compresses to almost nothing whatever its size,
while the lateral inflow (depth x local area) still varies from reach to reach. Written in hour slabs (the full
[T, C] array is never in memory).
"""
import argparse

import netCDF4
import numpy as np
import pandas as pd


def storm_depths(hours: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rain = np.zeros(hours)
    t = 0
    while True:
        t += int(rng.exponential(60.0)) + 1
        if t >= hours:
            break
        rain[t:t + 4] += rng.exponential(2.0)
    r = np.zeros(hours)
    s = 0.0
    for i in range(hours):   # linear reservoir, time constant 6 h
        s += rain[i] - s / 6.0
        r[i] = s / 6.0
    return (r + 0.02).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("out")
    ap.add_argument("--hours", type=int, default=8760)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", default="2020-01-01T00:00:00")
    a = ap.parse_args()
    ids = pd.read_csv(a.network, usecols=["reach_id"])["reach_id"].to_numpy(np.int64)
    depth = storm_depths(a.hours, a.seed)
    with netCDF4.Dataset(a.out, "w") as ds:
        ds.createDimension("time", a.hours)
        ds.createDimension("catchment", len(ids))
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = f"hours since {a.start}", "standard"
        t[:] = np.arange(a.hours)
        c = ds.createVariable("catchment", "i8", ("catchment",))
        c[:] = ids
        v = ds.createVariable("runoff", "f4", ("time", "catchment"), zlib=True, complevel=1,
                              chunksizes=(1, len(ids)))
        v.units = "mm h-1"
        v.long_name = "runoff depth rate per catchment"
        for i0 in range(0, a.hours, 240):
            i1 = min(a.hours, i0 + 240)
            v[i0:i1, :] = np.repeat(depth[i0:i1, None], len(ids), axis=1)
    print(f"wrote {a.out}: {a.hours} h x {len(ids)} catchments, mean {depth.mean():.3f} mm/h")


if __name__ == "__main__":
    main()
