"""A Flower strategy that aggregates client updates with mithridate's robust rules.

:class:`RobustStrategy` is Flower's ``FedAvg`` with ``aggregate_fit`` replaced:
each client's parameters (all layers, flattened in order) become one row, the
rows are aggregated in Rust by :func:`mithridate.aggregate`, and the result is
cut back into layers. Everything else (client sampling, configuration,
evaluation) is FedAvg's. With ``method="median"`` the result equals Flower's
``FedMedian``, with ``method="trimmed-mean"`` ``FedTrimmedAvg``, and with
``"krum"`` / ``"multi-krum"`` Flower's ``Krum`` (same tie and rounding rules);
Bulyan, geometric median and centered clipping have no Flower counterpart.

Requires ``flwr`` (``pip install mithridate[flower]``). Aggregation is in
float32, the precision federated models are trained in; each layer is cast
back to the dtype its clients sent.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
from flwr.common import (
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from . import aggregate_detailed

__all__ = ["RobustStrategy", "flatten", "unflatten"]

_METHODS = (
    "fedavg",
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "bulyan",
    "geometric-median",
    "centered-clipping",
)


def flatten(layers: NDArrays) -> np.ndarray:
    """All layers of one client, in order, as one float32 vector."""
    if not layers:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in layers])


def unflatten(vector: np.ndarray, like: NDArrays) -> NDArrays:
    """Cut ``vector`` back into arrays shaped (and typed) like ``like``."""
    out: NDArrays = []
    pos = 0
    for a in like:
        n = int(np.prod(a.shape, dtype=np.int64))
        out.append(vector[pos : pos + n].reshape(a.shape).astype(a.dtype, copy=False))
        pos += n
    if pos != vector.size:
        raise ValueError(f"{vector.size} values for layers holding {pos}")
    return out


class RobustStrategy(FedAvg):
    """FedAvg whose ``aggregate_fit`` uses a Byzantine-robust rule.

    Parameters
    ----------
    method:
        ``median``, ``trimmed-mean``, ``krum``, ``multi-krum``, ``bulyan``,
        ``geometric-median``, ``centered-clipping`` or ``fedavg``.
    beta:
        Fraction cut at each end by ``trimmed-mean`` (Flower's default 0.2).
    byzantine:
        Assumed number of Byzantine clients for the Krum family and Bulyan.
    keep:
        Clients averaged by ``multi-krum`` (``n - byzantine`` when None).
    **kwargs:
        Passed to ``FedAvg`` (``fraction_fit``, ``min_fit_clients``,
        ``initial_parameters``, ``evaluate_fn``, ...).

    The fit metrics gain ``robust_method`` and, for the Krum family and
    Bulyan, ``robust_selected``: the selected clients' ids, comma-separated.
    """

    def __init__(
        self,
        method: str = "median",
        *,
        beta: float = 0.2,
        byzantine: int = 0,
        keep: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        name = method.replace("_", "-")
        if name not in _METHODS:
            raise ValueError(f"unknown method `{method}`; expected one of {', '.join(_METHODS)}")
        if not 0.0 <= beta < 0.5:
            raise ValueError("`beta` must be in the range [0, 0.5).")
        super().__init__(**kwargs)
        self.method = name
        self.beta = beta
        self.byzantine = byzantine
        self.keep = keep

    def __repr__(self) -> str:
        return f"RobustStrategy(method={self.method!r}, accept_failures={self.accept_failures})"

    def aggregate_ndarrays(
        self, results: list[tuple[NDArrays, int]]
    ) -> tuple[NDArrays, Optional[list[int]]]:
        """Aggregate ``(layers, num_examples)`` pairs; returns the layers and
        the selected client positions (Krum family, Bulyan)."""
        first = results[0][0]
        shapes = [a.shape for a in first]
        for i, (layers, _) in enumerate(results):
            if [a.shape for a in layers] != shapes:
                raise ValueError(f"client {i} sent layers of shapes {[a.shape for a in layers]}, client 0 {shapes}")
        rows = np.stack([flatten(layers) for layers, _ in results])
        res = aggregate_detailed(
            rows,
            self.method,
            weights=[float(n) for _, n in results],
            beta=self.beta,
            byzantine=self.byzantine,
            keep=self.keep,
        )
        return unflatten(res.params, first), res.selected

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Union[tuple[ClientProxy, FitRes], BaseException]],
    ) -> tuple[Optional[Parameters], dict[str, Scalar]]:
        """Aggregate fit results with the robust rule."""
        if not results:
            return None, {}
        if not self.accept_failures and failures:
            return None, {}
        pairs = [(parameters_to_ndarrays(r.parameters), r.num_examples) for _, r in results]
        layers, selected = self.aggregate_ndarrays(pairs)
        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn:
            metrics = dict(self.fit_metrics_aggregation_fn([(r.num_examples, r.metrics) for _, r in results]))
        metrics["robust_method"] = self.method
        if selected is not None:
            metrics["robust_selected"] = ",".join(str(results[i][0].cid) for i in selected)
        return ndarrays_to_parameters(layers), metrics
