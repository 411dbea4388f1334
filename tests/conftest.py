"""Shared test fixtures.

``shared_data``: the read-only real reference data (``<repo>/../shared/data``, see its README.md, or
``$RIVERGRAPH_DATA``). A test that needs it FAILS, saying where it looked, when the folder is absent: CI runs
with the data beside the clone, so a missing folder is a broken setup, not a reason to pass quietly.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("RIVERGRAPH_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def require_shared(path: Path | None = None) -> Path:
    """``path`` (default: the shared data folder) if it exists; otherwise fail the calling test naming it."""
    path = SHARED_DATA if path is None else Path(path)
    if not path.exists():
        pytest.fail(f"real reference data not found at {path} (expected the shared/data folder beside the "
                    "repository, or set RIVERGRAPH_DATA); tests that need it fail rather than skip", pytrace=False)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-data folder; fails the test if it is not there."""
    return require_shared()


@pytest.fixture(scope="session")
def lc():
    """The shipped 11,248-reach NWM Lower Colorado network and its data: ``(net, data)``."""
    from rivergraph.datasets import load_lower_colorado

    return load_lower_colorado()


@pytest.fixture(scope="session")
def small(lc):
    """A real Lower Colorado subnetwork (>= 8 reaches) upstream of a USGS gauge."""
    net = lc[0]
    for pos in net.gauges().index:
        mask = net.upstream_mask([pos])
        if mask.sum() >= 8:
            return net.subset(mask)
    raise AssertionError("no gauge with >= 8 upstream reaches")


@pytest.fixture(scope="session")
def basin_08159000(lc):
    """USGS 08159000's 107-reach Lower Colorado subnetwork (nested gauges inside): ``(sub, q_lateral [T, 107]
    float64 m3/s, data)``."""
    net, data = lc
    mask = net.upstream_mask([int(data["gauge_reach"]["08159000"])])
    return net.subset(mask), data["q_lateral"][:, mask].double(), data


def load_example(path: Path, name: str):
    """Import an example script (``examples/*.py``) as module ``name`` (registered in ``sys.modules`` so its
    dataclasses resolve)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
