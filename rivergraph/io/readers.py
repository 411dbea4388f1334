"""Readers for river networks and forcing: NWM Route_Link, RAPID, NHDPlusV2, NextGen hydrofabric,
MERIT-Basins and plain tables.

Every reader maps its source schema onto rivergraph's column names and units (see
:mod:`rivergraph.network`) and validates through :func:`rivergraph.network.build_network`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..graph.network import NetworkError, RiverNetwork, _fmt_ids, build_network
from .ids import reach_ids
from .npz import load_network_npz, read_forcing_npz, save_network_npz
from .registry import NETCDF_SUFFIXES, detect_format, file_fields, read_network, register_reader, require_file

__all__ = ["read_network", "read_route_link", "read_rapid", "read_table_network", "SCHEMAS", "detect_format",
           "drainage_area_from_nwm_top_width", "save_network_npz", "load_network_npz", "nwm_side_slope",
           "read_lakeparm", "LAKEPARM_COLUMNS", "read_forcing_npz"]

NWM_TOP_WIDTH_COEF = 2.44
NWM_TOP_WIDTH_EXPONENT = 0.34
"""The NWM's regional hydraulic-geometry power law for bankfull top width, TW (m) = 2.44 * DA (km2) ** 0.34."""

# Source column -> (rivergraph column, multiplier to SI/rivergraph units, or the name of a conversion in
# _CONVERSIONS)
SCHEMAS: dict[str, dict] = {
    "route_link": {
        "id": "link", "to": "to",
        "columns": {"Length": ("length_m", 1.0), "So": ("slope", 1.0), "n": ("n", 1.0),
                    "nCC": ("n_floodplain", 1.0), "BtmWdth": ("bottom_width_m", 1.0),
                    "TopWdth": ("top_width_m", 1.0), "TopWdthCC": ("top_width_floodplain_m", 1.0),
                    "ChSlp": ("side_slope", "nwm_z"), "MusK": ("musk_s", 1.0), "MusX": ("musx", 1.0),
                    "order": ("order", 1.0), "alt": ("elevation_m", 1.0), "lat": ("lat", 1.0),
                    "lon": ("lon", 1.0), "NHDWaterbodyComID": ("waterbody", 1.0)},
    },
    "nhdplus": {
        "id": "COMID", "to": "toCOMID",
        "columns": {"LENGTHKM": ("length_m", 1000.0), "SLOPE": ("slope", 1.0),
                    "TotDASqKM": ("drainage_area_km2", 1.0), "AreaSqKM": ("catchment_area_km2", 1.0),
                    "StreamOrde": ("order", 1.0), "MINELEVSMO": ("elevation_m", 0.01)},
    },
    "hydrofabric": {
        "id": "id", "to": "toid",
        "columns": {"lengthkm": ("length_m", 1000.0), "slope": ("slope", 1.0),
                    "tot_drainage_areasqkm": ("drainage_area_km2", 1.0), "areasqkm": ("catchment_area_km2", 1.0),
                    "order": ("order", 1.0), "n": ("n", 1.0), "BtmWdth": ("bottom_width_m", 1.0),
                    "TopWdth": ("top_width_m", 1.0), "ChSlp": ("side_slope", "nwm_z"),
                    "TopWdthCC": ("top_width_floodplain_m", 1.0), "nCC": ("n_floodplain", 1.0),
                    "rl_NHDWaterbodyComID": ("waterbody", 1.0),
                    # flowpath_attributes (joined on id): NWM channel fields, preferred over the above
                    "So": ("slope", 1.0), "length_m": ("length_m", 1.0), "MusK": ("musk_s", 1.0),
                    "MusX": ("musx", 1.0)},
    },
    "merit": {
        "id": "COMID", "to": "NextDownID",
        "columns": {"lengthkm": ("length_m", 1000.0), "slope": ("slope", 1.0),
                    "uparea": ("drainage_area_km2", 1.0), "unitarea": ("catchment_area_km2", 1.0),
                    "order": ("order", 1.0)},
    },
}

