"""Catchment runoff [T, C] -> reach lateral inflow [T, N]: a sparse, mass-conserving linear map."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ._common import RunoffError, _fmt, _id_hint

__all__ = ["CatchmentReachMap"]


class CatchmentReachMap:
    """A sparse linear map from catchment discharge ``[T, C]`` (m3/s) to reach lateral inflow
    ``[T, N]`` (m3/s): ``lateral[:, n] = sum_c weight[c, n] * q[:, c]``, the weights of each catchment
    summing to 1 (its runoff goes somewhere, exactly once). Reaches with no catchment get 0.

    Build with :meth:`one_to_one` (catchment id = reach id) or :meth:`from_table` (a weight table).
    """

    def __init__(self, catchment_ids: Sequence, reach_ids: Sequence, rows: Sequence[int],
                 cols: Sequence[int], weights: Sequence[float]):
        self.catchment_ids = list(catchment_ids)
        self.reach_ids = list(reach_ids)
        C, N = len(self.catchment_ids), len(self.reach_ids)
        idx = torch.tensor(np.vstack([np.asarray(cols, dtype=np.int64), np.asarray(rows, dtype=np.int64)]))
        # stored as [N, C] so that lateral^T = W @ q^T is a sparse @ dense product
        self.matrix = torch.sparse_coo_tensor(idx, torch.tensor(np.asarray(weights, dtype=np.float32)),
                                              (N, C), check_invariants=True).coalesce()

    def __repr__(self) -> str:
        return (f"CatchmentReachMap({len(self.catchment_ids)} catchments -> {len(self.reach_ids)} reaches, "
                f"{self.matrix._nnz()} links)")

    @classmethod
    def one_to_one(cls, catchment_ids: Sequence, reach_ids: Sequence) -> "CatchmentReachMap":
        """Each catchment drains entirely into the reach with the same id; every catchment id must be
        a reach id (reaches without a catchment are allowed)."""
        reach_pos = {r: i for i, r in enumerate(reach_ids)}
        if len(reach_pos) != len(list(reach_ids)):
            raise RunoffError("reach ids are not unique")
        missing = [c for c in catchment_ids if c not in reach_pos]
        if missing:
            raise RunoffError(f"catchment id(s) {_fmt(missing)} are not reach ids (one-to-one mapping)"
                              f"{_id_hint(missing, list(reach_ids))}")
        if len(set(catchment_ids)) != len(list(catchment_ids)):
            raise RunoffError("catchment ids are not unique")
        rows = np.arange(len(catchment_ids))
        return cls(catchment_ids, reach_ids, rows, [reach_pos[c] for c in catchment_ids], np.ones(len(rows)))

    @classmethod
    def from_table(cls, table: pd.DataFrame | str | Path, catchment_ids: Sequence | None = None,
                   reach_ids: Sequence | None = None, weight_col: str | None = None,
                   catchment_col: str = "catchment_id", reach_col: str = "reach_id",
                   atol: float = 1e-4) -> "CatchmentReachMap":
        """From a weight table with columns ``catchment_id``, ``reach_id`` and ``weight`` (or
        ``fraction``): the fraction of each catchment's runoff that enters each reach.

        Args:
            table: DataFrame or CSV path.
            catchment_ids: the catchment order of the runoff columns (default: table order of first
                appearance); catchments missing from the table, or table catchments not in this list,
                are errors naming them.
            reach_ids: the reach order of the output (default: table order); unknown reaches in the
                table are errors.
            weight_col: weight column name (default ``weight``, else ``fraction``).
            atol: tolerance on the per-catchment weight sum of 1.
        """
        if not isinstance(table, pd.DataFrame):
            table = pd.read_csv(table)
        if weight_col is None:
            weight_col = next((c for c in ("weight", "fraction") if c in table.columns), "weight")
        for col in (catchment_col, reach_col, weight_col):
            if col not in table.columns:
                raise RunoffError(f"weight table has no column {col!r}; columns are {_fmt(table.columns)}")
        cats = table[catchment_col].tolist()
        rchs = table[reach_col].tolist()
        w = table[weight_col].to_numpy(dtype=float)
        if catchment_ids is None:
            catchment_ids = list(dict.fromkeys(cats))
        if reach_ids is None:
            reach_ids = list(dict.fromkeys(rchs))
        cpos = {c: i for i, c in enumerate(catchment_ids)}
        rpos = {r: i for i, r in enumerate(reach_ids)}
        unknown = list(dict.fromkeys(c for c in cats if c not in cpos))
        if unknown:
            raise RunoffError(f"weight table names unknown catchment id(s) {_fmt(unknown)}"
                              f"{_id_hint(unknown, catchment_ids)}")
        unknown = list(dict.fromkeys(r for r in rchs if r not in rpos))
        if unknown:
            raise RunoffError(f"weight table names unknown reach id(s) {_fmt(unknown)}{_id_hint(unknown, reach_ids)}")
        bad = [c for c, wi in zip(cats, w) if not np.isfinite(wi) or wi < 0]
        if bad:
            raise RunoffError(f"weight table has negative or non-finite weights for catchment(s) "
                              f"{_fmt(list(dict.fromkeys(bad)))}")
        sums = pd.Series(w).groupby(pd.Series([cpos[c] for c in cats])).sum()
        unmapped = [c for i, c in enumerate(catchment_ids) if i not in sums.index]
        if unmapped:
            raise RunoffError(f"catchment(s) {_fmt(unmapped)} have no row in the weight table (their runoff "
                              "would be lost)")
        off = [(catchment_ids[i], s) for i, s in sums.items() if abs(s - 1.0) > atol]
        if off:
            desc = ", ".join(f"{c!r}: {s:.6g}" for c, s in off[:8])
            raise RunoffError(f"weights must sum to 1 per catchment; they do not for {desc}"
                              + (f", ... ({len(off)} in all)" if len(off) > 8 else ""))
        return cls(catchment_ids, reach_ids, [cpos[c] for c in cats], [rpos[r] for r in rchs], w)

    def dense(self) -> torch.Tensor:
        """The weights as a dense ``[C, N]`` matrix."""
        return self.matrix.to_dense().T

    def apply(self, q_catchment: torch.Tensor) -> torch.Tensor:
        """Catchment discharge ``[T, C]`` (m3/s) -> lateral inflow ``[T, N]`` (m3/s); differentiable
        with respect to ``q_catchment``."""
        if q_catchment.shape[-1] != len(self.catchment_ids):
            raise RunoffError(f"expected {len(self.catchment_ids)} catchment columns, got {q_catchment.shape[-1]}")
        W = self.matrix.to(device=q_catchment.device, dtype=q_catchment.dtype)
        return torch.sparse.mm(W, q_catchment.T).T

    def select_reaches(self, reach_ids: Sequence) -> torch.Tensor:
        """Positions of ``reach_ids`` in this map's reach order; unknown ids are an error naming them."""
        pos = {r: i for i, r in enumerate(self.reach_ids)}
        missing = [r for r in reach_ids if r not in pos]
        if missing:
            raise RunoffError(f"reach id(s) {_fmt(missing)} are not in the catchment-reach map"
                              f"{_id_hint(missing, self.reach_ids)}")
        return torch.tensor([pos[r] for r in reach_ids], dtype=torch.long)
