"""Reach ids read from tables: integer where every id spells a whole number, else text; blank ids named by
their line (shared by the table, RAPID and Route_Link readers)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..graph.network import NetworkError, _fmt_ids

__all__ = ["reach_ids"]


_INT_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")
"""Text that spells a whole number: '12', '-3', '12.0' (a float column written by pandas)."""


def _as_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values stripped (bytes decoded) as an object array, and the mask of blank / missing ones."""
    s = pd.Series(values, dtype=object).map(
        lambda v: v.strip() if isinstance(v, str) else (v.decode().strip() if isinstance(v, bytes) else v))
    missing = (s.isna() | (s == "")).to_numpy(dtype=bool)
    return s.to_numpy(dtype=object), missing


def _whole(v) -> int | None:
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() and abs(v) < 2.0 ** 53 else None
    if isinstance(v, str) and _INT_TEXT.match(v):
        return int(v.split(".")[0])
    return None


def _as_ints(text: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """int64 of the present values if every one is a whole number within int64, else None; and the mask of
    present values that are not."""
    vals = [_whole(v) for v in text[~missing]]
    not_int = np.zeros(len(text), dtype=bool)
    not_int[np.flatnonzero(~missing)] = [v is None or not -2 ** 63 <= v < 2 ** 63 for v in vals]
    if not_int.any():
        return None, not_int
    return np.array(vals, dtype=np.int64), not_int


def reach_ids(id_values: np.ndarray, to_values: np.ndarray, columns: tuple[str, str], label: str,
               rows: np.ndarray | None = None, *, integer: bool = False, to_may_be_blank: bool = True,
               row_word: str = "line") -> tuple[np.ndarray, np.ndarray]:
    """Reach ids and downstream ids of a table's two columns, decided together.

    Both become int64 when every present value of both spells a whole number (text, float or integer columns) and
    no two distinct id texts name the same number (e.g. '7' and '007'); otherwise both stay text as given
    (stripped), so that an id and the downstream values naming it always compare equal. A blank / NaN reach id is
    an error naming its rows; a blank downstream id marks an outlet (``None`` in an object array) unless
    ``to_may_be_blank`` is false. ``integer``: non-integer values are an error naming their rows (RAPID, NWM).
    """
    if id_values.dtype.kind in "iu" and to_values.dtype.kind in "iu":  # fast path: NWM, parquet, numpy
        return id_values.astype(np.int64), to_values.astype(np.int64)
    rows = np.arange(len(id_values)) if rows is None else np.asarray(rows)
    id_text, id_missing = _as_text(id_values)
    to_text, to_missing = _as_text(to_values)
    for col, miss in ((columns[0], id_missing), (columns[1], None if to_may_be_blank else to_missing)):
        if miss is not None and miss.any():
            raise NetworkError(f"{label}: blank or missing reach id in column {col} at {row_word}(s) "
                               f"{_fmt_ids(rows[miss])}")
    id_int, id_bad = _as_ints(id_text, id_missing)
    to_int, to_bad = _as_ints(to_text, to_missing)
    if integer and (id_int is None or to_int is None):
        col, bad, text = (columns[0], id_bad, id_text) if id_int is None else (columns[1], to_bad, to_text)
        raise NetworkError(f"{label}: column {col} must hold integer reach ids; not an integer at {row_word}(s) "
                           + _fmt_ids([f"{r} ({t!r})" for r, t in zip(rows[bad], text[bad])]))
    use_int = id_int is not None and to_int is not None
    if use_int and len(np.unique(id_int)) != len(pd.unique(id_text)):
        use_int = False  # distinct text ids that are one number ('7', '007'): keep the text
    if use_int:
        if not to_missing.any():
            return id_int, to_int
        to = np.empty(len(to_text), dtype=object)
        to[~to_missing] = to_int.tolist()
        to[to_missing] = None
        return id_int, to
    to = to_text.copy()
    to[to_missing] = None
    return id_text, to
