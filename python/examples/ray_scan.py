"""Manifest and text trigger scan of a sharded JSONL data set with Ray Data.

A dataset of the shard paths is mapped to shard manifests, merged on the
driver into the dataset manifest. ``ray.data.read_json`` reads the shards into blocks; ``map_batches`` counts
each batch (pass 1), the driver merges the counts and plans, ``map_batches``
gathers each batch's evidence (pass 2), the driver merges and decides. The
results are checked against the single-machine ``create_manifest`` and
``scan_text``.

    python examples/ray_scan.py --records 20000 --files 16

Needs ``ray[data]``. Prints the figures as one JSON line.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from spark_manifest_scan import run_single, write_dataset  # noqa: E402

import mithridate as m  # noqa: E402
from mithridate import distributed as dist  # noqa: E402


def run_ray(root: pathlib.Path, batch_size: int = 2048) -> dict[str, Any]:
    import ray

    files = sorted(str(p) for p in root.glob("*.jsonl"))
    t0 = time.perf_counter()
    shards = dist.unpack_states(
        ray.data.from_items([{"path": f} for f in files])
        .map_batches(
            functools.partial(dist.manifest_batch, root=str(root), records=True),
            batch_size=4,
            batch_format="numpy",
        )
        .take_all()
    )
    manifest = m.merge_manifests(shards)
    ds = ray.data.read_json(files)
    names = sorted(str(v) for v in ds.unique("label"))
    index = {n: i for i, n in enumerate(names)}
    states = dist.unpack_states(
        ds.map_batches(
            functools.partial(dist.text_stats_batch, n_classes=len(names), label_index=index),
            batch_size=batch_size,
            batch_format="numpy",
        ).take_all()
    )
    batches = len(states)
    stats = dist.merge_all(states)
    plan = stats.plan()
    evidence = dist.merge_all(
        dist.unpack_states(
            ds.map_batches(
                functools.partial(dist.text_evidence_batch, plan=plan, label_index=index),
                batch_size=batch_size,
                batch_format="numpy",
            ).take_all()
        )
    )
    decision = plan.decide(evidence, names)
    return {
        "records": stats.records,
        "root": manifest.root,
        "shards": len(shards),
        "batches": batches,
        "flagged_ids": [f["id"] for f in decision["flagged"]],
        "triggers": [decision["triggers"][c["trigger"]]["phrase"] for c in decision["confirmed"]],
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--poisoned", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=2048)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "data"
        bad = write_dataset(root, args.records, args.files, args.poisoned)
        single = run_single(root)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            res = run_ray(root, args.batch_size)
        finally:
            ray.shutdown()
    figures = {
        "files": args.files,
        "batch_size": args.batch_size,
        "batches": res["batches"],
        "records": res["records"],
        "shard_manifests": res["shards"],
        "root_equal": res["root"] == single["root"],
        "poisoned": len(bad),
        "flagged": len(res["flagged_ids"]),
        "flagged_equal": res["flagged_ids"] == single["flagged_ids"],
        "poisoned_found": len(set(bad) & set(res["flagged_ids"])),
        "triggers": res["triggers"],
        "ray_seconds": round(res["seconds"], 3),
        "single_scan_seconds": round(single["scan_seconds"], 3),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
