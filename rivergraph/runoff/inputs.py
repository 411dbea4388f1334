"""Model inputs from forcing files: rename and convert forcing columns into the dynamic inputs a pretrained
model was trained on (names and physical units), with named presets.

A spec maps each model input to ``(source column, scale[, offset])``: ``input = source * scale + offset``.
The preset ``"aorc_ngen"`` turns NextGen AORC-format forcing into the NOAA-OWP hourly LSTM's inputs:

* ``APCP_surface`` (mm/h, i.e. kg m-2 per hour, as in the AORC files the model was trained on)
  = ``precip_rate`` (mm/s = kg m-2 s-1, the ngen forcing's rate) x 3600 s/h;
* ``TMP_2maboveground`` (K) = ``TMP_2maboveground`` (K).
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd

from ._common import RunoffError, _fmt

__all__ = ["INPUT_PRESETS", "derive_inputs", "resolve_input_spec"]

InputSpec = Mapping[str, Union[str, Sequence]]

INPUT_PRESETS: dict[str, dict[str, tuple[str, float, float]]] = {
    "aorc_ngen": {"APCP_surface": ("precip_rate", 3600.0, 0.0),
                  "TMP_2maboveground": ("TMP_2maboveground", 1.0, 0.0)},
    "identity": {},
}
"""Named input specs: model input -> (source column, scale, offset)."""


def resolve_input_spec(spec: str | InputSpec | None) -> dict[str, tuple[str, float, float]]:
    """A preset name, a mapping ``{input: source}`` / ``{input: [source, scale, offset]}`` /
    ``{input: {"from": source, "scale": s, "offset": o}}``, or ``None`` (identity) -> normal form."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        if spec not in INPUT_PRESETS:
            raise RunoffError(f"unknown input preset {spec!r}; known: {sorted(INPUT_PRESETS)}")
        return dict(INPUT_PRESETS[spec])
    out = {}
    for name, v in spec.items():
        if isinstance(v, str):
            out[name] = (v, 1.0, 0.0)
        elif isinstance(v, Mapping):
            if "from" not in v:
                raise RunoffError(f"input {name!r}: a mapping needs 'from' (the source column), got {dict(v)}")
            out[name] = (str(v["from"]), float(v.get("scale", 1.0)), float(v.get("offset", 0.0)))
        else:
            v = list(v)
            if not 1 <= len(v) <= 3:
                raise RunoffError(f"input {name!r}: give [source, scale, offset], got {v}")
            out[name] = (str(v[0]), float(v[1]) if len(v) > 1 else 1.0, float(v[2]) if len(v) > 2 else 0.0)
    return out


def derive_inputs(frames: Mapping[object, pd.DataFrame], spec: str | InputSpec | None
                  ) -> dict[object, pd.DataFrame]:
    """Apply an input spec to every catchment's forcing frame: each model input becomes
    ``source * scale + offset``; columns not named in the spec pass through unchanged. A missing source
    column is an error naming the catchment and column."""
    norm = resolve_input_spec(spec)
    out = {}
    for cid, df in frames.items():
        miss = [src for src, _, _ in norm.values() if src not in df.columns]
        if miss:
            raise RunoffError(f"forcing of catchment {cid!r} lacks column(s) {_fmt(miss)} needed by the input "
                              f"spec; columns are {_fmt(df.columns, 20)}")
        new = df.copy()
        for name, (src, scale, offset) in norm.items():
            new[name] = df[src].to_numpy(dtype=np.float64) * scale + offset
        out[cid] = new
    return out
