"""Shared pieces of :mod:`rivergraph.runoff`: the error type, id formatting and UTC time handling
(package-private helpers; import the public names from ``rivergraph.runoff``)."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

NEURALHYDROLOGY_CITATION = (
    "Kratzert, F., Gauch, M., Klotz, D. and Nearing, G. (2022): NeuralHydrology -- A Python library for "
    "Deep Learning research in hydrology. Journal of Open Source Software, 7(71), 4050, "
    "https://doi.org/10.21105/joss.04050")

CFS_TO_M3S = 0.0283168
"""Cubic feet per second to m3/s (0.3048**3 = 0.028316846592, rounded as USGS does)."""

_HOUR = pd.Timedelta(hours=1)


class RunoffError(ValueError):
    """Raised for invalid runoff inputs; the message names the offending column, id, time or file."""


def _fmt(items: Iterable, limit: int = 8) -> str:
    items = list(items)
    s = ", ".join(repr(i) for i in items[:limit])
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _id_hint(missing: Sequence, known: Sequence) -> str:
    """A hint when ids fail to match only because of their type (e.g. '10' vs 10)."""
    known_s = {str(k) for k in known}
    if any(str(m) in known_s for m in missing):
        return (" (the ids match as strings: check the id dtype, e.g. str '01022500' vs int 1022500; "
                f"given {type(missing[0]).__name__}, known {type(next(iter(known))).__name__})")
    return ""


def _as_utc(index: pd.Index | Sequence, what: str = "times") -> pd.DatetimeIndex:
    """A tz-aware UTC DatetimeIndex; naive timestamps are taken to be UTC."""
    try:
        idx = pd.DatetimeIndex(index)
    except (TypeError, ValueError) as e:
        raise RunoffError(f"{what}: cannot be read as a DatetimeIndex ({e})") from None
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
