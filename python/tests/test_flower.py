"""The Flower strategy in a real Flower run, in process.

`flwr.simulation` needs Ray, which is heavy; these tests drive Flower's own
``Server`` loop (client sampling, ``configure_fit``, a thread pool calling each
client, ``aggregate_fit``, centralised evaluation) with clients that live in
this process behind a small ``ClientProxy``, and NumPy clients that really
train a softmax model on their own data. Each run with ``RobustStrategy`` is
compared with the same run under Flower's own strategy.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from flwr.client import NumPyClient  # noqa: E402
from flwr.common import (  # noqa: E402
    Code,
    DisconnectRes,
    EvaluateRes,
    FitRes,
    GetParametersRes,
    GetPropertiesRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import Server, SimpleClientManager  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.server.strategy import FedAvg, FedMedian, FedTrimmedAvg, Krum  # noqa: E402

from mithridate.flower import RobustStrategy, flatten, unflatten  # noqa: E402

D, K = 10, 3
logging.getLogger("flwr").setLevel(logging.WARNING)


def _data(seed: int, n: int, shift: float):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(0, 2.0, (K, D))
    y = rng.integers(0, K, n)
    x = (centers[y] + rng.normal(shift, 1.0, (n, D))).astype(np.float32)
    return x, y


def _softmax_grad(w, b, x, y):
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return x.T @ p, p.sum(axis=0)


def _accuracy(params, x, y):
    w, b = params
    return float(((x @ w + b).argmax(axis=1) == y).mean())


class HonestClient(NumPyClient):
    """Five epochs of full-batch gradient descent on local data (float32)."""

    def __init__(self, seed: int):
        self.x, self.y = _data(seed, 80 + 10 * seed, shift=0.1 * (seed % 3))

    def fit(self, parameters, config):
        w, b = (np.array(p, dtype=np.float32) for p in parameters)
        for _ in range(5):
            gw, gb = _softmax_grad(w, b, self.x, self.y)
            w = (w - 0.5 * gw).astype(np.float32)
            b = (b - 0.5 * gb).astype(np.float32)
        return [w, b], len(self.y), {}


class ByzantineClient(NumPyClient):
    """Sends large noise, claiming many examples."""

    def __init__(self, seed: int):
        self.rng_seed = seed

    def fit(self, parameters, config):
        rng = np.random.default_rng(self.rng_seed + 1000 * int(config.get("round", 0)))
        return [(rng.normal(0, 50.0, p.shape)).astype(np.float32) for p in parameters], 500, {}


class InProcessProxy(ClientProxy):
    """A ClientProxy that calls a Flower client in this process."""

    def __init__(self, cid: str, client: NumPyClient):
        super().__init__(cid)
        self.client = client.to_client()

    def get_properties(self, ins, timeout, group_id):
        return GetPropertiesRes(status=Status(Code.OK, ""), properties={})

    def get_parameters(self, ins, timeout, group_id):
        return GetParametersRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters([]))

    def fit(self, ins, timeout, group_id) -> FitRes:
        return self.client.fit(ins)

    def evaluate(self, ins, timeout, group_id) -> EvaluateRes:
        return EvaluateRes(status=Status(Code.OK, ""), loss=0.0, num_examples=0, metrics={})

    def reconnect(self, ins, timeout, group_id):
        return DisconnectRes(reason="")


def _clients(byzantine: int):
    cs = [InProcessProxy(f"h{i}", HonestClient(i)) for i in range(9)]
    cs += [InProcessProxy(f"b{i}", ByzantineClient(i)) for i in range(byzantine)]
    return cs


def _initial():
    return [np.zeros((D, K), dtype=np.float32), np.zeros(K, dtype=np.float32)]


def _run(strategy, byzantine: int, rounds: int = 3):
    cm = SimpleClientManager()
    for c in _clients(byzantine):
        cm.register(c)
    server = Server(client_manager=cm, strategy=strategy)
    server.fit(num_rounds=rounds, timeout=None)
    return parameters_to_ndarrays(server.parameters)


def _common(**kw):
    return dict(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=2,
        min_available_clients=2,
        initial_parameters=ndarrays_to_parameters(_initial()),
        on_fit_config_fn=lambda r: {"round": r},
        **kw,
    )


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: RobustStrategy("median", **_common()), lambda: FedMedian(**_common())),
        (lambda: RobustStrategy("trimmed-mean", beta=0.2, **_common()), lambda: FedTrimmedAvg(beta=0.2, **_common())),
        (
            lambda: RobustStrategy("krum", byzantine=2, **_common()),
            lambda: Krum(num_malicious_clients=2, num_clients_to_keep=0, **_common()),
        ),
        (
            lambda: RobustStrategy("multi-krum", byzantine=2, keep=4, **_common()),
            lambda: Krum(num_malicious_clients=2, num_clients_to_keep=4, **_common()),
        ),
    ],
    ids=["median", "trimmed-mean", "krum", "multi-krum"],
)
def test_simulation_equals_flowers_strategy(ours, theirs):
    mine = _run(ours(), byzantine=2)
    ref = _run(theirs(), byzantine=2)
    _assert_same(mine, ref)
    x, y = _data(99, 600, 0.0)
    assert _accuracy(mine, x, y) > 0.8


def test_robust_rules_survive_attackers_that_break_fedavg():
    x, y = _data(99, 600, 0.0)
    clean = _accuracy(_run(FedAvg(**_common()), byzantine=0), x, y)
    attacked = _accuracy(_run(FedAvg(**_common()), byzantine=2), x, y)
    assert clean > 0.9
    assert attacked < clean - 0.2
    for method in ("median", "bulyan", "geometric-median"):
        acc = _accuracy(_run(RobustStrategy(method, byzantine=2, **_common()), byzantine=2), x, y)
        assert acc > 0.85, (method, acc)


def test_aggregate_fit_on_fit_results_and_metrics():
    ins_params = ndarrays_to_parameters(_initial())
    from flwr.common import FitIns

    results = []
    for c in _clients(2):
        results.append((c, c.fit(FitIns(ins_params, {"round": 1}), None, None)))
    ours, metrics = RobustStrategy("krum", byzantine=2).aggregate_fit(1, results, [])
    theirs, _ = Krum(num_malicious_clients=2).aggregate_fit(1, results, [])
    _assert_same(parameters_to_ndarrays(ours), parameters_to_ndarrays(theirs))
    assert metrics["robust_method"] == "krum"
    assert metrics["robust_selected"].startswith("h")
    med, _ = RobustStrategy("median").aggregate_fit(1, results, [])
    ref, _ = FedMedian().aggregate_fit(1, results, [])
    _assert_same(parameters_to_ndarrays(med), parameters_to_ndarrays(ref))
    assert RobustStrategy().aggregate_fit(1, [], []) == (None, {})
    assert RobustStrategy(accept_failures=False).aggregate_fit(1, results, [RuntimeError("x")]) == (None, {})


def test_flatten_roundtrip_and_bad_methods():
    layers = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float64)]
    back = unflatten(flatten(layers), layers)
    assert [a.dtype for a in back] == [np.float32, np.float64]
    _assert_same(back, layers)
    with pytest.raises(ValueError, match="unknown method"):
        RobustStrategy("mode")
    with pytest.raises(ValueError, match="beta"):
        RobustStrategy("trimmed-mean", beta=0.5)
