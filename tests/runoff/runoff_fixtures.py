"""Shared data, fixtures and helpers of the rivergraph.runoff tests (tests/runoff/), partly on real data in
../shared/data (beside the repository): a missing data folder fails the test that needs it, naming the path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rivergraph import runoff as R

from conftest import SHARED_DATA, load_example, require_shared  # noqa: F401 (load_example: re-exported for the tests)

DATA = Path(os.environ.get("RIVERGRAPH_DATA", SHARED_DATA))
RUN_DIR = DATA / "pretrained_lstm_nwm_aorc_hourly"
CAMELS = DATA / "camels_us_4basins"
RAPID_QEXT = DATA / "rapid_sandbox" / "input" / "Qext_Sandbox_19700101_19700110.nc4"
BASINS = ["01022500", "01547700", "02064000", "03015500"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lstm_camels.py"
ROUTING_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lstm_routing.py"

def _require(*paths: Path) -> None:
    """Shared data a test needs: missing data is a failure naming it, not a skip (conftest.require_shared)."""
    for p in paths:
        require_shared(p)


@pytest.fixture
def _model_data():
    _require(RUN_DIR)


@pytest.fixture
def _camels_data():
    _require(RUN_DIR, CAMELS)


needs_model = pytest.mark.usefixtures("_model_data")
needs_camels = pytest.mark.usefixtures("_camels_data")

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def model() -> R.NeuralHydrologyLSTM:
    _require(RUN_DIR)
    return R.NeuralHydrologyLSTM.from_run_dir(RUN_DIR)


@pytest.fixture(scope="module")
def camels_inputs(model):
    """Real CAMELS forcing (2000-01-01 .. 2000-12-31) disaggregated to hourly, attributes, areas."""
    _require(CAMELS)
    attrs = R.read_camels_attributes(CAMELS / "camels_attributes_v2.0", BASINS, ["elev_mean", "slope_mean"])
    forcing, area = {}, {}
    for b in BASINS:
        daily, meta = R.read_camels_daymet(CAMELS / "basin_mean_forcing" / "daymet" / f"{b}_lump_cida_forcing_leap.txt")
        forcing[b] = R.daily_forcing_to_hourly(daily.loc["2000-01-01":"2000-12-31"], -5)
        area[b] = meta["area_km2"]
    return forcing, attrs, pd.Series(area)


def _copy_run(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(RUN_DIR, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    dst.chmod(0o755)
    return dst


def _frame(T=48, start="2001-01-01", **cols):
    idx = pd.date_range(start, periods=T, freq="h", tz="UTC")
    base = {"APCP_surface": np.full(T, 0.1), "TMP_2maboveground": np.full(T, 280.0)}
    base.update(cols)
    return pd.DataFrame(base, index=idx)


ATTRS = pd.DataFrame({"elev_mean": [100.0, 500.0], "slope_mean": [10.0, 40.0]}, index=["a", "b"])


def _load_example():
    return load_example(EXAMPLE, "lstm_camels_example")


@pytest.fixture(scope="module")
def camels_result():
    _require(CAMELS, RUN_DIR)
    return _load_example().camels_runoff()

