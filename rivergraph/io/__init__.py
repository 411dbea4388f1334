"""Reading networks and forcing, writing outputs (one writer), atomic files."""
from .atomic import atomic_path
from .readers import (SCHEMAS, detect_format, load_network_npz, read_network, read_rapid, read_route_link,
                      read_table_network, save_network_npz)
from .nhm import read_hru_params, read_nhm, read_prms_gauges, read_segment_series
from .writer import OutputSummary, read_gauge_csv, route_to_file
from .forcing import read_ngen_forcing
from .hydrofabric import Hydrofabric, read_hydrofabric

__all__ = ["read_network", "read_route_link", "read_rapid", "read_table_network", "detect_format",
           "save_network_npz", "load_network_npz", "SCHEMAS", "route_to_file", "read_gauge_csv", "OutputSummary",
           "atomic_path", "read_hydrofabric", "Hydrofabric", "read_ngen_forcing",
           "read_nhm", "read_prms_gauges", "read_segment_series", "read_hru_params"]
