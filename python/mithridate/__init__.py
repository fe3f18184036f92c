"""mithridate: defend ML training pipelines against data poisoning.

The Python face of the Rust crates, in one wheel:

- provenance: :func:`create_manifest`, :func:`verify_manifest`, :class:`Manifest`
  (BLAKE3/SHA-256 Merkle manifests of a dataset directory, record-level for
  JSONL, CSV and NPY), :func:`create_shard_manifest` / :func:`manifest_from_bytes`
  / :func:`merge_manifests` (a manifest made in pieces on many machines, with
  the single-machine root), :func:`sign` / :func:`verify_signature` (DSSE, Ed25519);
- anomaly: :func:`scan` (the default detector suite on numeric features and
  labels, numpy or pandas) and :func:`scan_text` (text trigger mining);
- robust: :func:`epsilon`, :func:`epsilon_rdp`, :func:`epsilon_pld`,
  :func:`calibrate_sigma` (DP-SGD accountants) and :func:`aggregate` (robust
  federated aggregation over a list of client arrays);
- :mod:`mithridate.flower`: a Flower strategy that aggregates with these rules.

Every error raised by the Rust code is a :class:`MithridateError` subclass
carrying the Rust message.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _native
from ._native import (
    CryptoError,
    DataError,
    InvalidParameterError,
    IoError,
    Manifest,
    MithridateError,
    ModelError,
    ParseError,
    ScanResult,
    TextEvidence,
    TextPlan,
    TextStats,
    VerifyResult,
    calibrate_sigma,
    create_manifest,
    create_shard_manifest,
    epsilon,
    epsilon_pld,
    epsilon_rdp,
    generate_keypair,
    manifest_from_bytes,
    merge_manifests,
    sign,
    verify_manifest,
    verify_signature,
)

__version__: str = _native.__version__

__all__ = [
    "AggregateResult",
    "CryptoError",
    "DataError",
    "InvalidParameterError",
    "IoError",
    "Manifest",
    "MithridateError",
    "ModelError",
    "ParseError",
    "ScanResult",
    "TextEvidence",
    "TextPlan",
    "TextStats",
    "VerifyResult",
    "aggregate",
    "aggregate_detailed",
    "calibrate_sigma",
    "create_manifest",
    "create_shard_manifest",
    "epsilon",
    "epsilon_pld",
    "epsilon_rdp",
    "generate_keypair",
    "manifest_from_bytes",
    "merge_manifests",
    "scan",
    "scan_text",
    "sign",
    "verify_manifest",
    "verify_signature",
]


def _is_frame(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _is_series(x: Any) -> bool:
    return type(x).__name__ == "Series" and hasattr(x, "to_numpy")


def _encode_labels(labels: Any) -> tuple[list[int], Optional[list[str]]]:
    """Class indices ``0..k`` and, for non-integer labels, the label names.

    Integer labels are kept as they are (so a report names class 3 as 3);
    any other labels are sorted and numbered, and their names kept.
    """
    arr = labels.to_numpy() if _is_series(labels) else np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"data: labels must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.size and int(arr.min()) < 0:
            raise DataError("data: integer labels must be non-negative")
        return [int(v) for v in arr], None
    if arr.dtype.kind == "b":
        return [int(v) for v in arr], ["False", "True"]
    names, codes = np.unique(arr.astype(str), return_inverse=True)
    return [int(c) for c in codes], [str(n) for n in names]


def _ids(ids: Any) -> Optional[list[Any]]:
    if ids is None:
        return None
    if _is_series(ids) or hasattr(ids, "tolist"):
        return list(ids.tolist())
    return list(ids)


def scan(
    data: Any,
    labels: Any = None,
    *,
    ids: Any = None,
    fp_budget: float = 0.005,
    min_votes: int = 3,
    detectors: Optional[Sequence[str]] = None,
    seed: int = 0,
) -> ScanResult:
    """Scan a training set for poisoned samples with the default detector suite.

    ``data`` is an ``n x d`` array (any numeric dtype; copied as float32) or a
    pandas DataFrame. With a DataFrame, ``labels`` and ``ids`` may name
    columns; the features are the remaining numeric columns. Labels may be
    integers ``0..k`` or any values (strings are numbered in sorted order and
    their names kept for the report).

    The suite (trigger mining, label consistency, kNN and Mahalanobis
    outliers, spectral signatures for labelled data) and the combiner are the
    ones ``mithridate scan`` runs: confirmed evidence is quarantined, unconfirmed
    outliers only when ``min_votes`` detectors agree and never more than
    ``fp_budget`` of the rows. ``seed`` makes the run reproducible.

    Returns a :class:`ScanResult`; ``result.flagged`` are the row indices to
    quarantine.
    """
    label_names = None
    if _is_frame(data):
        frame = data
        if isinstance(labels, str):
            labels_col = labels
            labels = frame[labels_col]
            frame = frame.drop(columns=[labels_col])
        if isinstance(ids, str):
            ids_col = ids
            ids = frame[ids_col]
            frame = frame.drop(columns=[ids_col])
        numeric = frame.select_dtypes(include="number")
        if numeric.shape[1] == 0:
            raise DataError("data: the DataFrame has no numeric feature column")
        features = numeric.to_numpy(dtype=np.float32)
    else:
        features = np.asarray(data, dtype=np.float32)
    if features.ndim != 2:
        raise DataError(f"data: features must be two-dimensional (n x d), got shape {features.shape}")
    codes = None
    if labels is not None:
        codes, label_names = _encode_labels(labels)
    return _native.scan(
        features,
        codes,
        ids=_ids(ids),
        label_names=label_names,
        fp_budget=fp_budget,
        min_votes=min_votes,
        detectors=list(detectors) if detectors is not None else None,
        seed=seed,
    )


def scan_text(
    texts: Any,
    labels: Any,
    *,
    ids: Any = None,
    max_ngram: int = 3,
    min_support: int = 3,
    confirm_log10: float = 6.0,
    seed: int = 0,
) -> ScanResult:
    """Find text triggers: n-grams (1 to ``max_ngram`` tokens) whose presence
    nearly decides the label, each confirmed by a counterfactual test.

    ``texts`` is a list of strings or a pandas Series; or a DataFrame, with
    ``labels`` (and optionally ``ids``) naming columns and the text in a
    column called ``text``. Returns a :class:`ScanResult` whose ``decisions``
    name the trigger phrase of each quarantined record.
    """
    if _is_frame(texts):
        frame = texts
        if not isinstance(labels, str):
            raise DataError("data: with a DataFrame, labels must name a column")
        if "text" not in frame.columns:
            raise DataError("data: the DataFrame has no `text` column")
        labels = frame[labels]
        if isinstance(ids, str):
            ids = frame[ids]
        texts = frame["text"]
    if _is_series(texts):
        texts = texts.tolist()
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    codes, label_names = _encode_labels(labels)
    return _native.scan_text(
        texts,
        codes,
        ids=_ids(ids),
        label_names=label_names,
        max_ngram=max_ngram,
        min_support=min_support,
        confirm_log10=confirm_log10,
        seed=seed,
    )


class AggregateResult(NamedTuple):
    """An aggregate and how it was reached."""

    params: np.ndarray
    """The aggregated update, shaped like one client's update (float32)."""
    selected: Optional[list[int]]
    """Clients chosen by Krum, Multi-Krum or Bulyan (None for other rules)."""
    iterations: Optional[int]
    """Iterations of the geometric median or centered clipping."""


