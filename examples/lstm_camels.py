"""Pretrained hourly LSTM runoff on four real CAMELS-US basins -> discharge (m3/s) -> daily skill.

Runs the NOAA-OWP neuralhydrology model (CudaLSTM, trained on hourly AORC forcing) on CAMELS Daymet
*daily* forcing disaggregated to hourly (precipitation uniform over the local day, temperature a
sinusoid between tmin and tmax), converts its runoff (mm/h) to m3/s with each basin's area, averages
to local days and scores it against USGS daily streamflow (NSE, KGE). Offline; a few seconds on CPU:

    python examples/lstm_camels.py --out out/

Writes ``out/lstm_camels_hydrographs.png`` and ``out/lstm_camels_metrics.csv`` and prints the table.
:func:`camels_runoff` is the reusable part (e.g. to feed a router with ``result.provider``).

Data: CAMELS-US (Newman et al. 2015; Addor et al. 2017) as shipped with neuralhydrology's test data;
model format: neuralhydrology (Kratzert et al. 2022, JOSS 7(71), 4050).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from rivergraph import runoff as R
from rivergraph.metrics import kge, kge_components, nse

DATA = Path(os.environ.get("RIVERGRAPH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
"""The reference data: ``$RIVERGRAPH_DATA``, else ``../shared/data`` beside the repository."""
CAMELS_DIR = DATA / "camels_us_4basins"
RUN_DIR = DATA / "pretrained_lstm_nwm_aorc_hourly"
BASINS = ("01022500", "01547700", "02064000", "03015500")


@dataclass
class CamelsRunoff:
    """What :func:`camels_runoff` returns (discharge in m3/s; hourly on UTC, daily on local dates)."""

    provider: R.LSTMRunoff                 # RunoffProvider: lateral_inflow(times, reach_ids), reach id = basin id
    times: pd.DatetimeIndex                # hourly UTC times that were simulated
    q_hourly: pd.DataFrame                 # [T, basin] simulated m3/s
    q_daily: pd.DataFrame                  # [day, basin] simulated daily mean m3/s (local standard days)
    obs_daily: pd.DataFrame                # [day, basin] USGS daily mean m3/s (NaN = missing)
    precip_daily_mm: pd.DataFrame          # [day, basin] Daymet precipitation mm/day
    area_km2: pd.Series                    # basin area (km2, Daymet header = neuralhydrology's)
    metrics: pd.DataFrame                  # per basin over the evaluation period
    eval_period: tuple[str, str] = field(default=("2000-10-01", "2002-09-30"))


def camels_runoff(basins: Sequence[str] = BASINS, camels_dir: str | Path = CAMELS_DIR,
                  run_dir: str | Path = RUN_DIR, start: str = "2000-01-01", end: str = "2002-09-30",
                  eval_start: str = "2000-10-01", utc_offset_hours: float = -5.0,
                  mode: Literal["stateful", "windowed"] = "stateful",
                  temperature: Literal["sinusoid", "mean"] = "sinusoid", precip_hours: int = 24,
                  precip_start_hour: int = 0, trainable: Literal["head", "all", "none"] = "none",
                  precip: str | None = None) -> CamelsRunoff:
    """Run the pretrained hourly LSTM on CAMELS basins and score it against USGS daily flow.

    Args:
        basins: 8-digit CAMELS gauge ids.
        camels_dir: folder with ``basin_mean_forcing/daymet``, ``usgs_streamflow``, ``camels_attributes_v2.0``.
        run_dir: a neuralhydrology run directory.
        start, end: simulated local dates (inclusive); ``start .. eval_start`` is warm-up (stateful mode).
        eval_start: first local date scored (the end is ``end``).
        utc_offset_hours: local standard time minus UTC (-5: US Eastern; all four basins).
        mode: ``'stateful'`` (one run from ``start``) or ``'windowed'`` (neuralhydrology's 999-h windows;
            about 1000x the work -- minutes to hours on a CPU for two years).
        temperature, precip_hours, precip_start_hour, precip: disaggregation choices, see
            :func:`rivergraph.runoff.daily_forcing_to_hourly` (``precip='uniform'`` or ``'14-17'``).
        trainable: passed to :class:`~rivergraph.runoff.LSTMRunoff` (``'none'``: plain inference).
    """
    camels_dir = Path(camels_dir)
    basins = list(basins)
    model = R.NeuralHydrologyLSTM.from_run_dir(run_dir)
    attrs = R.read_camels_attributes(camels_dir / "camels_attributes_v2.0", basins, model.static_attributes)
    forcing, area, obs, prcp = {}, {}, {}, {}
    # windowed mode needs seq_length - 1 hours before the first scored hour
    first = pd.Timestamp(start) - (pd.Timedelta(hours=model.seq_length) if mode == "windowed" else pd.Timedelta(0))
    for b in basins:
        daily, meta = R.read_camels_daymet(camels_dir / "basin_mean_forcing" / "daymet"
                                           / f"{b}_lump_cida_forcing_leap.txt")
        daily = daily.loc[first.normalize():end]
        forcing[b] = R.daily_forcing_to_hourly(daily, utc_offset_hours, temperature=temperature,
                                               precip_hours=precip_hours, precip_start_hour=precip_start_hour,
                                               precip=precip)
        area[b] = meta["area_km2"]
        prcp[b] = daily["prcp(mm/day)"]
        obs[b] = R.read_camels_streamflow(camels_dir / "usgs_streamflow" / f"{b}_streamflow_qc.txt")
    area_s = pd.Series(area)
    provider = R.LSTMRunoff(model, forcing, attrs, area_s, mode=mode, trainable=trainable)
    times = provider.times
    if mode == "windowed":
        local0 = pd.Timestamp(eval_start) - pd.Timedelta(hours=utc_offset_hours)
        times = times[times >= local0.tz_localize("UTC")]
    with torch.set_grad_enabled(trainable != "none"):
        q = provider.discharge(times)
    q_hourly = pd.DataFrame(q.detach().cpu().numpy(), index=times, columns=basins)
    q_daily = R.hourly_to_daily(q_hourly, utc_offset_hours)
    obs_daily = pd.DataFrame(obs).reindex(q_daily.index)
    precip = pd.DataFrame(prcp).reindex(q_daily.index)
    metrics = daily_metrics(q_daily.loc[eval_start:end], obs_daily.loc[eval_start:end],
                            precip.loc[eval_start:end], area_s)
    return CamelsRunoff(provider, times, q_hourly, q_daily, obs_daily, precip, area_s, metrics,
                        (eval_start, end))


def daily_metrics(sim: pd.DataFrame, obs: pd.DataFrame, precip_mm_day: pd.DataFrame,
                  area_km2: pd.Series) -> pd.DataFrame:
    """NSE, KGE (with r, alpha, beta) and runoff ratios per basin from daily m3/s series."""
    s = torch.tensor(sim.to_numpy(dtype=np.float64))
    o = torch.tensor(obs.to_numpy(dtype=np.float64))
    r, alpha, beta = kge_components(s, o)
    p_mean = precip_mm_day.mean()
    return pd.DataFrame({
        "NSE": nse(s, o).numpy(), "KGE": kge(s, o).numpy(), "r": r.numpy(), "alpha": alpha.numpy(),
        "beta": beta.numpy(),
        "runoff_ratio_sim": R.discharge_to_depth_rate(sim.mean(), area_km2, "mm/day") / p_mean,
        "runoff_ratio_obs": R.discharge_to_depth_rate(obs.mean(), area_km2, "mm/day") / p_mean,
        "n_obs_days": obs.notna().sum(),
    }, index=sim.columns).rename_axis("basin")


def plot_hydrographs(res: CamelsRunoff, path: str | Path) -> Path:
    """Simulated vs observed daily discharge per basin (PNG, Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, e = res.eval_period
    fig, axes = plt.subplots(len(res.metrics), 1, figsize=(10, 2.4 * len(res.metrics)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, b in zip(axes, res.metrics.index):
        ax.plot(res.obs_daily.loc[s:e, b], color="k", lw=0.9, label="USGS observed")
        ax.plot(res.q_daily.loc[s:e, b], color="tab:blue", lw=0.9, label="LSTM (Daymet -> hourly)")
        m = res.metrics.loc[b]
        ax.set_title(f"{b}: NSE {m.NSE:.2f}, KGE {m.KGE:.2f}", fontsize=9)
        ax.set_ylabel("Q (m3/s)")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="output folder")
    ap.add_argument("--camels-dir", default=str(CAMELS_DIR))
    ap.add_argument("--run-dir", default=str(RUN_DIR))
    ap.add_argument("--mode", choices=["stateful", "windowed"], default="stateful")
    ap.add_argument("--temperature", choices=["sinusoid", "mean"], default="sinusoid")
    ap.add_argument("--precip", default="uniform",
                    help="daily -> hourly precipitation: 'uniform' (24 h), 'afternoon_3h' or a local window "
                         "'HH-HH' such as '14-17'")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = camels_runoff(camels_dir=args.camels_dir, run_dir=args.run_dir, mode=args.mode,
                        temperature=args.temperature, precip=args.precip)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.metrics.to_csv(out / "lstm_camels_metrics.csv", float_format="%.4f")
    png = plot_hydrographs(res, out / "lstm_camels_hydrographs.png")
    print(f"evaluation {res.eval_period[0]} .. {res.eval_period[1]} (local days), scoring {args.mode}, "
          f"precipitation {args.precip}")
    print(res.metrics.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {png} and {out / 'lstm_camels_metrics.csv'}")
    return res.metrics


if __name__ == "__main__":
    main()
