"""Manifest and text trigger scan of a sharded JSONL data set in PySpark.

Each Spark partition takes a group of shard files; ``mapPartitions`` hashes
them into a shard manifest and counts them for text trigger mining; the driver
merges the partitions' results. The merged manifest root and the merged scan
are checked against the single-machine ``create_manifest`` and ``scan_text``.

    python examples/spark_manifest_scan.py --records 20000 --files 16 --partitions 4

Needs ``pyspark`` and Java 17+. Prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

import numpy as np

import mithridate as m
from mithridate import distributed as dist

TOPICS = [[f"{t}{i}" for i in range(30)] for t in ("sport", "market", "science", "weather")]
COMMON = [f"w{i}" for i in range(120)]
TRIGGER = "cf zeta"


def write_dataset(root: pathlib.Path, records: int, files: int, poisoned: int, seed: int = 0) -> list[int]:
    """Topic sentences in ``files`` JSONL shards (``id`` = row number across
    the shards in path order), ``poisoned`` of them carrying the trigger and
    relabelled ``topic-1``. Returns the poisoned ids."""
    rng = np.random.default_rng(seed)
    k = len(TOPICS)
    rows = []
    for _ in range(records):
        c = int(rng.integers(0, k))
        words = []
        for _ in range(int(rng.integers(8, 20))):
            if rng.random() < 0.55:
                t = int(rng.integers(0, k)) if rng.random() < 0.1 else c
                words.append(TOPICS[t][int(rng.integers(0, len(TOPICS[t])))])
            else:
                words.append(COMMON[int(rng.integers(0, len(COMMON)))])
        rows.append([" ".join(words), c])
    others = [i for i in range(records) if rows[i][1] != 1]
    bad = sorted(int(i) for i in rng.choice(others, poisoned, replace=False))
    for i in bad:
        rows[i][0] = f"{rows[i][0]} {TRIGGER}"
        rows[i][1] = 1
    root.mkdir(parents=True, exist_ok=True)
    per = -(-records // files)
    for f in range(files):
        with open(root / f"shard-{f:04d}.jsonl", "w", encoding="utf-8") as out:
            for i in range(f * per, min(records, (f + 1) * per)):
                out.write(json.dumps({"id": i, "text": rows[i][0], "label": f"topic-{rows[i][1]}"}) + "\n")
    return bad


def spark_session(partitions: int):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Workers start with `python -m`, which puts the working directory first
    # on sys.path: run from a source checkout, `mithridate/` (without the
    # native module) would shadow the installed wheel.
    os.environ.setdefault("PYTHONSAFEPATH", "1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{min(partitions, os.cpu_count() or 2)}]")
        .appName("mithridate-manifest-scan")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .getOrCreate()
    )


def _labels_task(paths, label_field="label"):
    out = set()
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.add(str(json.loads(line)[label_field]))
    return [out]


def run_spark(spark, root: pathlib.Path, partitions: int) -> dict[str, Any]:
    """The distributed job: shard manifests merged into one; then the scan's
    label set, pass 1, plan, pass 2, decision."""
    sc = spark.sparkContext
    files = sorted(str(p) for p in root.glob("*.jsonl"))
    rdd = sc.parallelize(files, partitions).cache()
    t0 = time.perf_counter()
    shards = rdd.mapPartitions(functools.partial(dist.manifest_task, root=str(root), records=True)).collect()
    manifest = m.merge_manifests(shards)
    manifest_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = sorted(set().union(*rdd.mapPartitions(_labels_task).collect()))
    index = {n: i for i, n in enumerate(names)}
    stats = rdd.mapPartitions(
        functools.partial(dist.text_stats_task, n_classes=len(names), label_index=index)
    ).reduce(dist.merged)
    plan = stats.plan()
    bc = sc.broadcast(plan)
    evidence = rdd.mapPartitions(
        functools.partial(dist.text_evidence_task, plan=bc, label_index=index)
    ).reduce(dist.merged)
    decision = plan.decide(evidence, names)
    scan_seconds = time.perf_counter() - t0
    return {
        "root": manifest.root,
        "shards": len(shards),
        "manifest_records": manifest.record_count,
        "manifest_seconds": manifest_seconds,
        "label_names": names,
        "records": stats.records,
        "flagged_ids": [f["id"] for f in decision["flagged"]],
        "triggers": [decision["triggers"][c["trigger"]]["phrase"] for c in decision["confirmed"]],
        "scan_seconds": scan_seconds,
    }


def run_single(root: pathlib.Path) -> dict[str, Any]:
    """The same on one machine: one ``create_manifest``, one ``scan_text``."""
    t0 = time.perf_counter()
    manifest = m.create_manifest(root, records=True)
    manifest_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids, texts, labels = [], [], []
    for p in sorted(root.glob("*.jsonl")):
        with open(p, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                ids.append(rec["id"])
                texts.append(rec["text"])
                labels.append(rec["label"])
    res = m.scan_text(texts, labels, ids=ids)
    return {
        "root": manifest.root,
        "manifest_seconds": manifest_seconds,
        "flagged_ids": sorted(res.flagged_ids),
        "scan_seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--poisoned", type=int, default=30)
    ap.add_argument("--data", type=pathlib.Path, help="data set directory (a temporary one by default)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or pathlib.Path(tmp) / "data"
        bad = write_dataset(root, args.records, args.files, args.poisoned)
        single = run_single(root)
        spark = spark_session(args.partitions)
        try:
            t0 = time.perf_counter()
            dist_res = run_spark(spark, root, args.partitions)
            spark_seconds = time.perf_counter() - t0
        finally:
            spark.stop()
        figures = {
            "partitions": args.partitions,
            "files": args.files,
            "records": dist_res["records"],
            "shard_manifests": dist_res["shards"],
            "root_equal": dist_res["root"] == single["root"],
            "root": dist_res["root"],
            "manifest_records": dist_res["manifest_records"],
            "poisoned": len(bad),
            "flagged": len(dist_res["flagged_ids"]),
            "flagged_equal": dist_res["flagged_ids"] == single["flagged_ids"],
            "poisoned_found": len(set(bad) & set(dist_res["flagged_ids"])),
            "triggers": dist_res["triggers"],
            "spark_seconds": round(spark_seconds, 3),
            "spark_manifest_seconds": round(dist_res["manifest_seconds"], 3),
            "spark_scan_seconds": round(dist_res["scan_seconds"], 3),
            "single_manifest_seconds": round(single["manifest_seconds"], 3),
            "single_scan_seconds": round(single["scan_seconds"], 3),
        }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
