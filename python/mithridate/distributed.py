"""Scans and manifests split over partitions (Spark ``mapPartitions``, Ray
Data ``map_batches``, a process pool): per-partition functions whose results
merge into exactly the single-machine result.

Text trigger mining takes two passes over the records, each a map over
partitions followed by a merge::

    stats = merge_all(text_stats_of(part, n_classes) for part in parts)   # pass 1
    plan = stats.plan()                                                   # driver
    evidence = merge_all(text_evidence_of(part, plan) for part in parts)  # pass 2
    decision = plan.decide(evidence)                                      # driver

A dataset manifest is one map and one merge: :func:`manifest_task` hashes a
partition's files into a shard manifest, :func:`mithridate.merge_manifests`
joins the shards into the manifest (and root) one machine would make.

Records are ``(id, text, label)`` triples with integer ids unique across all
partitions (a row number) and labels in ``0..n_classes``. Every state object
pickles, so it can be returned from a Spark task or a Ray worker.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, TypeVar

from ._native import Manifest, TextEvidence, TextPlan, TextStats, create_shard_manifest

__all__ = [
    "jsonl_rows",
    "manifest_batch",
    "manifest_task",
    "merge_all",
    "merged",
    "scan_text_partitions",
    "text_evidence_batch",
    "text_evidence_of",
    "text_evidence_task",
    "text_stats_batch",
    "text_stats_of",
    "text_stats_task",
    "unpack_states",
]

T = TypeVar("T", TextStats, TextEvidence)


def _columns(rows: Iterable[Sequence[Any]]) -> tuple[list[int], list[str], list[int]]:
    ids: list[int] = []
    texts: list[str] = []
    labels: list[int] = []
    for r in rows:
        ids.append(int(r[0]))
        texts.append(str(r[1]))
        labels.append(int(r[2]))
    return ids, texts, labels


def text_stats_of(
    rows: Iterable[Sequence[Any]],
    n_classes: int,
    *,
    max_ngram: int = 3,
    min_support: int = 3,
    confirm_log10: float = 6.0,
) -> TextStats:
    """First-pass statistics of one partition of ``(id, text, label)`` rows."""
    _, texts, labels = _columns(rows)
    return TextStats.from_records(
        texts,
        labels,
        n_classes,
        max_ngram=max_ngram,
        min_support=min_support,
        confirm_log10=confirm_log10,
    )


def text_evidence_of(rows: Iterable[Sequence[Any]], plan: TextPlan) -> TextEvidence:
    """Second-pass evidence of one partition of ``(id, text, label)`` rows."""
    ids, texts, labels = _columns(rows)
    return plan.evidence(ids, texts, labels)


def merged(a: T, b: T) -> T:
    """``a`` with ``b`` merged into it (for ``reduce``)."""
    a.merge(b)
    return a


def merge_all(items: Iterable[T]) -> T:
    """Merge partition results in order; at least one is needed."""
    it = iter(items)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("nothing to merge") from None
    for x in it:
        first.merge(x)
    return first


def scan_text_partitions(
    partitions: Sequence[Sequence[Sequence[Any]]],
    n_classes: int,
    *,
    label_names: Optional[Sequence[str]] = None,
    max_ngram: int = 3,
    min_support: int = 3,
    confirm_log10: float = 6.0,
) -> dict[str, Any]:
    """Both passes over in-memory partitions, on this machine: what a
    cluster job does, for tests and small data. Returns ``plan.decide``'s dict."""
    stats = merge_all(
        text_stats_of(
            p, n_classes, max_ngram=max_ngram, min_support=min_support, confirm_log10=confirm_log10
        )
        for p in partitions
    )
    plan = stats.plan()
    evidence = merge_all(text_evidence_of(p, plan) for p in partitions)
    return plan.decide(evidence, list(label_names) if label_names is not None else None)


