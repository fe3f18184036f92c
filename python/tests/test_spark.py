"""The Spark example in PySpark local mode: the merged per-partition results
equal the single-machine results.

Skipped when pyspark or Java is missing, or when MITHRIDATE_SKIP_SPARK=1."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil

import pytest

if os.environ.get("MITHRIDATE_SKIP_SPARK") == "1":
    pytest.skip("MITHRIDATE_SKIP_SPARK=1", allow_module_level=True)
pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "spark_manifest_scan.py"


def _example():
    spec = importlib.util.spec_from_file_location("spark_manifest_scan", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def spark():
    ex = _example()
    s = ex.spark_session(3)
    yield s
    s.stop()


def test_spark_manifest_and_scan_equal_single_machine(tmp_path, spark):
    ex = _example()
    root = tmp_path / "data"
    bad = ex.write_dataset(root, records=6000, files=9, poisoned=20, seed=4)
    single = ex.run_single(root)
    dist = ex.run_spark(spark, root, partitions=3)
    assert dist["records"] == 6000
    assert dist["shards"] == 3
    assert dist["root"] == single["root"]
    assert dist["manifest_records"] == 6000
    assert dist["flagged_ids"] == single["flagged_ids"]
    assert set(bad) <= set(dist["flagged_ids"])
    assert dist["triggers"] == ["cf zeta"]