_UNIT_ALIASES = {"length_km": ("length_m", 1000.0)}
"""Column-mapping keys (``read_table_network(columns=...)``) in other units: key -> (rivergraph column,
multiplier)."""


def nwm_side_slope(chslp, ids=None) -> np.ndarray:
    """Trapezoid side slope z (horizontal : vertical) from an NWM ``ChSlp``: ``z = 1 / ChSlp``.

    ``ChSlp`` in the Route_Link (and in hydrofabric ``flowpath_attributes``) is the side slope as the NWM
    uses it, vertical per horizontal: WRF-Hydro ``module_channel_routing.F90`` (``SUBMUSKINGCUNGE``,
    ``MANNING``, ``DIFFUSION``) and t-route ``MCsingleSegStime_f2py_NOLOOP.f90`` (``muskingcungenwm``)
    all take ``z = 1.0/Cs``. ``ChSlp = 0`` is read as ``z = 1`` (45 degrees), as both do
    (``if(Cs .eq. 0) z = 1.0``); the Lower Colorado has none. NaN stays NaN (missing); a negative
    ``ChSlp`` is an error naming the reaches.
    """
    c = np.asarray(chslp, dtype=np.float64)
    bad = c < 0
    if bad.any():
        where = np.asarray(ids)[bad] if ids is not None else np.nonzero(bad)[0]
        raise NetworkError(f"negative ChSlp (side slope) at reaches {_fmt_ids(where)}")
    with np.errstate(divide="ignore"):
        return np.where(c == 0, 1.0, 1.0 / c)


_CONVERSIONS = {"nwm_z": nwm_side_slope}
"""Source-column conversions that are not a unit multiplier (name -> function(values, ids))."""


def _map_columns(df: pd.DataFrame, schema: Mapping) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    ids = df[schema["id"]].to_numpy() if schema.get("id") in df.columns else None
    for src, (dst, mult) in schema["columns"].items():
        if src in df.columns:
            col = pd.to_numeric(pd.Series(df[src].to_numpy()), errors="coerce").to_numpy(dtype=float)
            out[dst] = _CONVERSIONS[mult](col, ids) if isinstance(mult, str) else col * mult
    return out