def jsonl_rows(
    paths: Iterable[str],
    *,
    label_index: dict[str, int],
    text_field: str = "text",
    label_field: str = "label",
    id_field: str = "id",
) -> Iterable[tuple[int, str, int]]:
    """``(id, text, label)`` rows of JSONL files: ``id_field`` must hold the
    record's integer id, unique across the data set (its row number in the
    single-machine order gives results identical to :func:`mithridate.scan_text`);
    labels are mapped through ``label_index``."""
    import json

    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    yield int(rec[id_field]), str(rec[text_field]), label_index[str(rec[label_field])]
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{n}: {e!r}") from None


def text_stats_task(
    paths: Iterable[str],
    n_classes: int,
    label_index: dict[str, int],
    **params: Any,
) -> list[TextStats]:
    """A ``mapPartitions`` task: the first-pass statistics of the JSONL files
    of one partition (use with ``functools.partial``)."""
    return [text_stats_of(jsonl_rows(paths, label_index=label_index), n_classes, **params)]


def text_evidence_task(paths: Iterable[str], plan: Any, label_index: dict[str, int]) -> list[TextEvidence]:
    """A ``mapPartitions`` task: the second-pass evidence of one partition's
    JSONL files; ``plan`` is a :class:`TextPlan` or a Spark broadcast of one."""
    p = plan.value if hasattr(plan, "value") else plan
    return [text_evidence_of(jsonl_rows(paths, label_index=label_index), p)]


def _batch_rows(
    batch: Any, label_index: dict[str, int], id_col: str, text_col: str, label_col: str
) -> Iterable[tuple[int, str, int]]:
    return zip(
        (int(i) for i in batch[id_col]),
        (str(t) for t in batch[text_col]),
        (label_index[str(v)] for v in batch[label_col]),
    )


def text_stats_batch(
    batch: Any,
    n_classes: int,
    label_index: dict[str, int],
    id_col: str = "id",
    text_col: str = "text",
    label_col: str = "label",
    **params: Any,
) -> dict[str, Any]:
    """A Ray Data ``map_batches`` task: first-pass statistics of one batch
    (a dict of columns), returned pickled in a one-row ``state`` column.
    Any batch size works: the states merge exactly."""
    import pickle

    import numpy as np

    s = text_stats_of(_batch_rows(batch, label_index, id_col, text_col, label_col), n_classes, **params)
    return {"state": np.array([pickle.dumps(s)], dtype=object)}


def text_evidence_batch(
    batch: Any,
    plan: TextPlan,
    label_index: dict[str, int],
    id_col: str = "id",
    text_col: str = "text",
    label_col: str = "label",
) -> dict[str, Any]:
    """A Ray Data ``map_batches`` task: second-pass evidence of one batch."""
    import pickle

    import numpy as np

    e = text_evidence_of(_batch_rows(batch, label_index, id_col, text_col, label_col), plan)
    return {"state": np.array([pickle.dumps(e)], dtype=object)}


def unpack_states(rows: Iterable[dict[str, Any]]) -> list[Any]:
    """The states of ``text_*_batch`` rows (``Dataset.take_all()``), unpickled."""
    import pickle

    return [pickle.loads(r["state"]) for r in rows]


def manifest_task(
    paths: Iterable[str],
    root: str,
    records: bool = False,
    algorithm: str = "blake3",
    id_field: Optional[str] = None,
) -> list[Manifest]:
    """A ``mapPartitions`` task: the shard manifest of one partition's files
    (paths relative to the dataset ``root`` or absolute inside it)."""
    files = list(paths)
    if not files:
        return []
    return [create_shard_manifest(root, files, records=records, algorithm=algorithm, id_field=id_field)]


def manifest_batch(
    batch: Any,
    root: str,
    path_col: str = "path",
    records: bool = False,
    algorithm: str = "blake3",
    id_field: Optional[str] = None,
) -> dict[str, Any]:
    """A Ray Data ``map_batches`` task over a dataset of file paths: the shard
    manifest of the batch's files, pickled in a one-row ``state`` column."""
    import pickle

    import numpy as np

    shards = manifest_task([str(p) for p in batch[path_col]], root, records, algorithm, id_field)
    return {"state": np.array([pickle.dumps(x) for x in shards], dtype=object)}