def aggregate_detailed(
    updates: Union[np.ndarray, Sequence[Any]],
    method: str = "median",
    *,
    weights: Optional[Sequence[float]] = None,
    beta: float = 0.2,
    byzantine: int = 0,
    keep: Optional[int] = None,
    smoothing: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-6,
    tau: Optional[float] = None,
    iters: int = 3,
) -> AggregateResult:
    """Like :func:`aggregate`, with the selected clients and iteration count."""
    params, selected, iterations = _native.aggregate(
        updates,
        method,
        weights=[float(w) for w in weights] if weights is not None else None,
        beta=beta,
        byzantine=byzantine,
        keep=keep,
        smoothing=smoothing,
        max_iter=max_iter,
        tol=tol,
        tau=tau,
        iters=iters,
    )
    return AggregateResult(params, selected, iterations)


def aggregate(
    updates: Union[np.ndarray, Sequence[Any]],
    method: str = "median",
    *,
    weights: Optional[Sequence[float]] = None,
    beta: float = 0.2,
    byzantine: int = 0,
    keep: Optional[int] = None,
    smoothing: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-6,
    tau: Optional[float] = None,
    iters: int = 3,
) -> np.ndarray:
    """Aggregate federated client updates with a robust rule.

    ``updates`` is a list of arrays of one shape (one per client) or a 2-D
    array with one client per row; values are taken as float32. ``method`` is
    one of ``fedavg``, ``median``, ``trimmed-mean`` (``beta`` cut at each
    end), ``krum``, ``multi-krum`` (``keep`` clients, ``n - byzantine`` by
    default), ``bulyan``, ``geometric-median`` (``smoothing``, ``max_iter``,
    ``tol``) or ``centered-clipping`` (``tau``, ``iters``); underscores are
    accepted for dashes. ``weights`` (example counts) are used by the rules
    that weight clients, as in Flower.

    Results equal Flower's ``aggregate``, ``aggregate_median``,
    ``aggregate_trimmed_avg``, ``aggregate_krum`` and ``aggregate_bulyan``.
    Returns the aggregate, shaped like one client's update.
    """
    return aggregate_detailed(
        updates,
        method,
        weights=weights,
        beta=beta,
        byzantine=byzantine,
        keep=keep,
        smoothing=smoothing,
        max_iter=max_iter,
        tol=tol,
        tau=tau,
        iters=iters,
    ).params
