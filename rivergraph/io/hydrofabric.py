"""NextGen hydrofabric GeoPackages as a NextGen user has them: flowpaths (``wb-``) with their
``flowpath_attributes`` (NWM channel fields), divides (``cat-``, the catchments that feed them), nexus
points (``nex-``, where flowpaths join) and hydrolocations (gauges at a nexus).

Id conventions (hydrofabric v2, Johnson et al., NOAA-OWP hydrofabric documentation): a divide
``cat-N`` drains entirely into the flowpath named in its ``id`` column (``wb-N``); flowpaths and divides
point downstream at a nexus (``toid = nex-M``), whose ``toid`` is the next flowpath. A gauge
(hydrolocation ``Gages-XXXXXXXX``) sits on a nexus: its discharge is the outflow of the flowpath that
drains into that nexus. The network itself is read by :func:`rivergraph.io.read_network` (schema
``hydrofabric``); this module adds the catchment side the runoff needs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..graph.network import NetworkError, RiverNetwork, _fmt_ids
from .readers import read_network

__all__ = ["Hydrofabric", "read_hydrofabric"]


@dataclass
class Hydrofabric:
    """What :func:`read_hydrofabric` returns.

    Attributes:
        network: the flowpaths as a :class:`RiverNetwork` (ids ``wb-N``), NWM channel fields joined.
        divides: one row per divide (``divide_id`` = ``cat-N``, ``id`` = the flowpath it drains into,
            ``areasqkm``), a GeoDataFrame with the polygons when the file has them.
        nexus: nexus table (``id``, ``toid``), with points when available.
        gauges: gauge id -> flowpath id whose outflow the gauge measures (from hydrolocations; else the
            flowpath attribute ``rl_gages``).
        path: the source file.
    """

    network: RiverNetwork
    divides: pd.DataFrame
    nexus: pd.DataFrame
    gauges: dict[str, str]
    path: Path

    @property
    def catchment_area_km2(self) -> pd.Series:
        """Divide area (km2) indexed by divide id (``cat-N``)."""
        return pd.Series(self.divides["areasqkm"].to_numpy(float), index=self.divides["divide_id"].tolist(),
                         name="area_km2")

    def catchment_table(self) -> pd.DataFrame:
        """``catchment_id, reach_id, weight`` rows: each divide drains wholly (weight 1) into its flowpath --
        the table :meth:`rivergraph.runoff.CatchmentReachMap.from_table` takes."""
        return pd.DataFrame({"catchment_id": self.divides["divide_id"].tolist(),
                             "reach_id": self.divides["id"].tolist(), "weight": 1.0})


def _flowpath_of(divide_id: str) -> str:
    m = re.fullmatch(r"cat-(\d+)", str(divide_id))
    if not m:
        raise NetworkError(f"divide id {divide_id!r} does not follow the 'cat-N' convention and the divides "
                           "layer has no 'id' column naming its flowpath")
    return f"wb-{m.group(1)}"


def read_hydrofabric(path: str | Path, dangling: str = "error") -> Hydrofabric:
    """Read a NextGen hydrofabric GeoPackage (layers ``flowpaths``, ``flowpath_attributes``, ``divides``,
    ``nexus``, optionally ``hydrolocations``).

    Checks, each an error naming the ids at fault: every divide drains into a flowpath of the network,
    no flowpath has two divides, areas are positive. Flowpaths without a divide (possible in the
    hydrofabric) simply get no lateral inflow. ``dangling`` passes to :func:`rivergraph.build_network`.
    """
    import geopandas as gpd
    import pyogrio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hydrofabric file not found: {path}")
    layers = {n for n, _ in pyogrio.list_layers(path)}
    for need in ("flowpaths", "divides"):
        if need not in layers:
            raise NetworkError(f"{path.name}: no '{need}' layer (layers: {sorted(layers)})")
    net = read_network(path, format="hydrofabric", dangling=dangling)
    divides = gpd.read_file(path, layer="divides")
    if "divide_id" not in divides.columns:
        raise NetworkError(f"{path.name}: divides layer has no 'divide_id' column")
    if "id" not in divides.columns:
        divides["id"] = [_flowpath_of(d) for d in divides["divide_id"]]
    divides["id"] = divides["id"].astype(object)
    no_fp = divides["id"].isna() | divides["id"].astype(str).isin(["", "None", "nan"])
    divides.loc[no_fp, "id"] = [_flowpath_of(d) for d in divides.loc[no_fp, "divide_id"]]
    known = set(net.ids.astype(str).tolist())
    orphan = [d for d, f in zip(divides["divide_id"], divides["id"]) if str(f) not in known]
    if orphan:
        raise NetworkError(f"{path.name}: divide(s) {_fmt_ids(orphan)} drain into flowpaths not in the network "
                           f"(e.g. {divides['id'][divides['divide_id'].isin(orphan)].iloc[0]})")
    dup = divides["id"][divides["id"].duplicated()].unique()
    if len(dup):
        raise NetworkError(f"{path.name}: flowpath(s) {_fmt_ids(dup)} have more than one divide")
    area = pd.to_numeric(divides.get("areasqkm"), errors="coerce") if "areasqkm" in divides else None
    if area is None or not (np.isfinite(area) & (area > 0)).all():
        bad = divides["divide_id"] if area is None else divides["divide_id"][~(np.isfinite(area) & (area > 0))]
        raise NetworkError(f"{path.name}: divide(s) {_fmt_ids(bad)} have no positive 'areasqkm'")
    nexus = gpd.read_file(path, layer="nexus") if "nexus" in layers else pd.DataFrame(columns=["id", "toid"])
    gauges: dict[str, str] = {}
    if "hydrolocations" in layers:
        hl = pyogrio.read_dataframe(path, layer="hydrolocations", read_geometry=False)
        fp = pyogrio.read_dataframe(path, layer="flowpaths", read_geometry=False, columns=["id", "toid"])
        into = fp.groupby(fp["toid"].astype(str))["id"].apply(list).to_dict()
        for ref, link, nid in zip(hl.get("hl_reference", []), hl.get("hl_link", []), hl.get("id", [])):
            if str(ref).lower().startswith("gage") and len(into.get(str(nid), [])) == 1:
                gauges[str(link)] = str(into[str(nid)][0])
    for pos, g in net.gauges().items():
        gauges.setdefault(str(g), str(net.ids[pos]))
    return Hydrofabric(net, divides, nexus, gauges, path)
