"""rivergraph.runoff.units and .time: depth rates <-> discharge, daily <-> hourly, disaggregation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import runoff as R



# ============================================================================ units and time
def test_depth_rate_to_discharge():
    assert R.depth_rate_to_discharge(1.0, 3.6, "mm/h") == pytest.approx(1.0)
    assert R.depth_rate_to_discharge(86.4, 1.0, "mm/day") == pytest.approx(1.0)
    assert R.depth_rate_to_discharge(86.4, 1.0, "mm/d") == pytest.approx(1.0)
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    q = R.depth_rate_to_discharge(x, torch.tensor([3.6, 7.2]), "mm/h")
    torch.testing.assert_close(q, torch.tensor([[1.0, 4.0]]))
    q.sum().backward()
    assert x.grad is not None
    df = pd.DataFrame({"b": [2.4], "a": [24.0]})
    out = R.depth_rate_to_discharge(df, pd.Series({"a": 3.6, "b": 86.4}), "mm/day")
    assert out["a"].iloc[0] == pytest.approx(1.0) and out["b"].iloc[0] == pytest.approx(2.4)
    assert R.discharge_to_depth_rate(1.0, 3.6, "mm/h") == pytest.approx(1.0)
    with pytest.raises(R.RunoffError, match="unknown depth-rate units 'cfs'"):
        R.depth_rate_to_discharge(1.0, 1.0, "cfs")
    with pytest.raises(R.RunoffError, match="no catchment area for column.*'b'"):
        R.depth_rate_to_discharge(df, pd.Series({"a": 1.0}), "mm/h")


def test_daily_to_hourly_and_back():
    days = pd.date_range("2001-03-01", periods=3, freq="D")
    daily = pd.DataFrame({"q": [1.0, 2.0, 4.0]}, index=days)
    hourly = R.daily_to_hourly(daily, utc_offset_hours=-5)
    assert str(hourly.index.tz) == "UTC" and len(hourly) == 72
    assert hourly.index[0] == pd.Timestamp("2001-03-01 05:00", tz="UTC")  # local midnight EST
    assert hourly["q"].iloc[:24].tolist() == [1.0] * 24
    back = R.hourly_to_daily(hourly, utc_offset_hours=-5)
    pd.testing.assert_frame_equal(back, daily.rename_axis("date"), check_freq=False)
    # incomplete days are NaN unless min_hours allows them
    assert R.hourly_to_daily(hourly.iloc[1:], -5)["q"].isna().tolist() == [True, False, False]
    with pytest.raises(R.RunoffError, match="consecutive"):
        R.daily_to_hourly(daily.iloc[[0, 2]])
    with pytest.raises(R.RunoffError, match="naive local calendar dates"):
        R.daily_to_hourly(daily.tz_localize("UTC"))


def test_daily_forcing_to_hourly():
    days = pd.date_range("2001-07-01", periods=2, freq="D")
    daily = pd.DataFrame({"prcp(mm/day)": [24.0, 0.0], "tmin(C)": [10.0, 0.0], "tmax(C)": [20.0, 4.0]}, index=days)
    h = R.daily_forcing_to_hourly(daily, utc_offset_hours=-5)
    assert list(h.columns) == ["APCP_surface", "TMP_2maboveground"]
    assert h.index[0] == pd.Timestamp("2001-07-01 05:00", tz="UTC")
    p = h["APCP_surface"].to_numpy().reshape(2, 24)
    assert p[0].tolist() == [1.0] * 24 and p[1].sum() == 0  # uniform mm/h, daily total kept
    t = h["TMP_2maboveground"].to_numpy().reshape(2, 24)
    assert t.mean(axis=1) == pytest.approx([15.0 + 273.15, 2.0 + 273.15])  # daily mean = (tmin+tmax)/2
    assert t[0].max() <= 20.0 + 273.15 and t[0].min() >= 10.0 + 273.15
    assert int(np.argmax(t[0])) in (14, 15) and int(np.argmin(t[0])) in (2, 3)  # peak ~15:00 local
    mean = R.daily_forcing_to_hourly(daily, -5, temperature="mean")["TMP_2maboveground"]
    assert mean.iloc[:24].tolist() == pytest.approx([288.15] * 24)
    storm = R.daily_forcing_to_hourly(daily, -5, precip_hours=3, precip_start_hour=12)["APCP_surface"]
    assert storm.iloc[12:15].tolist() == [8.0] * 3 and storm.iloc[:24].sum() == pytest.approx(24.0)
    # the named options: 'uniform' (24 h) and the 3-hour afternoon window, also as 'HH-HH'
    assert R.precip_window("uniform") == (0, 24) and R.precip_window("afternoon_3h") == (14, 3)
    assert R.precip_window("14-17") == (14, 3) and R.precip_window((6, 2)) == (6, 2)
    named = R.daily_forcing_to_hourly(daily, -5, precip="14-17")["APCP_surface"].to_numpy().reshape(2, 24)
    assert named[0, 14:17].tolist() == [8.0] * 3 and named[0].sum() == pytest.approx(24.0)
    assert named[0, :14].sum() == 0 and named[0, 17:].sum() == 0
    assert named.sum() == pytest.approx(daily["prcp(mm/day)"].sum())  # the daily totals are kept
    pd.testing.assert_frame_equal(R.daily_forcing_to_hourly(daily, -5, precip="uniform"), h)
    with pytest.raises(R.RunoffError, match="use one of.*'HH-HH'"):
        R.daily_forcing_to_hourly(daily, precip="evening")
    with pytest.raises(R.RunoffError, match="within the local day"):
        R.daily_forcing_to_hourly(daily, precip="22-25")
    with pytest.raises(R.RunoffError, match="no column 'prcp\\(mm/day\\)'"):
        R.daily_forcing_to_hourly(daily.drop(columns="prcp(mm/day)"))
    with pytest.raises(R.RunoffError, match="within the local day"):
        R.daily_forcing_to_hourly(daily, precip_hours=6, precip_start_hour=20)


