"""Property-based tests (hypothesis) on generated river forests.

Generated: forests of 1-24 reaches (random tree shapes, several outlets), random id schemes (0-based integers,
huge integers up to 2^62, strings), random row orders, random routing parameters inside the router's bounds and
random non-negative lateral inflow. Checked:

- relabelling ids and permuting rows change nothing but the order of the outputs;
- two chunks routed with ``router.state`` carried over equal one run;
- the conservative scheme's mass balance closes to rounding; flows are non-negative (to rounding, see
  docs/reliability.md);
- readers round-trip the networks they write or that the test builds (npz, CSV table, RAPID);
- malformed inputs (cycles, divergences, duplicates, NaN / negative values, shape and id mismatches) raise
  errors naming the offending reach or column.

Budget: ``max_examples`` 25 per property (``$RIVERGRAPH_HYPOTHESIS_EXAMPLES`` for more), no deadline; all of
them together take about 10 s of CPU on one core.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import torch

from hypothesis import HealthCheck, Phase, given, settings  # the `test` extra installs it: missing fails
from hypothesis import strategies as st  # noqa: E402

from rivergraph import MuskingumCunge, build_network  # noqa: E402
from rivergraph.graph.network import NetworkError  # noqa: E402
from rivergraph.io.readers import (load_network_npz, read_forcing_npz, read_rapid, read_table_network,  # noqa: E402
                                   save_network_npz)
from rivergraph.physics.channels import N as N_SPEC  # noqa: E402
from rivergraph.physics.channels import get_channel  # noqa: E402

EXAMPLES = int(os.environ.get("RIVERGRAPH_HYPOTHESIS_EXAMPLES", "25"))
"""Examples per property: 25 in CI (derandomized, so every run checks the same cases); set the variable for a
longer, random search (e.g. 500)."""
PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25, print_blob=True,
                   phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no 'explain' (slow)
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])
DT = 3600.0
MODES = ("static", "trapezoid", "power_law")


# ------------------------------------------------------------------------------------------ strategies
@st.composite
def forests(draw, min_size: int = 1, max_size: int = 24):
    """(n, down): reach i drains to down[i] > i (a position in topological numbering) or -1 (outlet)."""
    n = draw(st.integers(min_size, max_size))
    down = []
    for i in range(n):
        if i == n - 1 or draw(st.integers(0, 5)) == 0:
            down.append(-1)
        else:
            down.append(draw(st.integers(i + 1, min(n - 1, i + 4))))
    return n, np.array(down, dtype=np.int64)


@st.composite
def id_schemes(draw, n: int):
    """n distinct reach ids: 0-based integers (shuffled), huge integers or strings."""
    kind = draw(st.sampled_from(["zero_based", "huge", "string"]))
    if kind == "zero_based":
        return kind, np.array(draw(st.permutations(list(range(n)))), dtype=np.int64)
    if kind == "huge":
        vals = draw(st.lists(st.integers(1, 2 ** 62), min_size=n, max_size=n, unique=True))
        return kind, np.array(vals, dtype=np.int64)
    vals = draw(st.lists(st.text("abcxyz-0123456789", min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    return kind, np.array(vals, dtype=object)


def _outlet_code(kind: str):
    return {"zero_based": None, "huge": 0, "string": ""}[kind]


@st.composite
def cases(draw, min_size: int = 1, max_size: int = 24):
    """A routed case: network rows (ids, to ids, attributes) in a random order, parameters and inflow."""
    n, down = draw(forests(min_size, max_size))
    kind, ids = draw(id_schemes(n))
    perm = np.array(draw(st.permutations(list(range(n)))), dtype=np.int64)  # row r holds reach perm[r]
    mode = draw(st.sampled_from(MODES))
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    per_reach = lambda lo, hi: np.array(draw(st.lists(floats(lo, hi), min_size=n, max_size=n)))  # noqa: E731
    attrs = {"length_m": per_reach(200.0, 20000.0), "slope": per_reach(1e-4, 0.02)}
    if mode == "static":
        attrs.update(musk_s=per_reach(0.3 * DT, 6 * DT), musx=per_reach(0.0, 0.5))
    elif mode == "trapezoid":
        attrs.update(n=per_reach(N_SPEC.lo, N_SPEC.hi), bottom_width_m=per_reach(1.0, 80.0),
                     side_slope=per_reach(0.0, 3.0))
    else:
        attrs.update(n=per_reach(N_SPEC.lo, N_SPEC.hi))
    T = draw(st.integers(2, 10))
    q = np.array(draw(st.lists(floats(0.0, 50.0), min_size=T * n, max_size=T * n))).reshape(T, n)
    zero = np.array(draw(st.lists(st.booleans(), min_size=T * n, max_size=T * n))).reshape(T, n)
    q[zero] = 0.0  # dry reaches and steps
    width = {p.name: p for p in get_channel("power_law").params}
    extra = {"width_coef": draw(floats(width["width_coef"].lo, width["width_coef"].hi)),
             "width_exp": draw(floats(0.0, 2.0))} if mode == "power_law" else {}
    return {"n": n, "down": down, "kind": kind, "ids": ids, "perm": perm, "mode": mode, "attrs": attrs, "q": q,
            "extra": extra}


def _network(case, ids=None, perm=None):
    """Build the case's network with the given ids and row order (default: the case's)."""
    ids = case["ids"] if ids is None else ids
    perm = case["perm"] if perm is None else perm
    down = case["down"]
    code = _outlet_code(case["kind"]) if ids is case["ids"] else None
    to = np.array([ids[d] if d >= 0 else code for d in down], dtype=object)
    attrs = pd.DataFrame({k: v[perm] for k, v in case["attrs"].items()})
    ids_rows = ids[perm]
    to_rows = to[perm]
    if ids_rows.dtype.kind in "iu" and all(t is not None for t in to_rows):
        to_rows = to_rows.astype(np.int64)
    return build_network(ids_rows, to_rows, attrs)


def _route(net, q_rows, case, **kw):
    r = MuskingumCunge(net, dt=DT, mode=case["mode"])
    Q = r(torch.from_numpy(q_rows), **case["extra"], **kw)
    return r, Q


def _rounding_bound(Q: torch.Tensor, q: np.ndarray) -> float:
    """How far below zero rounding may take a flow (docs/reliability.md): 8 ulps of the largest network flow."""
    return 8.0 * torch.finfo(Q.dtype).eps * max(float(Q.abs().max()), float(q.sum(1).max()), 1.0)


# ------------------------------------------------------------------------------------------- routing
@PROFILE
@given(case=cases(), data=st.data())
def test_relabel_and_permutation_change_only_the_order(case, data):
    net = _network(case)
    _, Q = _route(net, case["q"][:, case["perm"]], case)
    # new ids of another scheme and another row order
    _, ids2 = data.draw(id_schemes(case["n"]))
    perm2 = np.array(data.draw(st.permutations(list(range(case["n"])))), dtype=np.int64)
    net2 = _network(case, ids=ids2, perm=perm2)
    _, Q2 = _route(net2, case["q"][:, perm2], case)
    # column r of Q holds reach perm[r]; column r2 of Q2 holds reach perm2[r2]
    by_reach = np.empty_like(Q.numpy())
    by_reach[:, case["perm"]] = Q.numpy()
    by_reach2 = np.empty_like(Q2.numpy())
    by_reach2[:, perm2] = Q2.numpy()
    np.testing.assert_allclose(by_reach2, by_reach, rtol=1e-10, atol=1e-10)
    assert [net2.ids[net2.downstream[i]] if net2.downstream[i] >= 0 else None for i in range(len(net2))] == \
        [ids2[case["down"][p]] if case["down"][p] >= 0 else None for p in perm2]


@PROFILE
@given(case=cases(), split=st.integers(1, 9))
def test_two_chunks_equal_one_run(case, split):
    net = _network(case)
    q = case["q"][:, case["perm"]]
    split = min(split, q.shape[0] - 1)
    r, whole = _route(net, q, case)
    r2 = MuskingumCunge(net, dt=DT, mode=case["mode"])
    a = r2(torch.from_numpy(q[:split]), **case["extra"])
    b = r2(torch.from_numpy(q[split:]), state=r2.state, **case["extra"])
    np.testing.assert_allclose(torch.cat([a, b]).numpy(), whole.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r2.state.Q.numpy(), r.state.Q.numpy(), rtol=1e-10, atol=1e-10)


@PROFILE
@given(case=cases())
def test_mass_balance_closes_and_flows_are_non_negative(case):
    net = _network(case)
    q = case["q"][:, case["perm"]]
    r, Q = _route(net, q, case, hot_start=False)
    b = r.balance
    assert abs(b.relative_error) < 1e-9 or abs(b.residual_m3) < 1e-6, str(b)  # conservative: closes to rounding
    assert float(Q.min()) >= -_rounding_bound(Q, q), float(Q.min())
    assert torch.isfinite(Q).all()


# ------------------------------------------------------------------------------------------- readers
@PROFILE
@given(case=cases(max_size=16))
def test_readers_round_trip(case, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    net = _network(case)
    expect_to = [net.ids[d] if d >= 0 else None for d in net.downstream]

    save_network_npz(net, tmp / "n.npz")
    back = load_network_npz(tmp / "n.npz")
    assert back.ids.tolist() == net.ids.tolist() and back.downstream.tolist() == net.downstream.tolist()
    np.testing.assert_array_equal(back.attr("length_m"), net.attr("length_m"))

    # a CSV reach table, outlets left blank
    df = pd.DataFrame({"reach": net.ids, "next": pd.Series(expect_to, dtype=object),
                       "len_m": net.attr("length_m")})
    df.to_csv(tmp / "t.csv", index=False)
    t = read_table_network(tmp / "t.csv", columns={"id": "reach", "to": "next", "length_m": "len_m"})
    assert t.ids.tolist() == _csv_ids(net.ids) and t.downstream.tolist() == net.downstream.tolist()
    np.testing.assert_allclose(t.attr("length_m"), net.attr("length_m"), rtol=1e-15)

    # RAPID: integer ids, 0 = outlet (RAPID cannot hold a reach id 0)
    if net.ids.dtype.kind in "iu" and not (net.ids == 0).any():
        with open(tmp / "rapid_connect_p.csv", "w") as f:
            for i, to in zip(net.ids, expect_to):
                f.write(f"{i},{0 if to is None else to}\n")
        rp = read_rapid(tmp / "rapid_connect_p.csv")
        assert rp.ids.tolist() == net.ids.tolist() and rp.downstream.tolist() == net.downstream.tolist()


def _csv_ids(ids) -> list:
    """What a CSV id column reads back as: integers when every id spells one (e.g. '012' -> 12), else the text."""
    ids = list(ids)
    if all(isinstance(i, str) and re.fullmatch(r"[+-]?\d+", i) for i in ids):
        return [int(i) for i in ids]
    return ids


# ---------------------------------------------------------------------------------------- malformed
def _named(msg: str, reach) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(str(reach))}(?![\w])", msg) is not None


@PROFILE
@given(case=cases(min_size=2), data=st.data())
def test_cycles_are_errors_naming_a_reach_on_them(case, data):
    n, down = case["n"], case["down"].copy()
    # send one reach back to one upstream of it (or to itself): a cycle
    a = data.draw(st.integers(0, n - 1))
    chain = [a]
    while down[chain[-1]] >= 0 and len(chain) < 6:
        chain.append(int(down[chain[-1]]))
    b = data.draw(st.sampled_from(chain))
    down[b] = a
    cyc = set(chain[:chain.index(b) + 1])
    bad = dict(case, down=down)
    with pytest.raises(NetworkError, match="cycle") as e:
        _network(bad)
    assert any(_named(str(e.value), case["ids"][c]) for c in cyc), (str(e.value), [case["ids"][c] for c in cyc])


@PROFILE
@given(case=cases(min_size=3), data=st.data())
def test_divergences_and_duplicates_are_errors_naming_the_reach(case, data):
    net = _network(case)
    ids, to = list(net.ids), [net.ids[d] if d >= 0 else None for d in net.downstream]
    i = data.draw(st.integers(0, len(ids) - 1))
    others = [x for x in ids if x != ids[i] and x != to[i]]
    # the same reach again with another downstream reach: a divergence
    with pytest.raises(NetworkError, match="divergences") as e:
        build_network(np.array(ids + [ids[i]], dtype=object), np.array(to + [others[0]], dtype=object))
    assert _named(str(e.value), ids[i])
    # the same row twice: a duplicate
    with pytest.raises(NetworkError, match="duplicate reach ids") as e:
        build_network(np.array(ids + [ids[i]], dtype=object), np.array(to + [to[i]], dtype=object))
    assert _named(str(e.value), ids[i])


@PROFILE
@given(case=cases(), data=st.data(), value=st.sampled_from([np.nan, -1.0, 0.0]))
def test_bad_lengths_are_errors_naming_the_reach_and_column(case, data, value):
    r = data.draw(st.integers(0, case["n"] - 1))  # row r holds reach perm[r]
    attrs = {k: v.copy() for k, v in case["attrs"].items()}
    attrs["length_m"][case["perm"][r]] = value
    with pytest.raises(NetworkError, match="length_m") as e:
        _network(dict(case, attrs=attrs))
    assert _named(str(e.value), case["ids"][case["perm"][r]])


@PROFILE
@given(case=cases(), data=st.data(), value=st.sampled_from([np.nan, np.inf, -0.5]))
def test_bad_inflow_is_an_error_naming_the_reach(case, data, value):
    net = _network(case)
    q = case["q"][:, case["perm"]].copy()
    col = data.draw(st.integers(0, case["n"] - 1))
    q[data.draw(st.integers(0, q.shape[0] - 1)), col] = value
    r = MuskingumCunge(net, dt=DT, mode=case["mode"])
    with pytest.raises(ValueError, match="q_lat has") as e:
        r(torch.from_numpy(q), **case["extra"])
    assert _named(str(e.value), net.ids[col])
    with pytest.raises(ValueError, match=rf"q_lat must be \[T, {len(net)}\]"):
        r(torch.from_numpy(q[:, :-1] if len(net) > 1 else np.ones((2, 2))), **case["extra"])
    q[:] = 1.0
    for half in (torch.float16, torch.bfloat16):  # refused, not routed into inf / 3-digit flows
        with pytest.raises(TypeError, match="routing runs in float32 or float64"):
            r(torch.from_numpy(q).to(half), **case["extra"])


@PROFILE
@given(case=cases(), data=st.data())
def test_bad_parameters_are_errors_naming_the_reach(case, data):
    net = _network(case)
    q = torch.from_numpy(case["q"][:, case["perm"]])
    col = data.draw(st.integers(0, case["n"] - 1))
    r = MuskingumCunge(net, dt=DT, mode=case["mode"])
    name = "k" if case["mode"] == "static" else "n"
    v = torch.from_numpy(net.attr("musk_s" if name == "k" else "n").copy())
    v[col] = data.draw(st.sampled_from([-1.0, np.nan] if name == "k" else [0.5, 1e-4, np.nan]))
    with pytest.raises(ValueError, match=f"parameter '{name}'") as e:
        r(q, **{name: v}, **case["extra"])
    assert _named(str(e.value), net.ids[col]), str(e.value)


@PROFILE
@given(case=cases(min_size=2), data=st.data())
def test_forcing_id_mismatches_are_errors_naming_the_reach(case, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forcing")
    net = _network(case)
    T = case["q"].shape[0]
    times = pd.date_range("2020-01-01", periods=T, freq="h").to_numpy()
    ids = net.ids.copy() if net.ids.dtype.kind in "iu" else net.ids.astype(str)  # npz: no pickled objects
    i, j = data.draw(st.lists(st.integers(0, len(ids) - 1), min_size=2, max_size=2, unique=True))
    dup = ids.copy()
    dup[j] = ids[i]
    np.savez(tmp / "dup.npz", q_lateral=case["q"], reach_ids=dup, time=times)
    with pytest.raises(NetworkError, match="duplicated reach id") as e:
        read_forcing_npz(tmp / "dup.npz", net)
    assert _named(str(e.value), ids[i])
    np.savez(tmp / "short.npz", q_lateral=np.delete(case["q"], j, 1), reach_ids=np.delete(ids, j), time=times)
    with pytest.raises(NetworkError, match="no inflow for reaches") as e:
        read_forcing_npz(tmp / "short.npz", net)
    assert _named(str(e.value), ids[j])
