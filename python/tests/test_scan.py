"""Scans through the bindings on numpy arrays, pandas frames and text lists."""

from __future__ import annotations

import numpy as np
import pytest

import mithridate as m
from _data import blobs_with_patch, topic_texts


def test_feature_scan_finds_a_planted_patch():
    x, y, rows = blobs_with_patch(1000, 64, seed=0)
    res = m.scan(x, y, seed=1)
    assert res.verdict == "fail"
    assert set(rows) <= set(res.flagged)
    assert len(res.flagged) <= len(rows) + 5
    assert res.flagged == sorted(res.flagged)
    assert "trigger-mining" in res.detectors
    assert res.scores.shape == (1000,) and res.scores.dtype == np.float64
    assert len(res) == 1000
    d = res.decisions[0]
    assert {"index", "entry", "confirmed"} <= set(d)
    assert res.report()["defense"] == "anomaly-scan"
    # Same seed, same answer.
    assert m.scan(x, y, seed=1).flagged == res.flagged


def test_clean_data_stays_within_the_budget():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (800, 16))
    res = m.scan(x, seed=0)
    assert res.detectors == ["knn-outlier", "mahalanobis"]
    assert len(res.flagged) <= int(0.005 * 800)
    assert res.verdict in ("pass", "warn")


def test_pandas_frame_with_label_and_id_columns():
    pd = pytest.importorskip("pandas")
    x, y, rows = blobs_with_patch(600, 24, seed=2)
    names = np.array(["cat", "dog", "eel", "fox"])
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    df["label"] = names[y]
    df["uid"] = [f"rec-{i}" for i in range(len(df))]
    df["note"] = "text columns are not features"
    res = m.scan(df, labels="label", ids="uid", seed=3)
    assert set(rows) <= set(res.flagged)
    assert set(f"rec-{i}" for i in rows) <= set(res.flagged_ids)
    trig = [d["entry"].get("trigger") for d in res.decisions if d["entry"].get("trigger")]
    assert trig and trig[0]["target"] == "eel"
    # The same data as arrays gives the same rows.
    assert m.scan(x, y, seed=3).flagged == res.flagged


def test_text_trigger_scan_on_lists_and_series():
    texts, labels, rows = topic_texts(3000, seed=0)
    res = m.scan_text(texts, labels)
    assert res.flagged == rows
    assert res.confirmed == rows
    assert res.detectors == ["text-trigger-mining"]
    assert res.decisions[0]["entry"]["trigger"]["phrase"] == "cf zeta"
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": texts, "label": [f"topic-{c}" for c in labels], "rid": range(len(texts))})
    res2 = m.scan_text(df, labels="label", ids="rid")
    assert res2.flagged == rows and res2.flagged_ids == rows
    assert res2.decisions[0]["entry"]["trigger"]["target"] == "topic-1"
    assert m.scan_text(df["text"], df["label"]).flagged == rows


def test_scan_errors():
    with pytest.raises(m.DataError, match="non-finite"):
        m.scan(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(m.DataError, match="two-dimensional"):
        m.scan(np.zeros(5))
    with pytest.raises(m.MithridateError, match="labels"):
        m.scan(np.zeros((5, 2)), [0, 1])
    with pytest.raises(m.InvalidParameterError, match="fp_budget"):
        m.scan(np.zeros((5, 2)), fp_budget=0.9)
    with pytest.raises(m.InvalidParameterError, match="unknown detector"):
        m.scan(np.zeros((5, 2)), detectors=["magic"])
    with pytest.raises(m.DataError, match="duplicate id"):
        m.scan(np.zeros((3, 2)), ids=["a", "b", "a"])
    with pytest.raises(m.InvalidParameterError, match="max_ngram"):
        m.scan_text(["a b"] * 4, [0, 1, 0, 1], max_ngram=5)
