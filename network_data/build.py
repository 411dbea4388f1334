#!/usr/bin/env python3
"""Regenerate the offline datasets in network_data/ from the real reference data.

Usage (from the repository root; the reference data lives beside the repository, in ../shared/data):

    python network_data/build.py [--shared ../shared/data]

Writes:
    network_data/lower_colorado_tx/network.npz   NWM v2.1 Route_Link, routing columns only (save_network_npz)
    network_data/lower_colorado_tx/forcing.npz   28 hourly NWM inflows and streamflow [T, N] float32, in the
                                                 network's reach order, with time (datetime64[ns], UTC) and ids:
                                                 q_lateral = qSfcLatRunoff + qBucket (the inflow the NWM routed),
                                                 q_lateral_packed = CHRTOUT q_lateral (packed to 0.1 m3/s)
    network_data/lower_colorado_tx/lakeparm.csv  NWM LAKEPARM level-pool parameters of the network's 30 lakes
    network_data/lower_colorado_tx/usgs_obs.csv  96 x 15-min USGS discharge slices: time, gage, discharge_m3s,
                                                 quality
    network_data/rapid_sandbox/                  RAPID Sandbox inputs and reference output, copied as they are
See network_data/README.md for sources and licences.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rivergraph.io.readers import read_lakeparm, read_route_link, save_network_npz  # noqa: E402

ROUTER_COLUMNS = ["length_m", "slope", "n", "n_floodplain", "bottom_width_m", "top_width_m",
                  "top_width_floodplain_m", "side_slope", "musk_s", "musx", "order", "elevation_m", "lat", "lon",
                  "gage", "waterbody", "drainage_area_km2"]
"""Route_Link columns shipped: what a Muskingum-Cunge router, gauges and maps need."""
INTEGER_COLUMNS = {"order": np.int16, "waterbody": np.int64}   # waterbody COMIDs exceed float32's integers


def build_lower_colorado(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    net = read_route_link(src / "domain" / "RouteLink.nc")
    attrs = net.attrs[ROUTER_COLUMNS].copy()
    for c in ROUTER_COLUMNS:
        if c in INTEGER_COLUMNS:
            attrs[c] = attrs[c].round().astype(INTEGER_COLUMNS[c])
        elif c != "gage":
            attrs[c] = attrs[c].astype(np.float32)   # the Route_Link's own precision
    net.attrs = attrs
    save_network_npz(net, dst / "network.npz")

    files = sorted((src / "channel_forcing").glob("*.CHRTOUT_DOMAIN1"))
    times, qlat, packed, q = [], [], [], []
    for f in files:
        with xr.open_dataset(f) as ds:
            sel = ds.sel(feature_id=net.ids)       # the network's reach order
            times.append(ds["time"].values[0])
            # the NWM routes qSfcLatRunoff + qBucket (module_channel_routing.F90, drive_CHANNEL_RSL:
            # QLateral = surface runoff + qout_gwsubbas); CHRTOUT q_lateral is that sum packed to 0.1 m3/s
            qlat.append((sel["qSfcLatRunoff"].values + sel["qBucket"].values).astype(np.float32))
            packed.append(sel["q_lateral"].values.astype(np.float32))
            q.append(sel["streamflow"].values.astype(np.float32))
    np.savez_compressed(dst / "forcing.npz", time=np.array(times, dtype="datetime64[ns]"),
                        reach_ids=net.ids.astype(np.int64), q_lateral=np.stack(qlat),
                        q_lateral_packed=np.stack(packed), streamflow=np.stack(q))
    wb = attrs["waterbody"].to_numpy()
    lakes = read_lakeparm(src / "domain" / "LAKEPARM.nc", np.unique(wb[wb > 0]))
    lakes.to_csv(dst / "lakeparm.csv", float_format="%.9g")

    rows = []
    for f in sorted((src / "usgs_TimeSlice").glob("*.usgsTimeSlice.ncdf")):
        with xr.open_dataset(f, decode_times=False) as ds:
            rows.append(pd.DataFrame({
                "time": pd.to_datetime([t.decode() for t in ds["time"].values], format="%Y-%m-%d_%H:%M:%S"),
                "gage": [s.decode().strip() for s in ds["stationId"].values],
                "discharge_m3s": ds["discharge"].values.astype(np.float32),
                "quality": ds["discharge_quality"].values.astype(np.int16)}))
    obs = pd.concat(rows, ignore_index=True).sort_values(["time", "gage"], kind="stable")
    obs["time"] = obs["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    obs.to_csv(dst / "usgs_obs.csv", index=False, float_format="%.9g")


def build_rapid_sandbox(src: Path, dst: Path) -> None:
    for sub in ("input", "reference_output"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / sub).iterdir()):
            shutil.copyfile(f, dst / sub / f.name)   # copyfile: not the source's read-only mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared" / "data",
                    help="the reference data folder (default: ../shared/data beside the repository)")
    a = ap.parse_args()
    build_lower_colorado(a.shared / "lower_colorado_tx", HERE / "lower_colorado_tx")
    build_rapid_sandbox(a.shared / "rapid_sandbox", HERE / "rapid_sandbox")
    for f in sorted(p for p in HERE.rglob("*") if p.is_file()):
        print(f"{f.stat().st_size / 1024:9.1f} KiB  {f.relative_to(HERE)}")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"{total / 1024 / 1024:9.2f} MiB  in all")


if __name__ == "__main__":
    main()
