"""The network-reader registry: one entry per file format, resolved once (as neuralhydrology's model zoo).

A format is a reader ``reader(path, **kw) -> RiverNetwork`` plus an optional detector ``detect(path) -> bool``
that says whether a file is in that format (it may peek at the file through :func:`file_fields`, which reads
only the header / schema and caches it). Adding a format is one line beside its reader::

    register_reader("nhm", read_nhm, detect=lambda p: "tosegment" in file_fields(p),
                    description="USGS NHM / PRMS parameters_dis_seg.nc")

:func:`read_network` and :func:`detect_format` consult the registry; detectors run in registration order and
the first that answers ``True`` wins (register specific formats before generic ones). The modules whose import
registers the built-in formats are listed in ``_BUILTIN_MODULES`` (a new reader module adds itself there).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..graph.network import NetworkError, RiverNetwork

__all__ = ["NetworkFormat", "register_reader", "network_formats", "detect_format", "read_network", "file_fields", "require_file"]

_BUILTIN_MODULES = ("rivergraph.io.readers",)
"""Modules that call :func:`register_reader` for the formats shipped with rivergraph (imported on first use)."""

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")


@dataclass(frozen=True)
class NetworkFormat:
    """A registered network format: its name, reader, detector and a one-line description."""

    name: str
    reader: Callable[..., RiverNetwork]
    detect: Callable[[Path], bool] | None = None
    description: str = ""


_FORMATS: dict[str, NetworkFormat] = {}
_loaded = False


def register_reader(name: str, reader: Callable[..., RiverNetwork], detect: Callable[[Path], bool] | None = None,
                    *, description: str = "", replace: bool = False) -> NetworkFormat:
    """Register ``reader`` as network format ``name`` (``read_network(path, format=name)``); ``detect(path)``
    lets :func:`read_network` pick the format by itself. Registering a taken name is an error unless
    ``replace=True``."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"format name must be a non-empty identifier, got {name!r}")
    if name in _FORMATS and not replace:
        raise ValueError(f"network format '{name}' is already registered (pass replace=True to override)")
    fmt = NetworkFormat(name, reader, detect, description)
    _FORMATS[name] = fmt
    return fmt


def _ensure_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(mod)


def network_formats() -> dict[str, NetworkFormat]:
    """Every registered format, in detection order."""
    _ensure_builtin()
    return dict(_FORMATS)


@lru_cache(maxsize=64)
def _fields(path: str, mtime: float, size: int) -> frozenset[str]:
    p = Path(path)
    suf = p.suffix.lower()
    if suf in NETCDF_SUFFIXES:
        import netCDF4

        with netCDF4.Dataset(p) as ds:
            return frozenset(ds.variables)
    if suf == ".csv":
        import pandas as pd

        return frozenset(map(str, pd.read_csv(p, nrows=0).columns))
    if suf in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return frozenset(pq.read_schema(p).names)
    if suf == ".npz":
        import numpy as np

        with np.load(p, allow_pickle=False) as z:
            return frozenset(z.files)
    import pyogrio

    layer = None
    if suf == ".gpkg":
        layers = [n for n, _ in pyogrio.list_layers(p)]
        layer = next((c for c in ("flowpaths", "flowpath", "flowlines", "NHDFlowline_Network") if c in layers), None)
    return frozenset(map(str, pyogrio.read_info(p, layer=layer)["fields"]))


def file_fields(path: str | Path, lower: bool = True) -> frozenset[str]:
    """The variable / column names of a network file (netCDF variables, table columns, the main vector layer's
    fields), lower-cased unless ``lower=False``; read from the header only and cached per file version."""
    p = Path(path)
    st = p.stat()
    names = _fields(str(p.resolve()), st.st_mtime, st.st_size)
    return frozenset(n.lower() for n in names) if lower else names


def detect_format(path: str | Path) -> str:
    """The first registered format whose detector accepts ``path``; a :class:`NetworkError` naming the file's
    fields if none does."""
    path = Path(path)
    for fmt in network_formats().values():
        try:
            hit = fmt.detect is not None and fmt.detect(path)
        except Exception:  # noqa: BLE001 - a file this detector cannot even open is not in its format
            hit = False
        if hit:
            return fmt.name
    try:
        cols = sorted(file_fields(path, lower=False))
    except Exception:  # noqa: BLE001 - unreadable header: say so with the formats known
        cols = []
    raise NetworkError(f"{path}: cannot tell the network format from columns {cols[:20]}; pass format=... "
                       f"(one of {sorted(network_formats())}) or use read_table_network(path, columns=...)")


def read_network(path: str | Path, format: str | None = None, **kw) -> RiverNetwork:
    """Read a river network, detecting the format when not given.

    Formats are those registered (:func:`network_formats`): ``route_link`` (NWM netCDF), ``rapid``
    (rapid_connect CSV), ``nhdplus``, ``hydrofabric``, ``merit`` (vector files read with geopandas, or CSV/parquet
    tables in those schemas), ``table`` (any table with ``columns={...}``; implied when ``columns`` is given),
    ``rivergraph`` (the compact ``.npz`` in ``network_data/``), and any added with :func:`register_reader`.
    Validation keyword arguments (``dangling``, ``divergence``, ``min_slope``) pass to
    :func:`rivergraph.graph.build_network`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"network file not found: {path}")
    if format is None and "columns" in kw:
        format = "table"
    formats = network_formats()
    if format is None and path.is_dir():
        try:
            format = detect_format(path)
        except NetworkError:
            raise NetworkError(f"network path {path} is a folder, not a network file (the folders read are NHM "
                               "parameter folders and .gdb geodatabases)") from None
    name = format or detect_format(path)
    if name not in formats:
        raise NetworkError(f"unknown network format '{name}'; known: {sorted(formats)}")
    return formats[name].reader(path, **kw)


def require_file(path: Path, what: str) -> None:
    """A one-line error for a path that is missing or a folder (a file was expected)."""
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.is_dir() and path.suffix.lower() not in _FOLDER_FORMATS:
        raise NetworkError(f"{what} path {path} is a folder, not a file (folders are read only as "
                           f"{', '.join(_FOLDER_FORMATS)})")


_FOLDER_FORMATS = (".gdb",)
"""Network 'files' that are folders: Esri file geodatabases (NHDPlus HR), read with GDAL."""
