"""Whole chain on the real Delaware River Basin: the shared pretrained hourly AORC LSTM run on the NHM HRUs'
daily forcing -> HRU runoff (mm/h) x HRU area -> lateral inflow per segment (hru_segment), written as the forcing
.npz of ``examples/configs/delaware_real_lstm.yaml``.

    python examples/delaware_lstm_inflow.py [OUT.npz]      (default runs/delaware_lstm_inflow.npz)

Inputs and choices (docs/training.md, "Delaware: the whole chain"):
* raw/prcp.nc (in/day -> mm/day x 25.4), tmax/tmin.nc (degF -> degC), disaggregated to hourly by
  ``rivergraph.runoff.daily_forcing_to_hourly`` (precipitation uniform over the 24 local hours, temperature a
  sinusoid peaking at 15:00 local time); hours are local standard time, so the daily means line up with the NHM's
  local days (utc_offset_hours=0 here; the model saw UTC AORC hours, a <= 5 h phase difference).
* statics: elev_mean = hru_elev (m: PRMS elev_units = 1 in myparam.param), slope_mean = hru_slope x 1000 (m/km).
* spin-up: the LSTM first runs over 1979 once from a zero state, then over 1979-1980 from that state.
* runoff is the model's QObs(mm/h) (clipped at 0 as in neuralhydrology), times HRU area (km2) -> m3/s; the 4 HRUs
  with hru_segment = 0 are dropped, as PRMS drops them.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from rivergraph.io.nhm import hru_to_segment, read_hru_params, read_nhm
from rivergraph.runoff import NeuralHydrologyLSTM, daily_forcing_to_hourly, depth_rate_to_discharge

ROOT = Path(__file__).resolve().parents[1]
DRB = ROOT.parent / "shared" / "data" / "delaware_nhm_2yr"
LSTM = ROOT.parent / "shared" / "data" / "pretrained_lstm_nwm_aorc_hourly"


def hourly_forcing(raw: Path) -> tuple[np.ndarray, pd.DatetimeIndex, np.ndarray]:
    """[H, T_hours, 2] (precip mm/h, air temperature K), the hourly index and the HRU ids."""
    p = xr.open_dataset(raw / "prcp.nc")["prcp"]
    tx = xr.open_dataset(raw / "tmax.nc")["tmax"]
    tn = xr.open_dataset(raw / "tmin.nc")["tmin"]
    assert p.attrs.get("units") == "in", p.attrs
    days = pd.DatetimeIndex(p["time"].values)
    P = p.values.astype(np.float64) * 25.4
    Tx = (tx.values.astype(np.float64) - 32.0) * 5.0 / 9.0
    Tn = (tn.values.astype(np.float64) - 32.0) * 5.0 / 9.0
    out, idx = [], None
    for h in range(P.shape[1]):
        df = pd.DataFrame({"prcp(mm/day)": P[:, h], "tmin(C)": Tn[:, h], "tmax(C)": Tx[:, h]}, index=days)
        hr = daily_forcing_to_hourly(df, 0.0)
        out.append(hr.to_numpy())
        idx = hr.index
    return np.stack(out).astype(np.float32), idx, p["nhm_id"].values


def main(out_path: Path) -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    net = read_nhm(DRB / "raw")
    hru = read_hru_params(DRB / "raw" / "parameters_dis_hru.nc")
    x, idx, hid = hourly_forcing(DRB / "raw")
    assert np.array_equal(hid, hru["nhm_id"].to_numpy())
    model = NeuralHydrologyLSTM.from_run_dir(LSTM)
    stat = torch.tensor(np.c_[hru["elev_m"], hru["slope_m_per_km"]], dtype=torch.float32)
    xd = torch.from_numpy(x)
    chunk = 24 * 7                                          # weekly chunks, state carried: bounded memory
    with torch.no_grad():
        model.reset_state()
        for s in range(0, 365 * 24, chunk):                 # spin-up over 1979
            model.run_stateful(xd[:, s:s + chunk], stat)
        y = torch.cat([model.run_stateful(xd[:, s:s + chunk], stat) for s in range(0, xd.shape[1], chunk)], 1)
    runoff = y[..., 0].numpy().T.astype(np.float64)         # [T, H] mm/h
    q_hru = depth_rate_to_discharge(runoff, hru["area_km2"].to_numpy()[None, :], "mm/h")
    q_seg = hru_to_segment(np.asarray(q_hru), hru["segment_pos"].to_numpy(), len(net))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, q_lateral=q_seg.astype(np.float32), reach_ids=net.ids,
                        time=idx.tz_convert(None).to_numpy().astype("datetime64[s]"))
    prcp_mm = x[..., 0].sum(1) * 1.0                        # mm over the record per HRU
    print(f"LSTM runoff: basin mean {runoff.mean() * 8766:.0f} mm/yr vs precipitation "
          f"{(prcp_mm * hru['area_km2']).sum() / hru['area_km2'].sum() / 2:.0f} mm/yr; "
          f"{q_seg.shape} -> {out_path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "delaware_lstm_inflow.npz")