def _require(df: pd.DataFrame, cols, what: str, path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise NetworkError(f"{path}: missing column(s) {missing} for {what} (has: {list(df.columns)[:30]})")


def drainage_area_from_nwm_top_width(top_width_m, coef: float = NWM_TOP_WIDTH_COEF,
                                     exponent: float = NWM_TOP_WIDTH_EXPONENT) -> np.ndarray:
    """Total drainage area (km2) recovered from an NWM Route_Link bankfull top width (m).

    The NWM v2.x channel parameters are deterministic functions of drainage area DA (km2): the top width
    is the regional power law ``TW = 2.44 * DA**0.34`` (bottom width ``BtmWdth = TW / 1.6667``, side slope
    ``ChSlp`` a power of TW). Inverting it gives ``DA = (TW / 2.44) ** (1 / 0.34)``. On the Lower
    Colorado Route_Link the outlet's TW of 121.8 m gives 98,747 km2 (the Colorado River at Wharton drains
    about 108,000 km2, part of it non-contributing). Non-positive or NaN widths give NaN.
    """
    tw = np.asarray(top_width_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):   # negative widths: NaN from the power, replaced below anyway
        return np.where(tw > 0, (tw / coef) ** (1.0 / exponent), np.nan)


def read_route_link(path: str | Path, **kw) -> RiverNetwork:
    """Read an NWM Route_Link netCDF (link, to, Length m, So, n, nCC, BtmWdth m, TopWdth m, TopWdthCC m,
    ChSlp, MusK s, MusX, order, NHDWaterbodyComID, gages, lat/lon).

    ``side_slope`` is the NWM's ``z = 1 / ChSlp`` (:func:`nwm_side_slope`); the compound channel is
    ``top_width_floodplain_m`` (TopWdthCC) and ``n_floodplain`` (nCC); lake membership is ``waterbody``
    (NHDWaterbodyComID, -9999 where none).

    The Route_Link carries no drainage area; ``drainage_area_km2`` is added by inverting the NWM's
    top-width power law (:func:`drainage_area_from_nwm_top_width`), recorded in
    ``net.report["drainage_area"]``."""
    import xarray as xr

    with xr.open_dataset(path, decode_times=False) as ds:
        if "link" not in ds or "to" not in ds:
            raise NetworkError(f"{path}: not a Route_Link file (needs variables 'link' and 'to')")
        cols = [v for v in list(SCHEMAS["route_link"]["columns"]) + ["link", "to", "gages"] if v in ds.variables]
        df = pd.DataFrame({v: ds[v].values for v in cols})
    attrs = _map_columns(df, SCHEMAS["route_link"])
    if "gages" in df:
        g = df["gages"].to_numpy()
        attrs["gage"] = [x.decode().strip() if isinstance(x, bytes) else str(x).strip() for x in g]
    da_note = None
    if "drainage_area_km2" not in attrs and "top_width_m" in attrs:
        attrs["drainage_area_km2"] = drainage_area_from_nwm_top_width(attrs["top_width_m"].to_numpy())
        da_note = f"inverted from NWM TopWdth = {NWM_TOP_WIDTH_COEF} DA^{NWM_TOP_WIDTH_EXPONENT}"
    kw.setdefault("outlet_ids", (0,))  # the NWM's outlet code; a link id 0 is an error, not an outlet
    link, to = reach_ids(df["link"].to_numpy(), df["to"].to_numpy(), ("link", "to"), str(path), integer=True)
    net = build_network(link, to, attrs,
                        source=f"route_link:{Path(path).name}", **kw)
    if da_note:
        net.report["drainage_area"] = da_note
    return net


LAKEPARM_COLUMNS = {"LkArea": "km2", "LkMxE": "m", "WeirE": "m", "WeirC": "-", "WeirL": "m", "OrificeE": "m",
                    "OrificeC": "-", "OrificeA": "m2", "Dam_Length": "m", "ifd": "-"}
"""NWM LAKEPARM level-pool columns and units (WRF-Hydro ``module_levelpool.F90``, ``LEVELPOOL_PHYSICS``):
lake area, maximum (overtop) elevation, weir crest elevation, weir coefficient and length, orifice
elevation, coefficient and area, dam length, initial fractional depth. Elevations are m above a common
datum."""


def read_lakeparm(path: str | Path, lake_ids=None) -> pd.DataFrame:
    """Read an NWM ``LAKEPARM.nc`` into a DataFrame indexed by ``lake_id`` (NHD waterbody COMID) with
    the columns of :data:`LAKEPARM_COLUMNS` (float64, the file's names and units).

    Args:
        lake_ids: keep these lakes, in this order (e.g. the ``waterbody`` ids of a network); a lake
            missing from the file is an error naming it.
    Raises:
        NetworkError: a missing column, or a non-finite / non-positive-area lake (named).
    """
    import xarray as xr

    with xr.open_dataset(path, decode_times=False) as ds:
        missing = [c for c in ["lake_id", *LAKEPARM_COLUMNS] if c not in ds.variables]
        if missing:
            raise NetworkError(f"{path}: not an NWM LAKEPARM file, missing variable(s) {missing}")
        df = pd.DataFrame({c: ds[c].values.astype(np.float64) for c in LAKEPARM_COLUMNS},
                          index=pd.Index(ds["lake_id"].values.astype(np.int64), name="lake_id"))
    if lake_ids is not None:
        want = pd.Index(np.asarray(lake_ids, dtype=np.int64))
        absent = want[~want.isin(df.index)]
        if len(absent):
            raise NetworkError(f"{path}: lake(s) {_fmt_ids(absent.tolist())} not in LAKEPARM")
        df = df[~df.index.duplicated()].loc[want]
    bad = ~np.isfinite(df.to_numpy()).all(1) | (df["LkArea"].to_numpy() <= 0)
    if bad.any():
        raise NetworkError(f"{path}: non-finite parameters or LkArea <= 0 for lake(s) "
                           f"{_fmt_ids(df.index[bad].tolist())}")
    return df


def read_rapid(path: str | Path, k_csv: str | Path | None = None, x_csv: str | Path | None = None,
               **kw) -> RiverNetwork:
    """Read a RAPID ``rapid_connect.csv`` (id, downstream id, 0 = outlet; extra RAPID1 columns ignored),
    with optional Muskingum k (s) and x CSVs in the same row order. If not given, ``k_*.csv``/``x_*.csv``
    beside a ``rapid_connect_*.csv`` are picked up."""
    path = Path(path)
    require_file(path, "network")
    con = pd.read_csv(path, header=None, dtype=str, skipinitialspace=True)
    if con.shape[1] < 2:
        raise NetworkError(f"{path}: rapid_connect needs at least two columns (id, downstream id)")
    rows = np.arange(len(con)) + 1   # file lines (no header)
    ids, to = reach_ids(con.iloc[:, 0].to_numpy(), con.iloc[:, 1].to_numpy(), ("1 (reach id)", "2 (downstream id)"),
                         str(path), rows, integer=True, to_may_be_blank=False)
    kw.setdefault("outlet_ids", (0,))  # RAPID's outlet code; a reach id 0 is an error, not an outlet
    attrs = pd.DataFrame(index=range(len(ids)))
    suffix = path.name.replace("rapid_connect", "") if "rapid_connect" in path.name else None
    if suffix is not None:
        k_csv = k_csv or (path.parent / f"k{suffix}" if (path.parent / f"k{suffix}").exists() else None)
        x_csv = x_csv or (path.parent / f"x{suffix}" if (path.parent / f"x{suffix}").exists() else None)
    for f, col in ((k_csv, "musk_s"), (x_csv, "musx")):
        if f is not None:
            v = pd.read_csv(f, header=None).iloc[:, 0].to_numpy(float)
            if len(v) != len(ids):
                raise NetworkError(f"{f}: {len(v)} rows but rapid_connect has {len(ids)} reaches")
            attrs[col] = v
    return build_network(ids, to, attrs, source=f"rapid:{path.name}", **kw)


def read_table_network(df_or_path, columns: Mapping[str, str] | None = None, *, schema: str | None = None,
                       layer: str | None = None, **kw) -> RiverNetwork:
    """Read any reach table (CSV, parquet, GeoPackage, shapefile, or a DataFrame).

    Args:
        columns: mapping from rivergraph names to the table's column names. ``id`` and ``to`` are
            required (``to``'s outlet value 0 or NaN); any other key is a rivergraph attribute name in
            its units (e.g. ``{"id": "reach", "to": "next", "length_m": "len_m", "slope": "s"}``), or
            ``length_km`` for a length column in km (stored as ``length_m``).
        schema: one of ``nhdplus``, ``hydrofabric``, ``merit`` (see ``SCHEMAS``) instead of ``columns``.
    """
    geometry = None
    if isinstance(df_or_path, (str, Path)):
        text = [columns[k] for k in ("gage", "id", "to") if columns and k in columns]  # leading zeros, exact ids
        if schema in SCHEMAS:
            text += [SCHEMAS[schema]["id"], SCHEMAS[schema]["to"]]
        df = _read_any_table(Path(df_or_path), layer, text)
        name = Path(df_or_path).name
        # rows as a person finds them: file lines for CSV (header = line 1), else 0-based row numbers
        rows = np.arange(len(df)) + 2 if Path(df_or_path).suffix.lower() == ".csv" else np.arange(len(df))
        row_word = "line" if Path(df_or_path).suffix.lower() == ".csv" else "row"
    else:
        df, name = df_or_path, "table"
        rows, row_word = df.index.to_numpy(), "row"
    if "geometry" in getattr(df, "columns", []) and hasattr(df, "geometry"):
        geometry = df.geometry
    if schema is not None:
        if schema not in SCHEMAS:
            raise NetworkError(f"unknown schema '{schema}'; known: {sorted(SCHEMAS)}")
        sch = SCHEMAS[schema]
        df = _prepare_schema(df, schema, df_or_path, layer)
        if "geometry" in df.columns and hasattr(df, "geometry"):
            geometry = df.geometry
        _require(df, [sch["id"], sch["to"]], f"the {schema} schema", name)
        attrs = _map_columns(df, sch)
        if "gage" in df.columns:  # text gauge ids (leading zeros kept), '' where none
            attrs["gage"] = df["gage"].to_numpy()
        id_col, to_col = sch["id"], sch["to"]
    else:
        if not columns or "id" not in columns or "to" not in columns:
            raise NetworkError("read_table_network needs columns={'id': ..., 'to': ...} or a schema")
        _require(df, list(columns.values()), "the column mapping", name)
        attrs = pd.DataFrame(index=range(len(df)))
        for k, v in columns.items():
            if k in ("id", "to"):
                continue
            if k == "gage":
                attrs[k] = df[v].fillna("").astype(str).str.strip().to_numpy()
                continue
            dst, mult = _UNIT_ALIASES.get(k, (k, 1.0))
            attrs[dst] = pd.to_numeric(df[v], errors="coerce").to_numpy(dtype=float) * mult
        id_col, to_col = columns["id"], columns["to"]
    ids, to = reach_ids(df[id_col].to_numpy(), df[to_col].to_numpy(), (id_col, to_col), name, rows,
                         row_word=row_word)
    if geometry is not None:
        geometry = geometry.reset_index(drop=True)
    net = build_network(ids, to, attrs, geometry, source=f"{schema or 'table'}:{name}", **kw)
    if df.attrs.get("subset_outlets"):
        net.report["subset_outlets"] = df.attrs["subset_outlets"]
    return net


def _read_any_table(path: Path, layer: str | None, text_columns=()):
    require_file(path, "network")
    suf = path.suffix.lower()
    if suf == ".csv":
        return pd.read_csv(path, dtype={c: str for c in text_columns})
    if suf in (".parquet", ".pq"):
        try:
            import geopandas as gpd

            return gpd.read_parquet(path)
        except Exception:  # plain (non-geo) parquet
            return pd.read_parquet(path)
    import geopandas as gpd

    if suf == ".gpkg" and layer is None:
        import pyogrio

        layers = [name for name, _ in pyogrio.list_layers(path)]
        for cand in ("flowpaths", "flowpath", "flowlines", "NHDFlowline_Network", "NHDFlowline"):
            if cand in layers:
                layer = cand
                break
    return gpd.read_file(path, layer=layer)


def _prepare_schema(df: pd.DataFrame, schema: str, src, layer) -> pd.DataFrame:
    """Schema-specific fix-ups: column names matched case-insensitively (nhdplusTools writes lower case),
    NHDPlus Hydroseq links, hydrofabric nexus indirection."""
    df = df.copy()
    sch = SCHEMAS[schema]
    label = Path(src).name if isinstance(src, (str, Path)) else "table"
    wanted = [sch["id"], sch["to"], *sch["columns"], "Hydroseq", "DnHydroseq"]
    lower = {str(c).lower(): c for c in df.columns}
    rename = {lower[w.lower()]: w for w in wanted if w not in df.columns and w.lower() in lower}
    if rename:
        df = df.rename(columns=rename)
    if schema == "nhdplus" and "toCOMID" not in df.columns:
        _require(df, ["COMID", "Hydroseq", "DnHydroseq"], "NHDPlus (toCOMID or Hydroseq/DnHydroseq)", label)
        hs = dict(zip(df["Hydroseq"].to_numpy(), df["COMID"].to_numpy()))
        # DnHydroseq 0 = outlet; a Hydroseq not in the table is a dangling link: keep it visible (as a
        # negative placeholder id) so that build_network errors or warns and counts it per `dangling`
        df["toCOMID"] = [hs.get(h, 0 if h == 0 or pd.isna(h) else f"DnHydroseq {h}")
                         for h in df["DnHydroseq"].to_numpy()]
    if schema == "hydrofabric":
        _require(df, ["id", "toid"], "the hydrofabric schema", label)
        gpkg_layers: list[str] = []
        if isinstance(src, (str, Path)) and Path(src).suffix.lower() == ".gpkg":
            import pyogrio

            gpkg_layers = [n for n, _ in pyogrio.list_layers(src)]
        if "flowpath_attributes" in gpkg_layers:
            df = _join_flowpath_attributes(df, src)
        to = df["toid"].astype(str)
        via_nexus = to.str.match(r"^(nex|tnx|cnx|inx)-")  # nexus, terminal, coastal, internal nexus ids
        if via_nexus.any():
            if "nexus" not in gpkg_layers:
                raise NetworkError("hydrofabric flowpaths point to nexus ids (e.g. "
                                   f"{_fmt_ids(to[via_nexus].unique(), 5)}) but no 'nexus' layer was found to "
                                   "resolve them")
            nexus = pyogrio.read_dataframe(src, layer="nexus", read_geometry=False)
            nx_to = dict(zip(nexus["id"].astype(str), nexus["toid"].astype(str)))
            # a nexus with no downstream flowpath (toid 'wb-0'/empty), or a terminal nexus ('tnx-') the layer lacks,
            # is an outlet; so is a nexus whose downstream flowpath lies outside this file (the outlet nexus of a
            # subset, e.g. a gauge: warned, counted in report["subset_outlets"]). Any other nexus missing from the
            # layer is a dangling link, reported by build_network (error by default; dangling='outlet' warns, counts)
            known = set(df["id"].astype(str))
            new_to, outside = [], {}
            for fp, t, v in zip(df["id"].astype(str), to, via_nexus):
                if not v:
                    new_to.append(t)
                    continue
                if t not in nx_to:
                    new_to.append("0" if t.startswith("tnx-") else f"{t} (not in the nexus layer)")
                    continue
                d = nx_to[t]
                if d not in known and d not in ("", "0", "wb-0", "None", "nan"):
                    outside[fp] = f"{t} -> {d}"
                    d = "0"
                new_to.append(d)
            df["toid"] = new_to
            if outside:
                warnings.warn(f"{len(outside)} flowpath(s) drain through a nexus to flowpaths outside this file and "
                              f"became outlets (report['subset_outlets']): "
                              + _fmt_ids([f"{k} ({v})" for k, v in outside.items()], 5), stacklevel=4)
                df.attrs["subset_outlets"] = outside
        df["toid"] = df["toid"].where(~df["toid"].astype(str).isin(["", "0", "wb-0", "None", "nan"]), 0)
    return df


def _join_flowpath_attributes(df: pd.DataFrame, src) -> pd.DataFrame:
    """Join a hydrofabric GeoPackage's ``flowpath_attributes`` layer (NWM channel fields: n, nCC, So, ChSlp,
    BtmWdth, TopWdth, TopWdthCC, MusK, MusX, length_m, rl_gages) onto the flowpaths by ``id``; ``rl_gages``
    becomes the text ``gage`` column. Flowpaths without attributes are an error naming them."""
    import pyogrio

    fa = pyogrio.read_dataframe(src, layer="flowpath_attributes", read_geometry=False)
    _require(fa, ["id"], "the flowpath_attributes layer", Path(src).name)
    fa = fa.drop_duplicates("id").set_index(fa["id"].astype(str).to_numpy()).drop(columns="id")
    keys = df["id"].astype(str)
    missing = sorted(set(keys) - set(fa.index))
    if missing:
        raise NetworkError(f"{Path(src).name}: flowpath(s) {_fmt_ids(missing)} have no row in flowpath_attributes")
    fa = fa.loc[keys.to_numpy()]
    for c in fa.columns:
        if c == "rl_gages":
            df["gage"] = fa[c].fillna("").astype(str).str.strip().replace({"None": "", "nan": ""}).to_numpy()
        elif c not in df.columns or c in SCHEMAS["hydrofabric"]["columns"]:
            df[c] = fa[c].to_numpy()
    return df


def _is_netcdf_with(*variables: str) -> Callable[[Path], bool]:
    return lambda p: p.suffix.lower() in NETCDF_SUFFIXES and set(variables) <= file_fields(p)


def _is_rapid(path: Path) -> bool:
    """A ``rapid_connect*`` file, or a headerless all-numeric CSV (id, downstream id, ...)."""
    if "rapid_connect" in path.name:
        return True
    if path.suffix.lower() != ".csv":
        return False
    head = pd.read_csv(path, nrows=2, header=None)
    return bool(all(pd.to_numeric(head.iloc[0], errors="coerce").notna()))


def _has_fields(*required: str, any_of: tuple[tuple[str, ...], ...] = ()) -> Callable[[Path], bool]:
    """A table / vector file whose (lower-cased) fields include ``required`` and one of the ``any_of`` groups."""
    def detect(path: Path) -> bool:
        if path.suffix.lower() in NETCDF_SUFFIXES + (".npz",):
            return False
        low = file_fields(path)
        return set(required) <= low and (not any_of or any(set(g) <= low for g in any_of))
    return detect


def _nhm_reader(path, **kw) -> RiverNetwork:
    from .nhm import read_nhm

    return read_nhm(path, **kw)


def _is_nhm(path: Path) -> bool:
    if path.is_dir():
        return (path / "parameters_dis_seg.nc").is_file()
    if path.suffix.lower() not in NETCDF_SUFFIXES:
        return False
    from .nhm import is_nhm_file

    return bool(is_nhm_file(path))


def _schema_reader(schema: str) -> Callable[..., RiverNetwork]:
    return lambda path, **kw: read_table_network(path, schema=schema, **kw)


# One line per format (detection in this order: specific before generic).
register_reader("rivergraph", lambda path, **kw: load_network_npz(path, **kw),
                detect=lambda p: p.suffix.lower() == ".npz", description="rivergraph's compact .npz (network_data/)")
register_reader("route_link", lambda path, **kw: read_route_link(path, **kw), detect=_is_netcdf_with("link"),
                description="NWM Route_Link netCDF (link, to, Length, So, n, ...)")
register_reader("nhm", _nhm_reader, detect=_is_nhm,
                description="USGS NHM / PRMS parameters_dis_seg.nc or its folder (rivergraph.io.nhm)")
register_reader("prms", _nhm_reader, description="alias of nhm")
register_reader("rapid", lambda path, **kw: read_rapid(path, **kw), detect=_is_rapid,
                description="RAPID rapid_connect CSV (id, downstream id) with k/x CSVs")
register_reader("merit", _schema_reader("merit"), detect=_has_fields("comid", "nextdownid"),
                description="MERIT-Basins riv_pfaf (COMID, NextDownID, lengthkm, slope, uparea)")
register_reader("nhdplus", _schema_reader("nhdplus"),
                detect=_has_fields("comid", any_of=(("tocomid",), ("hydroseq", "dnhydroseq"))),
                description="NHDPlusV2 flowlines (COMID, toCOMID or Hydroseq/DnHydroseq, LENGTHKM, SLOPE, ...)")
register_reader("hydrofabric", _schema_reader("hydrofabric"), detect=_has_fields("id", "toid"),
                description="NextGen hydrofabric flowpaths (id, toid via the nexus layer, lengthkm, slope, ...)")
register_reader("table", lambda path, **kw: read_table_network(path, **kw),
                description="any reach table with columns={'id': ..., 'to': ..., ...}")


