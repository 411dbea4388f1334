"""Small real datasets shipped in the repository's ``network_data/`` folder (offline; see its README.md).

- :func:`load_lower_colorado`: the NWM v2.1 Lower Colorado (TX) network, 28 hourly NWM lateral inflows and
  routed flows, and USGS observations at its gauges.
- :func:`load_rapid_sandbox`: RAPID's 5-reach Sandbox with its inflows and RAPID2's routed reference output.

The folder is found beside the package (``Path(rivergraph.__file__).resolve().parents[1] / "network_data"``,
i.e. a source checkout installed with ``pip install -e .``) or at ``$RIVERGRAPH_NETWORK_DATA``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .io.readers import load_network_npz, read_rapid
from .graph.network import RiverNetwork

__all__ = ["data_dir", "load_lower_colorado", "load_rapid_sandbox", "DATASETS", "register_dataset", "is_dataset",
           "load_dataset", "resolve_network"]


def data_dir() -> Path:
    """The ``network_data/`` folder (``$RIVERGRAPH_NETWORK_DATA`` if set, else beside the package)."""
    env = os.environ.get("RIVERGRAPH_NETWORK_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "network_data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"rivergraph's network_data folder was not found at {path}; install from a source checkout "
            "(pip install -e .) or set RIVERGRAPH_NETWORK_DATA to a copy of it")
    return path


def load_lower_colorado() -> tuple[RiverNetwork, dict]:
    """The NWM v2.1 Lower Colorado River (TX) network and its forcing.

    Returns:
        ``(net, data)``: ``net`` is the validated 11,248-reach :class:`RiverNetwork` (routing columns,
        ``drainage_area_km2`` inverted from the NWM top width); ``data`` holds

        - ``time``: ``pandas.DatetimeIndex`` (UTC) of the 28 hourly steps from 2021-08-23 13:00;
        - ``dt_s``: 3600.0, the step in seconds;
        - ``q_lateral``: float32 tensor [28, N], m3/s, the lateral inflow the NWM routed, CHRTOUT
          ``qSfcLatRunoff + qBucket`` (column i = ``net.ids[i]``); row T was used during the hour ending at
          ``time[T]``;
        - ``q_lateral_packed``: float32 [28, N], CHRTOUT ``q_lateral``, the same sum packed to 0.1 m3/s
          (0 at 98.8 % of reach-hours, half the network's inflow lost; do not route it);
        - ``streamflow``: float32 tensor [28, N], m3/s, the NWM's routed flow, instantaneous at ``time[T]``
          (NaN on the 341 lake-internal reaches; level-pool outflow on the 30 lake outlets);
        - ``lakeparm``: DataFrame (index ``lake_id`` = the network's ``waterbody`` ids) of the 30 lakes'
          NWM LAKEPARM level-pool parameters (:func:`rivergraph.io.read_lakeparm` columns);
        - ``usgs_obs``: DataFrame (time UTC, gage, discharge_m3s, quality) of 15-minute USGS observations
          at 65 gauges on 2021-08-23; quality 0 rows are missing values stored as 0.0;
        - ``gauge_reach``: Series gauge id -> reach position for the gauged reaches.
    """
    root = data_dir() / "lower_colorado_tx"
    net = load_network_npz(root / "network.npz")
    with np.load(root / "forcing.npz", allow_pickle=False) as z:
        if not np.array_equal(z["reach_ids"], net.ids):
            raise ValueError(f"{root / 'forcing.npz'}: reach ids do not match network.npz; rerun network_data/build.py")
        data = {"time": pd.DatetimeIndex(z["time"], tz="UTC"), "dt_s": 3600.0,
                "q_lateral": torch.from_numpy(z["q_lateral"]),
                "q_lateral_packed": torch.from_numpy(z["q_lateral_packed"]),
                "streamflow": torch.from_numpy(z["streamflow"])}
    data["lakeparm"] = pd.read_csv(root / "lakeparm.csv", index_col="lake_id")
    obs = pd.read_csv(root / "usgs_obs.csv", dtype={"gage": str})
    obs["time"] = pd.to_datetime(obs["time"], utc=True)
    data["usgs_obs"] = obs
    gauges = net.gauges()
    data["gauge_reach"] = pd.Series(gauges.index.to_numpy(), index=gauges.to_numpy(), name="reach_position")
    return net, data


def load_rapid_sandbox() -> tuple[RiverNetwork, dict]:
    """RAPID's 5-reach Sandbox (10,20 -> 30; 30,40 -> 50) with Muskingum k = 9000 s, x = 0.25.

    Returns:
        ``(net, data)``: ``net`` has ``musk_s`` and ``musx``; ``data`` holds ``time`` (DatetimeIndex UTC of
        the 80 three-hourly Qext steps from 1970-01-01), ``dt_s`` (10800.0, the forcing step),
        ``dt_routing_s`` (900.0, RAPID2's ``IS_dtR``), ``qext`` (float32 [80, 5] external inflow m3/s),
        ``qinit`` (float64 [5] initial flow m3/s), ``qout_ref`` (float32 [80, 5], RAPID2's routed flow,
        the mean over each Qext interval) and ``qfinal_ref`` (float64 [5], RAPID2's final flow). Columns follow
        ``net.ids``.
    """
    import xarray as xr
    import yaml

    root = data_dir() / "rapid_sandbox"
    inp, ref = root / "input", root / "reference_output"
    net = read_rapid(inp / "rapid_connect_Sandbox.csv")
    ids = net.ids

    def series(path: Path, var: str) -> np.ndarray:
        with xr.open_dataset(path, decode_times=False) as ds:
            return ds[var].sel(rivid=ids).values

    with xr.open_dataset(inp / "Qext_Sandbox_19700101_19700110.nc4") as ds:
        time = pd.DatetimeIndex(ds["time"].values, tz="UTC")
    namelist = yaml.safe_load((inp / "namelist_Sandbox.yml").read_text())
    data = {
        "time": time,
        "dt_s": float((time[1] - time[0]).total_seconds()),
        "dt_routing_s": float(namelist["IS_dtR"]),
        "qext": torch.from_numpy(series(inp / "Qext_Sandbox_19700101_19700110.nc4", "Qext")),
        "qinit": torch.from_numpy(series(inp / "Qinit_Sandbox_19700101_19700110.nc4", "Qout")[0]),
        "qout_ref": torch.from_numpy(series(ref / "Qout_Sandbox_19700101_19700110.nc4", "Qout")),
        "qfinal_ref": torch.from_numpy(series(ref / "Qfinal_Sandbox_19700101_19700110.nc4", "Qout")[0]),
    }
    return net, data


# ------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Dataset:
    """A named dataset: ``load() -> (net, data)`` and what it is."""

    name: str
    load: Callable[[], tuple[RiverNetwork, dict]]
    description: str


DATASETS: dict[str, Dataset] = {}
"""Named datasets, the one place a name such as ``lower_colorado`` is resolved (configs, CLI, BMI)."""


def register_dataset(name: str, load: Callable[[], tuple[RiverNetwork, dict]], description: str) -> None:
    """Make ``name`` usable wherever a network / dataset name is accepted."""
    DATASETS[name] = Dataset(name, load, description)


register_dataset("lower_colorado", load_lower_colorado,
                 "NWM v2.1 Lower Colorado (TX), 11,248 reaches, 28 hourly NWM lateral inflows, USGS observations")
register_dataset("rapid_sandbox", load_rapid_sandbox, "RAPID's 5-reach Sandbox with RAPID2's reference output")


def is_dataset(name) -> bool:
    """Whether ``name`` names a registered dataset (rather than a file)."""
    return isinstance(name, str) and name in DATASETS


def load_dataset(name: str) -> tuple[RiverNetwork, dict]:
    """``(net, data)`` of a registered dataset; an unknown name is an error listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {sorted(DATASETS)}")
    return DATASETS[name].load()


def resolve_network(spec: str | Path, base: str | Path | None = None, format: str | None = None,
                    **kw) -> tuple[RiverNetwork, dict | None]:
    """A network from a dataset name (``(net, data)``) or a file (``(net, None)``, read with
    :func:`rivergraph.read_network`; a relative path is taken from ``base`` when given)."""
    if is_dataset(spec):
        return load_dataset(str(spec))
    from .io.registry import read_network

    path = Path(spec).expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return read_network(path, format=format, **kw), None
