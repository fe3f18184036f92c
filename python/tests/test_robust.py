"""DP accountants and robust aggregation through the bindings, checked against
dp-accounting's and Flower's own outputs (the fixtures the Rust tests use)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mithridate as m


def test_rdp_matches_dp_accounting(robust_fixtures):
    cases = json.loads((robust_fixtures / "dp_reference.json").read_text())["cases"]
    assert len(cases) >= 8
    for c in cases:
        eps, order = m.epsilon_rdp(c["q"], c["sigma"], c["steps"], c["delta"])
        assert abs(eps - c["rdp_epsilon"]) / c["rdp_epsilon"] < 1e-6, c
        assert order == c["rdp_order"]
        assert m.epsilon(c["q"], c["sigma"], c["steps"], c["delta"]) == eps


def test_pld_matches_dp_accounting_within_one_percent(robust_fixtures):
    cases = json.loads((robust_fixtures / "dp_reference.json").read_text())["cases"]
    for c in cases[:4]:
        eps = m.epsilon(c["q"], c["sigma"], c["steps"], c["delta"], accountant="pld")
        assert abs(eps - c["pld_epsilon"]) / c["pld_epsilon"] < 0.01, (c, eps)
        assert eps <= m.epsilon_rdp(c["q"], c["sigma"], c["steps"], c["delta"])[0]


def test_calibrate_sigma_meets_the_target():
    for acc in ("rdp", "pld"):
        sigma = m.calibrate_sigma(2.0, 0.01, 1000, 1e-5, accountant=acc)
        assert m.epsilon(0.01, sigma, 1000, 1e-5, accountant=acc) <= 2.0
        # One step below the returned precision misses it: it is the smallest.
        assert m.epsilon(0.01, sigma * (1 - 2e-4), 1000, 1e-5, accountant=acc) > 2.0


def test_accountant_errors_are_python_exceptions_with_the_rust_message():
    with pytest.raises(m.InvalidParameterError, match="sampling_rate"):
        m.epsilon(1.5, 1.0, 10, 1e-5)
    with pytest.raises(m.InvalidParameterError, match="is not rdp or pld"):
        m.epsilon(0.1, 1.0, 10, 1e-5, accountant="gdp")
    with pytest.raises(m.MithridateError, match="delta"):
        m.calibrate_sigma(1.0, 0.1, 10, 0.0)
    assert issubclass(m.InvalidParameterError, m.MithridateError)


def _fixture_updates(fx, name):
    inp = fx["inputs"][name]
    return [np.asarray(u, dtype=np.float32) for u in inp["updates"]], inp["weights"]


def test_aggregators_equal_flowers_outputs(robust_fixtures):
    fx = json.loads((robust_fixtures / "flower_aggregate.json").read_text())
    checked = 0
    for case in fx["cases"]:
        updates, weights = _fixture_updates(fx, case["input"])
        method = case["method"]
        kwargs = dict(case["params"])
        if method in ("fedavg", "multi-krum"):
            kwargs["weights"] = weights
        if method == "trimmed-mean" and "beta" not in kwargs:
            kwargs["beta"] = 0.2
        got = m.aggregate(updates, method, **kwargs)
        want = np.asarray(case["expected"], dtype=np.float64)
        assert got.dtype == np.float32
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=case["name"])
        checked += 1
    assert checked >= 40


def test_aggregate_keeps_the_shape_and_reports_selection():
    rng = np.random.default_rng(3)
    honest = [rng.normal(0, 1, (3, 4)).astype(np.float32) for _ in range(9)]
    attacker = [np.full((3, 4), 1e3, dtype=np.float32) for _ in range(2)]
    clients = honest + attacker
    for method in ("median", "trimmed_mean", "krum", "multi-krum", "bulyan", "geometric-median", "centered-clipping"):
        res = m.aggregate_detailed(clients, method, byzantine=2, beta=0.2)
        assert res.params.shape == (3, 4)
        assert np.abs(res.params).max() < 10, method
    assert np.abs(m.aggregate(clients, "fedavg")).max() > 100
    krum = m.aggregate_detailed(clients, "krum", byzantine=2)
    assert krum.selected is not None and len(krum.selected) == 1 and krum.selected[0] < 9
    gm = m.aggregate_detailed(clients, "geometric_median")
    assert gm.iterations is not None and gm.iterations >= 1
    # A 2-D array is one client per row.
    rows = np.stack([c.ravel() for c in clients])
    np.testing.assert_array_equal(m.aggregate(rows, "median"), m.aggregate(clients, "median").ravel())


def test_aggregate_errors():
    with pytest.raises(m.DataError, match="shape"):
        m.aggregate([np.zeros(2), np.zeros(3)])
    with pytest.raises(m.DataError, match="non-finite"):
        m.aggregate([np.zeros(2), np.array([0.0, math.nan])])
    with pytest.raises(m.InvalidParameterError, match="unknown method"):
        m.aggregate([np.zeros(2)], "mode")
    with pytest.raises(m.DataError, match="no client"):
        m.aggregate([])
    with pytest.raises(m.MithridateError):
        m.aggregate([np.zeros(2)] * 4, "bulyan", byzantine=1)
