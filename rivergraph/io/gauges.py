"""The one gauge CSV format of rivergraph: long rows ``time, gage, reach_id, discharge_m3s``.

``time`` is ISO 8601 UTC (``2021-08-23T13:00:00Z``), ``gage`` the gauge id as text (leading zeros kept),
``reach_id`` the reach it sits on, ``discharge_m3s`` in m3/s (6 significant digits). Observation files in the
same format may add ``quality`` (0 = missing). Written by ``rivergraph route`` / ``train``,
:func:`rivergraph.io.route_to_file`; read by ``rivergraph plot hydrograph --sim/--obs`` and as training
observations (``observations.source``) through :func:`read_gauge_csv`.
"""
from __future__ import annotations

from pathlib import Path
from typing import IO, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_path

__all__ = ["GAUGE_COLUMNS", "GaugeCSVWriter", "write_gauge_csv", "read_gauge_csv", "gauge_table"]

GAUGE_COLUMNS = ("time", "gage", "reach_id", "discharge_m3s")


class GaugeCSVWriter:
    """Appends ``[k, G]`` discharge chunks at ``G`` gauges to a gauge CSV, atomically (context manager)."""

    def __init__(self, path: str | Path, gages: Sequence[str], reach_ids: Sequence):
        self.path = Path(path)
        self.gages = np.asarray([str(g).strip() for g in gages], dtype=object)
        self.reach_ids = np.asarray(reach_ids)
        if len(self.gages) != len(self.reach_ids) or len(self.gages) == 0:
            raise ValueError(f"gauge CSV {self.path}: need one reach id per gauge and at least one gauge")
        self._fh: IO | None = None

    def __enter__(self) -> "GaugeCSVWriter":
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "w", newline="")
        self._fh.write(",".join(GAUGE_COLUMNS) + "\n")
        return self

    def __exit__(self, *exc) -> bool:
        self._fh.close()
        self._fh = None
        return bool(self._ctx.__exit__(*exc))

    def append(self, times, Q) -> None:
        """Rows for ``times`` (k stamps, UTC) and ``Q [k, G]`` (m3/s, gauges in the writer's order)."""
        Q = Q.detach().cpu().numpy() if hasattr(Q, "detach") else np.asarray(Q)
        t = pd.DatetimeIndex(times)
        t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
        T, G = Q.shape
        if T != len(t) or G != len(self.gages):
            raise ValueError(f"gauge rows: expected shape ({len(t)}, {len(self.gages)}), got {Q.shape}")
        df = pd.DataFrame({"time": np.repeat(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(), G),
                           "gage": np.tile(self.gages, T), "reach_id": np.tile(self.reach_ids, T),
                           "discharge_m3s": Q.reshape(-1)})
        df.to_csv(self._fh, header=False, index=False, float_format="%.6g")


def write_gauge_csv(path: str | Path, times, gages: Sequence[str], reach_ids: Sequence, Q) -> Path:
    """Write ``Q [T, G]`` (m3/s) at gauges ``gages`` (on reaches ``reach_ids``) as a gauge CSV."""
    with GaugeCSVWriter(path, gages, reach_ids) as w:
        w.append(times, Q)
    return Path(path)


def read_gauge_csv(path: str | Path) -> pd.DataFrame:
    """Read a gauge CSV (time UTC, gage str, reach_id, discharge_m3s[, quality]); a missing column is an error
    naming it (and pointing at the format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gauge CSV not found: {path}")
    df = pd.read_csv(path, dtype={"gage": str})
    missing = {"time", "gage", "discharge_m3s"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a rivergraph gauge CSV, missing column(s) {sorted(missing)} (expected "
                         f"long rows {', '.join(GAUGE_COLUMNS)}; see rivergraph.io.gauges)")
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["gage"] = df["gage"].str.strip()
    return df


def gauge_table(df: pd.DataFrame, times: pd.DatetimeIndex, gages: Sequence[str]) -> pd.DataFrame:
    """A long gauge table as a wide ``[times, gages]`` frame of discharge (mean of duplicates; ``quality == 0``
    rows are missing; times or gauges without data are NaN)."""
    if "quality" in df:
        df = df.assign(discharge_m3s=df["discharge_m3s"].where(df["quality"] != 0))
    tab = df.pivot_table(index="time", columns="gage", values="discharge_m3s", aggfunc="mean")
    t = pd.DatetimeIndex(times)
    t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
    return tab.reindex(index=t, columns=[str(g) for g in gages])
