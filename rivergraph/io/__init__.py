"""Reading networks and forcing (a reader registry), writing outputs (one CF layout, one gauge CSV), atomic files."""
from .atomic import atomic_path
from .cf import CFWriter, open_output, write_discharge
from .forcing import read_ngen_forcing
from .gauges import read_gauge_csv, write_gauge_csv
from .hydrofabric import Hydrofabric, read_hydrofabric
from .nhm import read_hru_params, read_nhm, read_prms_gauges, read_segment_series
from .readers import (LAKEPARM_COLUMNS, SCHEMAS, load_network_npz, nwm_side_slope, read_lakeparm, read_rapid,
                      read_route_link, read_table_network, save_network_npz)
from .registry import detect_format, network_formats, read_network, register_reader
from .writer import OutputSummary, route_to_file

__all__ = ["read_network", "register_reader", "network_formats", "read_route_link", "read_rapid",
           "read_table_network", "detect_format", "save_network_npz", "load_network_npz", "SCHEMAS", "route_to_file",
           "OutputSummary", "CFWriter", "write_discharge", "open_output", "read_gauge_csv", "write_gauge_csv",
           "atomic_path", "read_hydrofabric", "Hydrofabric", "read_ngen_forcing", "read_nhm", "read_prms_gauges",
           "read_segment_series", "read_hru_params", "read_lakeparm", "LAKEPARM_COLUMNS", "nwm_side_slope"]
